"""The Triton loop (dada_ros/core/triton_loop.py) against run_loop's torch backend.

No GPU here: the kernels run in Triton's CPU interpreter, which needs TRITON_INTERPRET=1 set
before triton is imported. So they run in ONE subprocess (this file executed as a script, see
``__main__`` below) and the pytest process, whose triton import (if any) must stay normal, only
compares the saved results with the torch loop computed here.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dada_ros.core.loop import run_loop
from dada_ros.core.resample import Partition, Resampler
from dada_ros.core.schedule import Schedule

HAVE_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed (pip install triton)")

# name: guide (H, W), source (h, w), batch, hole fraction, iterations, check_every, tol rule,
# Chebyshev delta (None: the plain loop)
CASES = {
    "x4": ((24, 32), (6, 8), 1, 0.0, 30, 7, None, None),
    "non_integer_holes": ((24, 32), (7, 9), 1, 0.25, 30, 7, None, None),
    "batch2_holes": ((24, 32), (7, 9), 2, 0.2, 24, 6, None, None),
    "tall_cells": ((40, 12), (2, 5), 1, 0.0, 20, 5, None, None),  # 20-row cells: two 16-row chunks
    "one_row": ((1, 16), (1, 4), 1, 0.25, 12, 4, None, None),  # no vertical links at all
    "tol_stop": ((24, 32), (6, 8), 1, 0.1, 60, 5, "stop at the third check", None),
    "cheb_x4": ((24, 32), (6, 8), 1, 0.0, 31, 7, None, 0.01),
    "cheb_non_integer_holes_batch2": ((24, 32), (7, 9), 2, 0.25, 30, 4, None, 0.003),
    "cheb_tall_cells": ((40, 12), (2, 5), 1, 0.1, 21, 5, None, 0.02),
}
LAM = 0.24


def make_case(name: str):
    """Inputs of one case, identical in both processes (seeded torch CPU generator)."""
    (H, W), (h, w), B, holes, iterations, check_every, tol_rule, delta = CASES[name]
    g = torch.Generator().manual_seed(sorted(CASES).index(name))
    res = Resampler(Partition((H, W), (h, w)), torch.device("cpu"))
    src = torch.rand(B, 1, h, w, generator=g) * 3 + 0.5
    valid = torch.rand(B, 1, h, w, generator=g) >= holes
    valid.view(-1)[0] = True  # at least one measurement per case
    cv = torch.rand(B, 1, H - 1, W, generator=g)
    ch = torch.rand(B, 1, H, W - 1, generator=g)
    fill = src[valid].mean()
    y0 = res.up(torch.where(valid, src, fill)).contiguous()
    y0 *= 1 + 0.2 * torch.rand(y0.shape, generator=g)  # a start that is not already consistent
    tol = None
    if tol_rule is not None:
        # Halfway (geometric) between the torch loop's 2nd and 3rd check: it stops at the 3rd.
        hist = run_loop(y0.clone(), src, valid, cv, ch, res, LAM, iterations, None, check_every,
                        backend="torch").residual_history
        tol = math.sqrt(hist[1] * hist[2])
    return y0, src, valid, cv, ch, res, iterations, check_every, tol


def case_schedule(name: str) -> Schedule:
    """The loop schedule of a case (tolerance from :func:`make_case`'s last value)."""
    _, _, _, _, iterations, check_every, _, delta = CASES[name]
    tol = make_case(name)[-1]
    if delta is None:
        return Schedule.plain(iterations, tol, check_every)
    return Schedule.chebyshev(iterations, delta, tol, check_every)


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    """Run every case through run_loop(backend="triton") in the interpreter subprocess."""
    out = tmp_path_factory.mktemp("triton_interp")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    repo = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, __file__, str(out)], env=env, cwd=repo,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"interpreter run failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@needs_triton
