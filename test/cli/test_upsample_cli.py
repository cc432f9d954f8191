"""The dada-upsample contract, run as a real subprocess (console script entry point)."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dada_ros.core.metrics import consistency_error
from dada_ros.core.scenes import make_sample

CLI = [sys.executable, "-m", "dada_ros.cli.upsample"]


def run(*args):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    s = make_sample(seed=2, scale=8, size=(64, 96))
    cv2.imwrite(str(d / "rgb.png"), s.rgb[:, :, ::-1])
    np.save(d / "src.npy", s.source)
    cv2.imwrite(str(d / "src.png"), np.round(s.source * 1000).astype(np.uint16))
    cv2.imwrite(str(d / "src.tiff"), s.source)
    return d, s


def test_contract_npy_source_and_stats(files):
    d, s = files
    r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / "out.npy", "--stats", d / "st.json")
    assert r.returncode == 0, r.stderr
    out = np.load(d / "out.npy")
    assert out.shape == (64, 96) and out.dtype == np.float32
    assert consistency_error(out, s.source) < 1e-5
    stats = json.loads((d / "st.json").read_text())
    for key in ("iterations", "residual", "seconds", "method", "scale"):
        assert key in stats
    assert stats["method"] == "dada-free" and stats["scale"] == 8 and 0 < stats["iterations"] <= 8000


def test_png_mm_and_tiff_metres_give_the_same_answer(files):
    d, _ = files
    for name in ("src.png", "src.tiff"):
        # The plain loop: a 50-application Chebyshev state is mid-extrapolation and amplifies the
        # 0.5 mm rounding up to ~4x; the readers' agreement is what is tested here.
        r = run("--guide", d / "rgb.png", "--source", d / name, "--out", d / f"{name}.npy", "--iterations", 50,
                "--schedule", "plain")
        assert r.returncode == 0, r.stderr
    a, b = np.load(d / "src.png.npy"), np.load(d / "src.tiff.npy")
    assert np.nanmax(np.abs(a - b)) < 2e-3  # mm rounding only


@pytest.mark.parametrize("method", ["bicubic", "nearest", "jbf", "guided", "fgs"])
def test_baseline_methods(files, method):
    d, _ = files
    r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / f"{method}.npy",
            "--method", method, "--stats", d / f"{method}.json")
    assert r.returncode == 0, r.stderr
    assert np.load(d / f"{method}.npy").shape == (64, 96)
    assert json.loads((d / f"{method}.json").read_text())["method"] == method


def test_fixed_iterations_and_init(files):
    d, _ = files
    r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / "o1.npy", "--iterations", 7,
            "--stats", d / "s1.json")
    assert r.returncode == 0 and json.loads((d / "s1.json").read_text())["iterations"] == 7
    r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / "o2.npy", "--init", d / "o1.npy",
            "--iterations", 3, "--stats", d / "s2.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((d / "s2.json").read_text())["warm_start"] is True


def bad_file(d, name, content: bytes):
    p = d / name
    p.write_bytes(content)
    return p


def run_in_process(capsys, *args):
    """The same entry point without a new interpreter (fast): (exit code, stderr)."""
    from dada_ros.cli.common import run_cli
    from dada_ros.cli.upsample import main

    rc = run_cli("dada-upsample", main, [str(a) for a in args])
    return rc, capsys.readouterr().err


def test_bad_inputs_one_line_error_no_traceback(files, tmp_path, capsys):
    d, _ = files
    np.save(tmp_path / "big.npy", np.ones((128, 192), np.float32))
    np.save(tmp_path / "zeros.npy", np.zeros((8, 12), np.float32))
    np.save(tmp_path / "rgbsrc.npy", np.ones((8, 12, 3), np.float32))
    cv2.imwrite(str(tmp_path / "d8.png"), np.ones((8, 12), np.uint8))
    cases = [
        (["--source", tmp_path / "missing.npy"], "not found"),
        (["--source", bad_file(tmp_path, "junk.npy", b"not numpy")], "cannot read depth"),
        (["--source", bad_file(tmp_path, "junk.png", b"not png")], "cannot read depth"),
        (["--source", tmp_path / "big.npy"], "larger than guide"),
        (["--source", tmp_path / "zeros.npy"], "no valid pixel"),
        (["--source", tmp_path / "rgbsrc.npy"], "single-channel"),
        (["--source", tmp_path / "d8.png"], "16-bit"),
        (["--source", bad_file(tmp_path, "x.jpg", b"")], "unsupported type"),
        (["--source", d / "src.npy", "--lambda", "0.3"], "lambda"),
        (["--source", d / "src.npy", "--device", "tpu"], "device"),
        (["--source", d / "src.npy", "--init", tmp_path / "big.npy"], "initial depth"),
        (["--source", d / "src.npy", "--method", "dada", "--weights", tmp_path / "none.pt"], "dada"),
        (["--source", d / "src.npy", "--out", tmp_path / "no" / "dir" / "o.npy"], "directory"),
    ]
    for args, match in cases:
        argv = ["--guide", d / "rgb.png", "--out", tmp_path / "o.npy"] + args
        if "--out" in args:
            argv = ["--guide", d / "rgb.png"] + args
        rc, err = run_in_process(capsys, *argv)
        assert rc == 2, (args, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and match in lines[0], (args, err)
    # One real subprocess: the console entry point prints one line, no traceback.
    r = run("--guide", bad_file(tmp_path, "g.png", b"xx"), "--source", d / "src.npy", "--out", tmp_path / "o.npy")
    assert r.returncode == 2 and "cannot read guide" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "o.npy")


def test_output_range_is_the_nodes_and_can_be_turned_off(files):
    """DADA methods pass the node's output-range handling (default clamp, stats range_*); off
    returns the solver's output exactly as the API does; an output far outside the source range
    is pulled back into it with consistency kept."""
    from dada_ros.core.methods import run_method
    from dada_ros.core.output_range import OutputRangeConfig, apply_output_range

    d, s = files
    r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / "c.npy", "--stats", d / "c.json")
    assert r.returncode == 0, r.stderr
    stats = json.loads((d / "c.json").read_text())
    assert stats["range_mode"] == "clamp" and stats["range_outliers"] >= 0
    r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / "o.npy", "--output-range", "off",
            "--stats", d / "o.json")
    assert r.returncode == 0, r.stderr
    api, _ = run_method("dada-free", cv2.imread(str(d / "rgb.png"))[:, :, ::-1].copy(), np.load(d / "src.npy"))
    np.testing.assert_array_equal(np.load(d / "o.npy"), api)
    assert "range_mode" not in json.loads((d / "o.json").read_text())
    # What the clamp is there for: a collapsed pixel (a learned solve's undershoot) comes back.
    bad = api.copy()
    bad[10, 10] = 0.01
    fixed, st = apply_output_range(bad, s.source, OutputRangeConfig())
    assert st["range_outliers"] >= 1 and fixed[10, 10] > 0.25 * np.nanmin(s.source[s.source > 0])
    assert consistency_error(fixed, s.source) < 1e-5


def test_learned_method_runs_behind_the_guard_by_default(files):
    """--method dada: the cross-scale guard checks the frame and says which method ran (stats'
    ``guard``); --guard off runs the learned guide alone, with no guard record."""
    pytest.importorskip("dada_ros.learned.model")
    d, s = files
    r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / "g.npy", "--method", "dada",
            "--stats", d / "g.json")
    assert r.returncode == 0, r.stderr
    g = json.loads((d / "g.json").read_text())["guard"]
    assert g["checked"] and g["pick"] in ("dada", "dada-free") and g["ms"] > 0
    assert (g["pick"] == "dada") == (g["error_dada"] < g["error_free"])
    r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / "u.npy", "--method", "dada",
            "--stats", d / "u.json", "--guard", "off")
    assert r.returncode == 0, r.stderr
    assert json.loads((d / "u.json").read_text())["guard"] == {}
    r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / "f.npy", "--method", "dada-free")
    assert r.returncode == 0, r.stderr
    want = np.load(d / ("u.npy" if g["pick"] == "dada" else "f.npy"))
    np.testing.assert_allclose(np.load(d / "g.npy"), want, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_learned_schedule_flag_picks_the_learned_solves_schedule(files):
    """--learned-schedule per-ratio runs a learned frame on dada-free's per-ratio budget (the
    schedule training differentiates through); the default keeps the 300 applications that follow
    8000 plain steps; an unknown value is refused by the parser."""
    pytest.importorskip("dada_ros.learned.model")
    from dada_ros.core.schedule import LEARNED_APPLICATIONS, chebyshev_defaults

    d, s = files
    holes = not np.isfinite(s.source).all() or (s.source <= 0).any()
    its = {}
    for sched in ("matching", "per-ratio"):
        r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / f"{sched}.npy", "--method", "dada",
                "--guard", "off", "--learned-schedule", sched, "--stats", d / f"{sched}.json")
        assert r.returncode == 0, r.stderr
        its[sched] = json.loads((d / f"{sched}.json").read_text())["iterations"]
        assert consistency_error(np.load(d / f"{sched}.npy"), s.source) < 1e-4
    assert its == {"matching": LEARNED_APPLICATIONS, "per-ratio": chebyshev_defaults(8.0, holes)[1]}
    r = run("--guide", d / "rgb.png", "--source", d / "src.npy", "--out", d / "x.npy", "--method", "dada",
            "--learned-schedule", "fast")
    assert r.returncode == 2 and "--learned-schedule" in r.stderr
