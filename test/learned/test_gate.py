"""The gate toward DADA-free: shut is exactly DADA-free, open is the network, chosen on validation."""

import math

import numpy as np
import pytest
import torch

from dada_ros.core.errors import DadaInputError
from dada_ros.core.solver import DadaSolver, FreeGuide, SolverConfig
from dada_ros.learned import gate as G
from dada_ros.learned import model as M
from dada_ros.learned.datasets.base import RGBDScene


def _trained_like(gate=True, seed=0):
    """A lite-unet whose zero-initialised last layers are randomised (so it differs from DADA-free)."""
    torch.manual_seed(seed)
    net = M.GuideNet(M.GuideConfig(gate=gate, scale_film=True)).eval()
    for m in (net.net.head, net.net.local):
        torch.nn.init.normal_(m.weight, std=0.3)
    return net


def _inputs(H=40, W=48):
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, H, W, generator=g), 1.0 + 3 * torch.rand(1, 1, H, W, generator=g)


def test_shut_gate_gives_exactly_dada_free_coefficients():
    net = _trained_like()
    rgb, d = _inputs()
    free = FreeGuide()
    fcv, fch = free.coefficients(free.features(rgb, d))
    with torch.no_grad():
        for scale in (2.0, 4.0, 5.5, 8.0, 16.0, 32.0):
            f = net(rgb, d, scale)
            assert f.shape[1] == 5  # inference skips F where the gate is shut
            cv, ch = net.coefficients(f)
            assert torch.equal(cv, fcv) and torch.equal(ch, fch)
    net.train()  # training runs F (the gate's gradient needs it): still exactly DADA-free
    cv, ch = net.coefficients(net(rgb, d, 8.0))
    assert torch.equal(cv, fcv) and torch.equal(ch, fch)