@pytest.mark.parametrize("name", sorted(CASES))
def test_triton_loop_matches_torch_loop(interpreted, name):
    y0, src, valid, cv, ch, res, iterations, check_every, tol = make_case(name)
    y_ref = y0.clone()
    ref = run_loop(y_ref, src, valid, cv, ch, res, LAM, backend="torch", schedule=case_schedule(name))
    y_tri = torch.from_numpy(np.load(interpreted / f"{name}.npy"))
    stats = json.loads((interpreted / f"{name}.json").read_text())
    assert float((y_ref - y0).abs().max()) > 1e-3  # the case does move y (the comparison means something)
    rel = float(((y_tri - y_ref).abs() / y_ref.abs()).max())
    assert rel < 1e-5, (name, rel)
    assert stats["iterations"] == ref.iterations
    assert stats["converged"] == ref.converged
    np.testing.assert_allclose(stats["residual_history"], ref.residual_history, rtol=1e-3, atol=1e-6)
    if tol is not None:
        assert ref.converged and ref.iterations == 3 * check_every < iterations


@needs_triton
def test_real_kernels_pass_the_auto_self_test(interpreted):
    assert json.loads((interpreted / "self_test.json").read_text()) is True


@needs_triton
@pytest.mark.parametrize("arch", [80, 90])
def test_kernels_compile_for_cuda_ahead_of_time(arch):
    """The interpreter skips code generation; this runs it (Triton -> PTX -> cubin with the ptxas
    in the triton wheel) for A100 (sm_80) and H100 (sm_90) without a GPU, for the tile shapes the
    host code picks (smallest and largest sweep tile)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from dada_ros.core import triton_loop as tlp

    f, i, ip = "*fp32", "i32", "*i32"
    sweep = dict(u_in=f, u_out=f, r=f, colsum=f, lcv=f, lch=f, rows_start=ip, cols=ip, z=f, y_out=f,
                 wa="fp32", wb="fp32", H=i, W=i, h=i, w=i, SEMI="constexpr", BH="constexpr", BW="constexpr")
    ratio = dict(colsum=f, r=f, src0=f, invalid=f, inv_count=f, cols_start=ip, W=i, h=i, w=i, max_cell_w=i,
                 eps="fp32", BC="constexpr")
    mat = dict(u=f, r=f, z=f, out=f, partial=f, rows=ip, cols=ip, H=i, W=i, h=i, w=i, eps="fp32",
               wa="fp32", wb="fp32", SEMI="constexpr", CHECK="constexpr", TH="constexpr", TW="constexpr")
    variants = [
        (tlp._sweep_kernel, sweep, {"SEMI": False, "BH": 4, "BW": 128}, 4),
        (tlp._sweep_kernel, sweep, {"SEMI": True, "BH": 16, "BW": 128}, 8),
        (tlp._ratio_kernel, ratio, {"BC": 128}, 4),
        (tlp._materialise_kernel, mat, {"SEMI": False, "CHECK": True, "TH": 8, "TW": 128}, 4),
        (tlp._materialise_kernel, mat, {"SEMI": True, "CHECK": False, "TH": 8, "TW": 128}, 4),
    ]
    for fn, sig, consts, warps in variants:
        kernel = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", arch, 32),
                                options={"num_warps": warps, **tlp._OPTIONS})
        assert len(kernel.asm["cubin"]) > 1000, (fn.__name__, consts)
        assert f".target sm_{arch}" in kernel.asm["ptx"]


@needs_triton
def test_triton_traffic_is_about_five_image_passes():
    """The factored design's point: per iteration the kernels move U twice, the two link arrays
    once, and cell-sized data (the torch loop moves ~27 image passes)."""
    from dada_ros.core.triton_loop import triton_traffic

    y0, src, valid, cv, ch, res, _, _, _ = make_case("x4")
    one_pass = y0.nbytes
    assert 4 * one_pass < triton_traffic(y0, src, valid, cv, ch, res, check_every=25) < 5 * one_pass


def test_auto_falls_back_to_torch_loop_with_one_warning(monkeypatch):
    """A failing Triton loop under backend="auto": one warning, the torch loop's answer, and no
    further Triton attempts in the process. (CPU tensors stand in for CUDA ones here.)"""
    import dada_ros.core.fused_cpu as fused_cpu
    import dada_ros.core.loop as loop
    import dada_ros.core.triton_loop as triton_loop

    calls = []

    class broken:
        def __init__(self, *args, **kwargs):
            calls.append(1)
            raise RuntimeError("simulated PTX compile failure")

    monkeypatch.setattr(fused_cpu, "fused_available", lambda y: False)
    monkeypatch.setattr(loop, "_auto_wants_triton", lambda y: not loop._triton_failed)
    monkeypatch.setattr(loop, "_triton_failed", False)
    monkeypatch.setattr(triton_loop, "TritonLoop", broken)
    monkeypatch.setattr(triton_loop, "_warned", set())
    y0, src, valid, cv, ch, res, iterations, check_every, _ = make_case("x4")
    y_ref = y0.clone()
    run_loop(y_ref, src, valid, cv, ch, res, LAM, iterations, None, check_every, backend="torch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y1, y2 = y0.clone(), y0.clone()
        run_loop(y1, src, valid, cv, ch, res, LAM, iterations, None, check_every)
        run_loop(y2, src, valid, cv, ch, res, LAM, iterations, None, check_every)
    assert len(calls) == 1  # the second call did not try Triton again
    assert len([w for w in caught if "triton loop failed" in str(w.message)]) == 1
    assert torch.equal(y1, y_ref) and torch.equal(y2, y_ref)


def test_explicit_triton_backend_refuses_plain_cpu_tensor():
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("TRITON_INTERPRET is set in this process: CPU tensors are accepted")
    y0, src, valid, cv, ch, res, iterations, check_every, _ = make_case("x4")
    with pytest.raises(ValueError, match="triton"):
        run_loop(y0, src, valid, cv, ch, res, LAM, 5, backend="triton")


def test_auto_self_test_accepts_an_agreeing_loop_and_rejects_a_wrong_one(monkeypatch):
    """backend="auto" trusts the Triton loop on a device only after it matched the torch loop on
    a small problem; a loop that is off by 1% is refused with a warning (and remembered)."""
    from dada_ros.core import loop

    monkeypatch.setattr(loop, "_triton_agrees_on", {})
    cpu = torch.device("cpu")

    def same(y, *args, **kwargs):
        return loop.run_loop(y, *args[:7], backend="torch", **kwargs)

    assert loop.triton_agrees(cpu, same)
    monkeypatch.setattr(loop, "_triton_agrees_on", {})
    calls = []

    def off(y, *args, **kwargs):
        calls.append(1)
        stats = loop.run_loop(y, *args[:7], backend="torch", **kwargs)
        y.mul_(1.01)
        return stats

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not loop.triton_agrees(cpu, off)
        assert not loop.triton_agrees(cpu, off)  # remembered: tested once per device
    assert len(calls) == 2  # one plain and one Chebyshev run, in the first call only
    assert any("self-test" in str(w.message) and "1.00e-02" in str(w.message) for w in caught)

    def broken(y, *args, **kwargs):
        raise RuntimeError("no kernel image for this device")

    monkeypatch.setattr(loop, "_triton_agrees_on", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not loop.triton_agrees(cpu, broken)
    assert any("no kernel image" in str(w.message) for w in caught)


def _interpreter_main(out: Path) -> None:
    """Subprocess entry: TRITON_INTERPRET=1 is already in the environment (set by the fixture)."""
    torch.set_num_threads(1)
    from dada_ros.core.triton_loop import interpreter_mode

    assert interpreter_mode(), "TRITON_INTERPRET=1 did not reach triton"
    for name in sorted(CASES):
        y0, src, valid, cv, ch, res, iterations, check_every, tol = make_case(name)
        y = y0.clone()
        stats = run_loop(y, src, valid, cv, ch, res, LAM, backend="triton", schedule=case_schedule(name))
        np.save(out / f"{name}.npy", y.numpy())
        (out / f"{name}.json").write_text(json.dumps({
            "iterations": stats.iterations, "converged": stats.converged,
            "residual_history": stats.residual_history,
        }))
    # The self-test backend="auto" runs on a device before trusting the kernels, on the real ones.
    from dada_ros.core.loop import triton_agrees
    from dada_ros.core.triton_loop import run_loop_triton

    (out / "self_test.json").write_text(json.dumps(triton_agrees(torch.device("cpu"), run_loop_triton)))


if __name__ == "__main__":
    _interpreter_main(Path(sys.argv[1]))

