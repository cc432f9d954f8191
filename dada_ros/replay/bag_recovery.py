"""Read what can be read from a damaged rosbag2 storage file (what a robot that lost power
leaves): a truncated or partly corrupt ``.mcap`` or ``.db3``.

``rosbags`` refuses such files outright ("File end magic is invalid", "database disk image is
malformed"), so :class:`~.bag.BagReader` falls back to these readers:

* mcap (:class:`McapRecovery`): the records are read front to back (the summary at the end is
  not needed): Schema and Channel records give the topics, Message records the data, Chunk
  records are decompressed (zstd / lz4 / none) and their inner records read the same way. A chunk
  cut short is decompressed as far as its bytes go (zstd streams) and its complete records are
  kept; a record whose length runs past the end, or a chunk that does not decompress, ends that
  part; a corrupt record in the middle is skipped by searching for the next plausible record.
* sqlite3 (:class:`SqliteRecovery`): the file is copied with its missing pages zero-filled (so
  SQLite can open it) and every message row is read on its own, by id: a row whose pages are
  lost raises and is counted lost, every other row is kept.

The recovery reads the damaged file into memory (a crashed recording is read once, to save
what it holds). Both report what was lost: messages per topic recovered vs. the counts in ``metadata.yaml`` when
the bag directory has one, plus what the reader ran into (:class:`RecoveryReport`).
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

MCAP_MAGIC = b"\x89MCAP0\r\n"
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_FOOTER, OP_DATA_END = 0x03, 0x04, 0x05, 0x06, 0x02, 0x0F
MAX_OPCODE = 0x0F
# Consecutive missing sqlite ids after the last expected one before the scan stops.
SQLITE_MISS_LIMIT = 1000


@dataclass
class RecoveryReport:
    """What a recovery read and what it could not."""

    path: Path
    reason: str  # why the normal reader refused the file
    recovered: dict[str, int] = field(default_factory=dict)  # topic -> messages read
    expected: dict[str, int] = field(default_factory=dict)  # topic -> count in metadata.yaml (if any)
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> dict[str, int]:
        return {t: n - self.recovered.get(t, 0) for t, n in self.expected.items() if n > self.recovered.get(t, 0)}

    def summary(self) -> str:
        got = sum(self.recovered.values())
        text = f"bag {self.path} is damaged ({self.reason}): replaying the {got} readable message(s)"
        if self.expected:
            total = sum(self.expected.values())
            lost = self.lost
            text += f" of {total} recorded"
            if lost:
                text += "; lost " + ", ".join(f"{t} {n}/{self.expected[t]}" for t, n in sorted(lost.items()))
        else:
            text += " (no metadata.yaml: the number recorded is unknown)"
        if self.problems:
            text += "; " + "; ".join(self.problems[:3]) + (f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else "")
        return text


@dataclass(frozen=True)
class Connection:
    topic: str
    msgtype: str


# ------------------------------------------------------------------------------------- mcap


def _str(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    end = pos + 4 + n
    if end > len(buf):
        raise ValueError("string runs past the record")
    return buf[pos + 4:end].decode("utf-8"), end


DECOMPRESS_PIECE = 1 << 14  # fed piecewise, so what precedes a corrupt spot is kept


def _decompress(compression: str, data: bytes, size: int) -> tuple[bytes, str]:
    """(decompressed bytes, problem or ''): as much as ``data`` yields, up to a corrupt spot."""
    if compression == "":
        return data, ""
    if compression == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python 3.14
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]
        d: object = zstd.ZstdDecompressor()
        errors: tuple[type[BaseException], ...] = (zstd.ZstdError,)
    elif compression == "lz4":
        import lz4.frame

        d = lz4.frame.LZ4FrameDecompressor()
        errors = (RuntimeError,)
    else:
        return b"", f"unknown chunk compression {compression!r}"
    out = bytearray()
    for k in range(0, len(data), DECOMPRESS_PIECE):
        try:
            out += d.decompress(data[k:k + DECOMPRESS_PIECE])  # type: ignore[attr-defined]
        except errors as exc:
            return bytes(out), f"{compression} data corrupt after {len(out)} bytes ({exc})"
        if getattr(d, "eof", False):
            break
    return bytes(out), "" if getattr(d, "eof", False) else "chunk cut short"


class McapRecovery:
    """Record-by-record reader of a damaged mcap file (see the module doc)."""

    def __init__(self, path: Path, report: RecoveryReport):
        self.path = path
        self.report = report
        self.schemas: dict[int, str] = {}
        self.channels: dict[int, Connection] = {}

    def _records(self, buf: bytes, pos: int, where: str) -> Iterator[tuple[int, bytes]]:
        """(opcode, content) of the complete records of ``buf`` from ``pos``."""
        n = len(buf)
        while pos + 9 <= n:
            op = buf[pos]
            (length,) = struct.unpack_from("<Q", buf, pos + 1)
            if op == 0 or op > MAX_OPCODE + 0x70 or pos + 9 + length > n:
                if pos + 9 + length > n and 0 < op <= MAX_OPCODE:
                    self.report.problems.append(f"{where} ends inside a record at byte {pos} (cut short)")
                    if op == OP_CHUNK:  # a chunk cut short: decompress what there is of it
                        yield op, buf[pos + 9:]
                    return
                nxt = self._resync(buf, pos + 1)
                self.report.problems.append(f"{where}: unreadable bytes {pos}..{nxt} skipped")
                if nxt is None:
                    return
                pos = nxt
                continue
            yield op, buf[pos + 9:pos + 9 + length]
            pos += 9 + length
            if op == OP_FOOTER:
                return

    @staticmethod
    def _resync(buf: bytes, pos: int) -> int | None:
        """The next offset that looks like a chunk / message / channel record whose length fits."""
        n = len(buf)
        for p in range(pos, n - 9):
            op = buf[p]
            if op in (OP_CHUNK, OP_MESSAGE, OP_CHANNEL, OP_SCHEMA):
                (length,) = struct.unpack_from("<Q", buf, p + 1)
                if 0 < length <= n - p - 9:
                    return p
        return None

    def _handle(self, op: int, c: bytes, out: list[tuple[str, str, int, bytes]] | None) -> Iterator[tuple[int, bytes]]:
        """Definitions are recorded; messages appended to ``out``; a chunk yields its inner records."""
        if op == OP_SCHEMA:
            (sid,) = struct.unpack_from("<H", c, 0)
            name, _ = _str(c, 2)
            self.schemas[sid] = name
        elif op == OP_CHANNEL:
            cid, sid = struct.unpack_from("<HH", c, 0)
            topic, _ = _str(c, 4)
            self.channels[cid] = Connection(topic, self.schemas.get(sid, ""))
        elif op == OP_MESSAGE:
            cid, _seq, log_time, _pub = struct.unpack_from("<HIQQ", c, 0)
            conn = self.channels.get(cid)
            if conn is None:
                self.report.problems.append(f"message on unknown channel {cid} skipped")
            elif out is not None:
                out.append((conn.topic, conn.msgtype, int(log_time), bytes(c[22:])))
        elif op == OP_CHUNK:
            _start, _end, size, _crc = struct.unpack_from("<QQQI", c, 0)
            compression, pos = _str(c, 28)
            (rec_len,) = struct.unpack_from("<Q", c, pos)
            data = c[pos + 8:pos + 8 + rec_len]
            inner, problem = _decompress(compression, data, int(size))
            if problem:
                self.report.problems.append(f"chunk: {problem}")
            yield from self._records(inner, 0, "chunk")

    def messages(self) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, log_time_ns, cdr bytes) of every readable message, in file order
        (sorted by log time within each chunk)."""
        buf = self.path.read_bytes()
        if not buf.startswith(MCAP_MAGIC):
            self.report.problems.append("no mcap magic at the start")
            return
        for op, c in self._records(buf, len(MCAP_MAGIC), "file"):
            batch: list[tuple[str, str, int, bytes]] = []
            try:
                for iop, ic in self._handle(op, c, batch):
                    try:
                        for _ in self._handle(iop, ic, batch):
                            pass
                    except (struct.error, ValueError, UnicodeDecodeError) as exc:
                        self.report.problems.append(f"corrupt record in a chunk skipped ({exc})")
            except (struct.error, ValueError, UnicodeDecodeError) as exc:
                self.report.problems.append(f"corrupt record skipped ({exc})")
            batch.sort(key=lambda m: m[2])
            yield from batch