def test_open_gate_gives_the_network_and_interpolates_in_log_ratio():
    gated, plain = _trained_like(), _trained_like(gate=False)
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if k != "gate"})
    G.set_gate(gated, {4: 1.0, 8: 1.0, 16: 1.0})
    rgb, d = _inputs()
    with torch.no_grad():
        cv, ch = gated.coefficients(gated(rgb, d, 8.0))
        pv, ph = plain.coefficients(plain(rgb, d, 8.0))
    torch.testing.assert_close(cv, pv, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(pv, FreeGuide().coefficients(FreeGuide().features(rgb, d))[0], atol=1e-3)
    G.set_gate(gated, {4: 0.2, 8: 0.6, 16: 1.0})
    assert float(gated.gate_value(4.0).detach()) == pytest.approx(0.2)
    assert float(gated.gate_value(2.0).detach()) == pytest.approx(0.2)  # constant outside the anchors
    assert float(gated.gate_value(8 * math.sqrt(2)).detach()) == pytest.approx(0.8)
    with pytest.raises(DadaInputError, match="ratio"):
        gated(rgb, d, None)
    with pytest.raises(DadaInputError, match=r"\[0, 1\]"):
        G.set_gate(gated, {8: 1.5})


def test_gate_is_trainable_and_checkpointed(tmp_path):
    net = _trained_like().train()
    rgb, d = _inputs()
    G.set_gate(net, {8: 0.5})
    cv, _ = net.coefficients(net(rgb, d, 8.0))
    cv.sum().backward()
    assert net.gate.grad is not None and float(net.gate.grad[1]) != 0.0
    M.save_checkpoint(tmp_path / "g.pt", net.eval(), {"x": 1})
    back, _, _ = M.load_checkpoint(tmp_path / "g.pt")
    assert back.config.gate and torch.equal(back.gate, net.gate.detach())
    # a checkpoint without a gate (dada_lite_v5 and older) gets a shut one
    M.save_checkpoint(tmp_path / "p.pt", _trained_like(gate=False))
    g2, _ = G.load_gated(str(tmp_path / "p.pt"))
    assert g2.config.gate and torch.equal(g2.gate, torch.zeros(3))


def _grid():
    # two scenes at x8: alpha 1 wins pooled but loses on scene b; alpha 0.5 helps both
    cell = lambda free, a5, a1: {"free": (free, 1), 0.0: (free, 1), 0.5: (a5, 1), 1.0: (a1, 1)}
    return {"a": {8: cell(10.0, 8.0, 4.0)}, "b": {8: cell(10.0, 9.0, 11.0)}, "c": {8: cell(10.0, 12.0, 13.0)}}


def test_choose_gate_never_loses_on_a_chosen_scene_and_leave_one_out():
    grid = _grid()
    assert G.choose_gate(grid, ["a", "b"]) == {8: 0.5}
    assert G.choose_gate(grid, ["a", "b"], max_ratio=1.2) == {8: 1.0}
    assert G.choose_gate(grid, ["c"]) == {8: 0.0}  # nothing helps: DADA-free
    assert G.pooled_ratio(grid, ["a", "b"], {8: 0.5}) == {8: pytest.approx(17 / 20)}
    loo = G.leave_one_out(grid)
    assert loo["c"]["gate"] == {8: 0.5} and loo["c"]["ratio"][8] == pytest.approx(1.2)
    assert loo["a"]["gate"] == {8: 0.0} and loo["a"]["ratio"][8] == pytest.approx(1.0)
    assert "0.40" in G.format_grid(grid, {8: 0.5}, loo)  # scene a, network alone


def test_gate_grid_shut_equals_dada_free_on_a_scene(sample_x8):
    net = _trained_like()
    scene = RGBDScene(sample_x8.rgb[:64, :64], sample_x8.gt[:64, :64], "s")
    cfg = SolverConfig(iterations=200)
    grid = G.gate_grid(net, [scene], (8,), (0.0, 1.0), cfg)
    cell = grid["s"][8]
    assert cell[0.0] == cell["free"] and cell[1.0] != cell["free"]
    free = DadaSolver(cfg, FreeGuide())
    from dada_ros.core.scenes import block_average

    pred = free.solve(scene.rgb, block_average(scene.depth, (8, 8))).depth
    sq = float(np.nansum(((pred - scene.depth) * 100) ** 2))
    assert cell["free"][0] == pytest.approx(sq, rel=1e-4) and cell["free"][1] == 64 * 64


def test_joint_choice_weighs_synthetic_but_constrains_only_the_real_scenes():
    grid = _grid()
    cell = lambda a5, a1: {"free": (10.0, 1), 0.0: (10.0, 1), 0.5: (a5, 1), 1.0: (a1, 1)}
    syn = {"s": {8: cell(9.0, 2.0)}}  # the network alone is far better on synthetic scenes
    assert G.choose_gate(grid, ["a", "b"]) == {8: 0.5}
    assert G.choose_gate(grid, ["a", "b"], max_ratio=1.2, also=(syn, ["s"])) == {8: 1.0}
    assert G.choose_gate(grid, ["b", "c"], max_ratio=1.15, also=(syn, ["s"])) == {8: 0.0}  # c loses at 0.5 and 1


def test_dada_eval_select_gate_on_a_realdata_fixture(tmp_path, capsys):
    """dada-eval --select-gate: per-scene table with LOO, a gated checkpoint that loads."""
    from dada_ros.cli.eval import main
    from dada_ros.core.scenes import make_sample
    from dada_ros.learned.datasets import realdata as R

    for i, (name, tag) in enumerate(R.DENSE_REAL.items()):
        s = make_sample(seed=20 + i, scale=8, size=(32, 48))
        disp = (20.0 / s.gt).astype(np.float32)  # a disparity-like map of the rendered depth
        (tmp_path / tag).mkdir(exist_ok=True)
        np.savez(tmp_path / tag / f"{name}.npz", rgb=s.rgb, depth=disp, valid=np.ones_like(disp, bool),
                 unit=np.array("disparity_px"), meta=np.array("{}"))
    ck = tmp_path / "net.pt"
    M.save_checkpoint(ck, _trained_like())
    out = tmp_path / "gated.pt"
    rc = main(["--dataset", "realdata", "--data-dir", str(tmp_path), "--split", "val", "--scales", "4", "8",
               "--weights", str(ck), "--gate-grid", "0", "1", "--select-gate", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0 and "LOO" in text and "teddy (val)" in text and "tsukuba (train)" in text
    net, meta, _ = M.load_checkpoint(out)
    assert net.config.gate and meta["gate_selection"]["chosen_on"] == ["teddy", "books", "venus"]
    assert {float(v) for v in net.gate.detach()[:2]} <= {0.0, 1.0}
    with pytest.raises(DadaInputError, match="realdata"):
        main(["--select-gate", str(out), "--quiet"])
