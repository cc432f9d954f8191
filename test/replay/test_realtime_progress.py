"""--realtime progress lines: written whole by the player's two threads, parsed defensively."""

import io
import threading

from dada_ros.replay.realtime import parse_progress_line
from dada_ros.replay.realtime_player import emit_progress


class SlowStream(io.StringIO):
    """A stream that yields the GIL between writes, as a pipe to another process does."""

    def write(self, s):  # noqa: D102
        n = 0
        for ch in s:
            n += super().write(ch)
            if ch == " ":
                threading.Event().wait(0.0005)
        return n


def test_two_threads_never_interleave_progress_lines():
    out = SlowStream()

    def report(kind):
        for n in range(1, 61):
            emit_progress(kind, n, out)

    threads = [threading.Thread(target=report, args=(k,)) for k in "PR"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 120
    parsed = [parse_progress_line(line) for line in lines]
    assert None not in parsed, [line for line in lines if parse_progress_line(line) is None][:3]
    for kind in "PR":
        assert [n for k, n in parsed if k == kind] == list(range(1, 61))


def test_garbled_or_foreign_lines_are_skipped_not_fatal():
    assert parse_progress_line("P 12\n") == ("P", 12)
    assert parse_progress_line("R 0") == ("R", 0)
    for line in ("P 12R 6", "R", "P -1", "warning: something", "", "X 3", "P 1.5"):
        assert parse_progress_line(line) is None, line