# ----------------------------------------------------------------------------------- sqlite3


class SqliteRecovery:
    """Row-by-row reader of a damaged rosbag2 sqlite3 file (see the module doc)."""

    def __init__(self, path: Path, report: RecoveryReport, expected_total: int = 0):
        self.path = path
        self.report = report
        self.expected_total = expected_total

    def messages(self) -> Iterator[tuple[str, str, int, bytes]]:
        data_len = self.path.stat().st_size
        with tempfile.TemporaryDirectory(prefix="dada_bag_recovery_") as tmp:
            copy = Path(tmp) / "recovered.db3"
            shutil.copyfile(self.path, copy)
            with open(copy, "rb") as f:
                head = f.read(100)
            if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
                self.report.problems.append("no SQLite header")
                return
            page = int.from_bytes(head[16:18], "big") or 65536
            pages = int.from_bytes(head[28:32], "big")
            if pages * page > data_len:  # zero-fill what was cut off, so SQLite can open it
                with open(copy, "ab") as f:
                    f.write(b"\0" * (pages * page - data_len))
                self.report.problems.append(f"file cut at {data_len} of {pages * page} bytes")
            con = sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True)
            try:
                try:
                    topics = {int(i): Connection(str(n), str(t))
                              for i, n, t in con.execute("SELECT id, name, type FROM topics")}
                except sqlite3.DatabaseError as exc:
                    self.report.problems.append(f"topics table unreadable ({exc})")
                    return
                rows: list[tuple[int, int, int]] = []  # (timestamp, id, topic_id)
                misses, bad, rid = 0, 0, 0
                while True:
                    rid += 1
                    try:
                        r = con.execute("SELECT topic_id, timestamp FROM messages WHERE id = ?", (rid,)).fetchone()
                    except sqlite3.DatabaseError:
                        r, bad = None, bad + 1
                    if r is None:
                        misses += 1
                        if rid > self.expected_total and misses >= SQLITE_MISS_LIMIT:
                            break
                        continue
                    misses = 0
                    rows.append((int(r[1]), rid, int(r[0])))
                rows.sort()
                unreadable = 0
                for t_ns, rid, tid in rows:
                    try:
                        (blob,) = con.execute("SELECT data FROM messages WHERE id = ?", (rid,)).fetchone()
                    except sqlite3.DatabaseError:
                        unreadable += 1
                        continue
                    conn = topics.get(tid)
                    if conn is None:
                        self.report.problems.append(f"message {rid} on unknown topic id {tid} skipped")
                        continue
                    yield conn.topic, conn.msgtype, t_ns, bytes(blob)
                if unreadable:
                    self.report.problems.append(f"{unreadable} row(s) with unreadable data")
            finally:
                con.close()


