"""rosbag2 bags (sqlite3 ``.db3`` and ``.mcap``) read and written with ``rosbags``, no ROS needed.

Messages are ``rosbags`` dataclasses of the ROS 2 Jazzy typestore; their field names are the
ROS ones, so :mod:`dada_ros.ros.conversions` reads them like rclpy messages. Every failure a user
can cause (missing path, corrupt file, existing output) is a :class:`DadaInputError` with one line
of explanation.

A damaged bag (truncated by a power loss, partly corrupt) that ``rosbags`` refuses is read by
:mod:`.bag_recovery` instead: every readable message, in bag-time order, with
:attr:`BagReader.recovery` saying what was lost (also in :attr:`BagReader.notes` and warned on
stderr once). Only a file with nothing readable at all is an error.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TypeVar

from ..core.errors import DadaInputError

STORAGES = ("mcap", "sqlite3")


def typestore() -> Any:
    """The ROS 2 Jazzy typestore of ``rosbags`` (cached)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
    return _TYPESTORE


_TYPESTORE: Any = None


def msg_class(msgtype: str) -> Any:
    """The rosbags dataclass for ``msgtype`` (e.g. ``sensor_msgs/msg/Image``)."""
    return typestore().types[msgtype]


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class RawMessage:
    """A message as stored: topic, type, bag (receive) time in ns, serialized CDR bytes."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes

    def decode(self) -> Any:
        """Deserialize with the Jazzy typestore."""
        return typestore().deserialize_cdr(self.data, self.msgtype)


_B = TypeVar("_B", bound="_BagFile")
_WARNED: set[str] = set()  # damaged bags already warned about


class _BagFile:
    """A bag file held open by a ``rosbags`` reader or writer (``_handle``, set by ``open``):
    a context manager (``open`` on entering, ``close`` on leaving); ``close`` is idempotent."""

    _handle: Any = None

    def __enter__(self: _B) -> _B:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._handle is not None:
            try:
                self._handle.close()
            finally:
                self._handle = None


class BagReader(_BagFile):
    """Read a rosbag2 bag: a bag directory (with metadata.yaml) or a bare ``.mcap`` / ``.db3``.

    Use as a context manager. ``topics`` lists what the bag has; ``messages(topics)`` yields
    :class:`RawMessage` in bag-time order (deserialize lazily with ``decode``).
    """

    def __init__(self, path: str | Path, recover: bool = True, warn: bool = True):
        self.path = Path(path)
        self._handle: Any = None
        self.recover = recover
        self.warn = warn
        self.recovery: Any = None  # a bag_recovery.RecoveryReport when the bag was damaged
        self._recovered: list[RawMessage] | None = None

    @property
    def notes(self) -> list[str]:
        """Lines worth recording with the results (what a damaged bag lost)."""
        return [self.recovery.summary()] if self.recovery is not None else []

    def open(self) -> None:
        from rosbags.rosbag2 import Reader

        if not self.path.exists():
            raise DadaInputError(f"bag not found: {self.path}")
        try:
            reader = Reader(self.path)
            reader.open()
        except DadaInputError:
            raise
        except Exception as exc:  # rosbags raises several types for unreadable bags
            if self.recover and self._try_recovery(_one_line(exc)):
                return
            raise DadaInputError(f"cannot read bag {self.path}: {_one_line(exc)} "
                                 "(expected a rosbag2 directory, a .mcap or a .db3 file)") from exc
        self._handle = reader

    def _try_recovery(self, reason: str) -> bool:
        """Read the damaged bag with :mod:`.bag_recovery`; False when nothing was readable."""
        from .bag_recovery import recover_messages

        try:
            raw, report = recover_messages(self.path, reason)
        except Exception:  # noqa: BLE001 - recovery is best effort; the original error is reported
            return False
        kept: list[RawMessage] = []
        undecodable: dict[str, int] = {}
        for topic, msgtype, t_ns, data in raw:
            msg = RawMessage(topic, msgtype, t_ns, data)
            try:  # "readable" = deserializes: a message with garbled bytes is lost too
                msg.decode()
            except Exception:  # noqa: BLE001
                undecodable[topic] = undecodable.get(topic, 0) + 1
                continue
            kept.append(msg)
        for topic, n in undecodable.items():
            report.recovered[topic] -= n
            report.problems.append(f"{n} message(s) on {topic} do not deserialize")
        if not kept:
            return False
        self._recovered = kept
        self.recovery = report
        key = str(self.path.resolve())
        if self.warn and key not in _WARNED:  # once per bag and process (replay opens it twice)
            _WARNED.add(key)
            print(f"warning: {report.summary()}", file=sys.stderr, flush=True)
        return True

    def close(self) -> None:
        self._recovered = None
        super().close()

    @property
    def topics(self) -> dict[str, TopicInfo]:
        """Topic name -> :class:`TopicInfo` (types as stored in the bag)."""
        if self._recovered is not None:
            rec: dict[str, TopicInfo] = {}
            for m in self._recovered:
                prev = rec.get(m.topic)
                rec[m.topic] = TopicInfo(m.topic, m.msgtype, (prev.count if prev else 0) + 1)
            return rec
        out: dict[str, TopicInfo] = {}
        for conn in self._handle.connections:
            prev = out.get(conn.topic)
            count = int(conn.msgcount) + (prev.count if prev else 0)
            out[conn.topic] = TopicInfo(conn.topic, conn.msgtype, count)
        return out

    @property
    def duration_s(self) -> float:
        if self._recovered is not None:
            t = [m.log_time_ns for m in self._recovered]
            return (max(t) - min(t)) * 1e-9 if t else 0.0
        return float(self._handle.duration) * 1e-9

    def messages(self, topics: list[str] | None = None) -> Iterator[RawMessage]:
        """Stored messages of ``topics`` (all when None), in bag-time order."""
        if self._recovered is not None:
            yield from (m for m in self._recovered if topics is None or m.topic in topics)
            return
        conns = [c for c in self._handle.connections if topics is None or c.topic in topics]
        if not conns:
            return
        seen: set[tuple[str, int]] = set()
        try:
            for conn, t_ns, data in self._handle.messages(connections=conns):
                seen.add((conn.topic, int(t_ns)))
                yield RawMessage(conn.topic, conn.msgtype, int(t_ns), bytes(data))
        except DadaInputError:
            raise
        except Exception as exc:
            # damage past the (intact) summary: the rest comes from the recovery reader
            if not (self.recover and self._try_recovery(_one_line(exc))):
                raise DadaInputError(f"bag {self.path} is corrupt or truncated: {_one_line(exc)}") from exc
            yield from (m for m in self._recovered or [] if (m.topic, m.log_time_ns) not in seen
                        and (topics is None or m.topic in topics))


class BagWriter(_BagFile):
    """Write a rosbag2 bag with ``rosbags`` (Jazzy message definitions).

    ``storage``: ``mcap`` (default; zstd chunk compression unless ``compress=False``) or
    ``sqlite3``. The bag directory must not exist yet (rosbag2 never overwrites).
    """

    def __init__(self, path: str | Path, storage: str = "mcap", compress: bool = True):
        if storage not in STORAGES:
            raise DadaInputError(f"bag storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        self.compress = compress
        self._handle: Any = None
        self._conns: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def open(self) -> None:
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

        if self.path.exists():
            raise DadaInputError(f"output bag {self.path} exists already; rosbag2 never overwrites, remove it first")
        if not self.path.parent.exists():
            raise DadaInputError(f"cannot write bag {self.path}: folder {self.path.parent} does not exist")
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(self.path, version=9, storage_plugin=plugin)
        if self.compress and self.storage == "mcap":
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        try:
            writer.open()
        except Exception as exc:
            raise DadaInputError(f"cannot write bag {self.path}: {_one_line(exc)}") from exc
        self._handle = writer

    def write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        """Serialize ``msg`` (a rosbags dataclass) on ``topic`` at bag time ``log_time_ns``."""
        msgtype = msg.__msgtype__
        self.write_raw(topic, msgtype, typestore().serialize_cdr(msg, msgtype), log_time_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes | memoryview, log_time_ns: int) -> None:
        """Write already serialized CDR ``data`` (e.g. copied from an input bag)."""
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._handle.add_connection(topic, msgtype, typestore=typestore())
            self._conns[topic] = conn
        elif conn.msgtype != msgtype:
            raise DadaInputError(f"topic {topic} already holds {conn.msgtype}, cannot add {msgtype}")
        self._handle.write(conn, int(log_time_ns), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
