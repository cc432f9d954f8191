"""dada-eval --jobs: tiles scored in worker processes pool to exactly the serial report."""

import json

from dada_ros.cli import eval as eval_cli
from dada_ros.cli.common import run_cli


def _strip_times(report: dict) -> dict:
    report = dict(report)
    report.pop("seconds")
    report["results"] = {m: {s: {k: v for k, v in c.items() if k != "seconds_per_tile"} for s, c in by.items()}
                         for m, by in report["results"].items()}
    return report


def test_two_jobs_equal_one(tmp_path):
    """ToF-like sources: the per-tile noise (seeded by tile name) must travel to the workers too."""
    reports = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}.json"
        args = ["--seeds", "0:3", "--size", "64", "64", "--scales", "4", "8", "--methods", "bicubic", "dada-free",
                "--quiet", "--json", str(out), "--jobs", str(jobs), "--tof"]
        assert eval_cli.main(args) == 0
        reports.append(json.loads(out.read_text()))
    one, two = (_strip_times(r) for r in reports)
    assert one["tiles"] == 3 and one["results"]["dada-free"]["4"]["per_tile_mse_cm2"]
    assert one == two  # bit for bit: the same per-tile errors pooled in the same order


def test_bad_jobs(capsys):
    assert run_cli("dada-eval", eval_cli.main, ["--seeds", "0:1", "--jobs", "0"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err
