"""rosbags I/O: sqlite3 and mcap round trips, the sample bag's content, clear errors."""

import numpy as np
import pytest

from dada_ros.core.errors import DadaInputError
from dada_ros.replay import messages as m
from dada_ros.replay.bag import BagReader, BagWriter
from dada_ros.replay.sample import truncate_plan
from dada_ros.ros.conversions import depth_image_to_metres, guide_image_to_rgb, stamp_to_nanoseconds

from .conftest import make_bag


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip(tmp_path, storage):
    depth = np.array([[1.0, np.nan], [2.5, 0.75]], np.float32)
    with BagWriter(tmp_path / "b", storage=storage) as w:
        w.write("/d", m.depth_image(depth, "32FC1", m.header(5_000_000_123, "cam")), 7)
        w.write("/i", m.camera_info(np.diag([100.0, 100.0, 1.0]), 2, 2, m.header(5, "cam")), 8)
    with BagReader(tmp_path / "b") as r:
        assert {t: (i.msgtype, i.count) for t, i in r.topics.items()} == {
            "/d": ("sensor_msgs/msg/Image", 1), "/i": ("sensor_msgs/msg/CameraInfo", 1)}
        msgs = list(r.messages())
    assert [x.log_time_ns for x in msgs] == [7, 8]
    img = msgs[0].decode()
    assert stamp_to_nanoseconds(img.header.stamp) == 5_000_000_123 and img.header.frame_id == "cam"
    np.testing.assert_array_equal(depth_image_to_metres(img), depth)


def test_writer_refuses_existing_and_reader_missing(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(DadaInputError, match="exists already"):
        BagWriter(tmp_path / "exists").open()
    with pytest.raises(DadaInputError, match="bag not found"):
        BagReader(tmp_path / "nope").open()


def test_corrupt_bag_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"\x89MCAP0\r\n" + b"garbage" * 100)
    with pytest.raises(DadaInputError, match="cannot read bag|corrupt"):
        with BagReader(bad) as r:
            list(r.messages())


def test_sample_bag_content_and_determinism(tmp_path):
    a = make_bag(tmp_path / "a", frames=3)
    b = make_bag(tmp_path / "b", frames=3, storage="sqlite3")
    assert a["topics"] == {"/rgb/image_rect_color": 3, "/rgb/camera_info": 3, "/depth_gt/image_rect": 3,
                           "/depth/image_rect": 3, "/depth/camera_info": 3}
    got = {}
    for name in ("a", "b"):
        with BagReader(tmp_path / name) as r:
            got[name] = [(x.topic, x.log_time_ns, x.data) for x in r.messages()]
    assert got["a"] == got["b"]  # same seed, other storage: identical messages
    with BagReader(tmp_path / "a") as r:
        msgs = {}
        for x in r.messages():
            msgs.setdefault(x.topic, x.decode())
    rgb, depth, gt = msgs["/rgb/image_rect_color"], msgs["/depth/image_rect"], msgs["/depth_gt/image_rect"]
    assert (rgb.encoding, depth.encoding, gt.encoding) == ("rgb8", "16UC1", "32FC1")
    assert guide_image_to_rgb(rgb).shape == (96, 128, 3)
    assert depth_image_to_metres(depth).shape == (24, 32) and depth_image_to_metres(gt).shape == (96, 128)
    delay = stamp_to_nanoseconds(depth.header.stamp) - stamp_to_nanoseconds(rgb.header.stamp)
    assert 0 < delay < 10_000_000  # two unsynchronised sensors, a few ms apart
    info = msgs["/depth/camera_info"]
    assert (info.width, info.height) == (32, 24) and info.k[0] == pytest.approx(msgs["/rgb/camera_info"].k[0] / 4)


def test_truncate_plan():
    plan = (("static", 2), ("pan", 3))
    assert truncate_plan(plan, 4) == (("static", 2), ("pan", 2))
    assert truncate_plan(plan, 7) == (("static", 2), ("pan", 3), ("pan", 2))


def _damage(bag_dir, fraction=None, corrupt_at=None):
    """Truncate the bag's storage file to ``fraction`` of its bytes, or overwrite 2 KB of it with
    garbage at ``corrupt_at`` (fraction of the file)."""
    f = next(p for p in bag_dir.iterdir() if p.suffix in (".mcap", ".db3"))
    data = bytearray(f.read_bytes())
    if fraction is not None:
        data = data[: int(len(data) * fraction)]
    if corrupt_at is not None:
        k = int(len(data) * corrupt_at)
        data[k:k + 2048] = bytes((i * 37 + 11) % 256 for i in range(2048))
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_bag_gives_every_readable_message(tmp_path, storage, fraction, capsys):
    make_bag(tmp_path / "full", frames=8, storage=storage)
    with BagReader(tmp_path / "full") as r:
        full = [(x.topic, x.log_time_ns, x.data) for x in r.messages()]
    make_bag(tmp_path / "cut", frames=8, storage=storage)
    _damage(tmp_path / "cut", fraction=fraction)
    with BagReader(tmp_path / "cut") as r:
        got = [(x.topic, x.log_time_ns, x.data) for x in r.messages()]
        report = r.recovery
        topics = r.topics
    # every recovered message is a message of the intact bag, unchanged, in bag-time order
    assert got and set(got) <= set(full)
    assert [t for _, t, _ in got] == sorted(t for _, t, _ in got)
    assert 0 < len(got) < len(full)
    # a 90% cut keeps most of it
    if fraction == 0.9:
        assert len(got) >= 0.6 * len(full)
    # the report knows what was recorded and says what was lost
    assert sum(report.expected.values()) == len(full)
    assert sum(report.lost.values()) == len(full) - len(got)
    assert {t: i.count for t, i in topics.items()} == {t: n for t, n in report.recovered.items() if n}
    err = capsys.readouterr().err
    assert "is damaged" in err and "lost" in err and f"of {len(full)} recorded" in err


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_corrupt_middle_keeps_the_rest(tmp_path, storage):
    import shutil

    make_bag(tmp_path / "full", frames=8, storage=storage)
    with BagReader(tmp_path / "full") as r:
        full = [(x.topic, x.log_time_ns, x.data) for x in r.messages()]
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "full", bad)
    _damage(bad, corrupt_at=0.4)
    try:
        with BagReader(bad) as r:
            got = [(x.topic, x.log_time_ns, x.data) for x in r.messages()]
            report = r.recovery
    except DadaInputError as exc:  # only acceptable when nothing at all could be read
        pytest.fail(f"partly corrupt bag not recovered: {exc}")
    stamps = {(t, ns) for t, ns, _ in full}
    assert got and all((t, ns) in stamps for t, ns, _ in got)
    if report is not None:  # rosbags itself may read past damage inside a message payload
        assert report.problems or report.lost
    # everything before the damaged bytes is intact
    first = [m for m in full if m in set(got)]
    assert len(first) >= len(full) // 4


def test_nothing_readable_is_still_an_error(tmp_path):
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 50)
    with pytest.raises(DadaInputError, match="cannot read bag"):
        BagReader(bad).open()
