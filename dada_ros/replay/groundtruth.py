"""Images looked up by stamp while other topics stream past (bounded memory): ground truth in
the offline replay; ground truth, RGB and input depth when scoring a live node's outputs.

The topic is read by a separate reader of the same bag, merged by time: a lookup for
stamp t reads ahead until a ground-truth stamp beyond t + tolerance (or the end), takes the
nearest one within tolerance, and forgets everything older than t - ``keep_s``. A lookup that
goes back in time (a bag that loops) restarts the stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from ..core.errors import DadaInputError
from ..ros.conversions import ConversionError, depth_image_to_metres, stamp_to_nanoseconds
from .bag import BagReader, RawMessage


class StampedStream:
    """``lookup(stamp_ns)`` -> ``convert(message)`` of the nearest message within tolerance, or None.

    ``convert`` defaults to :func:`depth_image_to_metres` ((H, W) float32 metres, NaN = none).
    """

    def __init__(self, bag: str | Path, topic: str, tolerance_s: float = 0.005, keep_s: float = 2.0,
                 convert: Callable[[Any], Any] = depth_image_to_metres):
        self.bag = Path(bag)
        self.topic = topic
        self.convert = convert
        self.tol_ns = int(round(tolerance_s * 1e9))
        self.keep_ns = int(round(keep_s * 1e9))
        self.bad: dict[str, int] = {}  # conversion failures by reason
        self._reader: BagReader | None = None
        self._it: Iterator[RawMessage] | None = None
        self._buf: dict[int, Any] = {}
        self._done = False
        self._last_query: int | None = None
        self._restart()

    def _restart(self) -> None:
        self.close()
        self._reader = BagReader(self.bag)
        self._reader.open()
        self._it = self._reader.messages([self.topic])
        self._buf.clear()
        self._done = False

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _read_one(self) -> int | None:
        assert self._it is not None
        try:
            raw = next(self._it)
        except StopIteration:
            self._done = True
            return None
        try:
            msg = raw.decode()
            stamp = stamp_to_nanoseconds(msg.header.stamp)
            self._buf[stamp] = self.convert(msg)
            return stamp
        except ConversionError as exc:
            self.bad[exc.reason] = self.bad.get(exc.reason, 0) + 1
        except (DadaInputError, ValueError, AttributeError, KeyError) as exc:
            self.bad[type(exc).__name__] = self.bad.get(type(exc).__name__, 0) + 1
        return -1

    def lookup(self, stamp_ns: int) -> Any:
        if self._last_query is not None and stamp_ns < self._last_query - self.keep_ns:
            self._restart()
        self._last_query = stamp_ns
        while not self._done and (not self._buf or max(self._buf) <= stamp_ns + self.tol_ns):
            self._read_one()
        for s in [s for s in self._buf if s < stamp_ns - self.keep_ns]:
            del self._buf[s]
        if not self._buf:
            return None
        best = min(self._buf, key=lambda s: abs(s - stamp_ns))
        return self._buf[best] if abs(best - stamp_ns) <= self.tol_ns else None


GroundTruthStream = StampedStream  # the offline replay's name for it
