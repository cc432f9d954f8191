"""dada-replay over several bags: --jobs 2 worker processes give what --jobs 1 gives, frame for frame."""

import json

import pytest

from dada_ros.cli.common import run_cli
from dada_ros.cli.replay import main
from dada_ros.replay.many import bag_out_dirs

from .conftest import make_bag

SCORES = ("mse_cm2", "mae_cm", "iterations", "consistency", "coverage", "init_mode")


def replay(*argv):
    return run_cli("dada-replay", main, [str(a) for a in argv])


def frame_scores(out):
    """{(bag, frame, method): its scores} from every DIR/<bag>/frames.jsonl (timings left out)."""
    got = {}
    for bag in sorted(p for p in out.iterdir() if (p / "frames.jsonl").exists()):
        for line in (bag / "frames.jsonl").read_text().splitlines():
            f = json.loads(line)
            for m, rec in f["methods"].items():
                got[(bag.name, f["index"], m)] = {k: rec.get(k) for k in SCORES}
    return got


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("jobs")
    bags = [base / "first", base / "second"]
    make_bag(bags[0], frames=4, size=(48, 64), source_shape=(12, 16), seed=1)
    make_bag(bags[1], frames=4, size=(48, 64), source_shape=(12, 16), seed=2)
    broken = base / "broken"
    broken.mkdir()  # not a bag: its replay fails, the others go on
    args = ["--bag", *bags, broken, "--methods", "dada-free,bicubic", "--warm-iterations", "30", "--snapshots", "0",
            "--node-params", "max_iterations:=300", "--no-bag", "--no-progress"]
    # The figures are most of a 4-frame bag's time: the serial run skips them.
    return {jobs: (replay(*args, "--out", base / f"jobs{jobs}", "--jobs", jobs, *extra), base / f"jobs{jobs}")
            for jobs, extra in ((1, ["--no-report"]), (2, []))}


def test_two_jobs_equal_one(runs):
    (rc1, out1), (rc2, out2) = runs[1], runs[2]
    assert rc1 == rc2 == 1  # the broken bag fails the run, not the other bags
    s1, s2 = frame_scores(out1), frame_scores(out2)
    assert len(s1) == 2 * 4 * 2 and s1 == s2
    r1, r2 = (json.loads((o / "bags.json").read_text()) for o in (out1, out2))
    assert r1["pooled"] == r2["pooled"] and r1["pooled"]["dada-free"]["frames_scored"] == 8
    assert [b["ok"] for b in r2["bags"]] == [True, True, False]
    assert r2["bags"][2]["status"].startswith("failed: ") and r2["jobs"] == 2
    assert (out2 / "first" / "report.md").exists() and (out2 / "second" / "summary.png").exists()
    assert not (out1 / "first" / "report.md").exists() and (out1 / "second" / "metrics.json").exists()


def test_pooled_is_the_mean_over_all_scored_frames(runs):
    _, out = runs[2]
    per_frame = [v["mse_cm2"] for (_, _, m), v in frame_scores(out).items() if m == "bicubic"]
    pooled = json.loads((out / "bags.json").read_text())["pooled"]["bicubic"]
    assert pooled["mse_cm2"] == pytest.approx(sum(per_frame) / len(per_frame), rel=1e-12)


def test_bad_multi_bag_arguments(tmp_path, capsys):
    a, b = tmp_path / "x" / "bag", tmp_path / "y" / "bag"
    with pytest.raises(Exception, match="distinct names"):
        bag_out_dirs([a, b], tmp_path / "out")
    assert replay("--bag", a, b, "--out", tmp_path / "o") == 2
    assert "distinct names" in capsys.readouterr().err
    assert replay("--bag", a, tmp_path / "z", "--out", tmp_path / "o", "--realtime") == 2
    assert "single --bag" in capsys.readouterr().err
    assert replay("--bag", a, "--out", tmp_path / "o", "--jobs", "0") == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err