def expected_counts(bag_dir: Path) -> dict[str, int]:
    """topic -> message count from a bag directory's metadata.yaml ({} when absent/unreadable)."""
    meta = bag_dir / "metadata.yaml"
    if not meta.is_file():
        return {}
    try:
        import yaml

        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        out: dict[str, int] = {}
        for t in info.get("topics_with_message_count", []):
            name = t["topic_metadata"]["name"]
            out[name] = out.get(name, 0) + int(t["message_count"])
        return out
    except Exception:  # noqa: BLE001 - a damaged metadata file just means "unknown"
        return {}


def storage_files(path: Path) -> list[Path]:
    """The storage files of a bag directory (sorted), or ``[path]`` for a bare file."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    return [path]


def recover_messages(path: Path, reason: str) -> tuple[list[tuple[str, str, int, bytes]], RecoveryReport]:
    """Every readable message of the bag at ``path`` (directory or bare file), in bag-time
    order, and the report of what was lost."""
    report = RecoveryReport(path, reason, expected=expected_counts(path) if path.is_dir() else {})
    msgs: list[tuple[str, str, int, bytes]] = []
    for f in storage_files(path):
        if f.suffix == ".db3":
            reader: McapRecovery | SqliteRecovery = SqliteRecovery(f, report, sum(report.expected.values()))
        else:
            reader = McapRecovery(f, report)
        msgs.extend(reader.messages())
    msgs.sort(key=lambda m: m[2])
    for topic, *_ in msgs:
        report.recovered[topic] = report.recovered.get(topic, 0) + 1
    return msgs, report

