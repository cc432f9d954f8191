"""The learned guide's coefficients straight from the inputs (``learned/fused_coefficients.py``):
equal to the torch path (features, then coefficients) to float rounding, exactly DADA-free where
the gate is shut, and out of the way wherever it does not apply."""

import numpy as np
import pytest
import torch

from dada_ros.core import coefficients as coef
from dada_ros.core.solver import DadaSolver, SolverConfig
from dada_ros.learned import fused_coefficients as FC
from dada_ros.learned import model as M

pytestmark = pytest.mark.skipif(not FC.HAVE_NUMBA, reason="numba not installed: the torch path is the only one")


def _inputs(H, W, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.random((H, W, 3), dtype=np.float32)
    depth = (0.5 + 3 * rng.random((H, W), dtype=np.float32)).astype(np.float32)
    return rgb, depth


def _torch_path(net, rgb, depth, scale):
    with torch.no_grad():
        t = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        return net.coefficients(net(t, torch.from_numpy(depth)[None, None], scale))


def _perturbed(cfg: M.GuideConfig, seed=0) -> M.GuideNet:
    """A net whose every layer matters (the zero-initialised head, local layer, FiLM and gate
    drawn at random, batch-norm statistics away from 0 / 1)."""
    torch.manual_seed(seed)
    net = M.GuideNet(cfg)
    with torch.no_grad():
        for name, p in net.net.named_parameters():
            if "head" in name or "local" in name or "film" in name:
                p.normal_(std=0.3)
        for m in net.net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(std=0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
        if cfg.gate:
            net.gate.copy_(torch.tensor([0.8, 0.5, 1.0]))
    return net.eval()


CONFIGS = {
    "shipped-like (quarter, gated, ratio-conditioned)": M.GuideConfig(
        architecture="lite-unet-q", channels=8, scale_film=True, gate=True),
    "half resolution, no gate, linear depth": M.GuideConfig(
        architecture="lite-unet", channels=12, normalisation="mean"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("shape", [(17, 29), (70, 37), (120, 161), (300, 20)])
@pytest.mark.parametrize("scale", [4.0, 5.3, 16.0])
def test_equals_the_torch_path(name, shape, scale):
    """Odd sizes (reflection and replication padding), both pooling factors, gated and not."""
    net = _perturbed(CONFIGS[name])
    rgb, depth = _inputs(*shape)
    ref = _torch_path(net, rgb, depth, scale)
    got = FC.learned_coefficients_from_inputs(net, rgb, depth, scale)
    for r, g in zip(ref, got):
        assert g.shape == r.shape and g.dtype == torch.float32
        torch.testing.assert_close(g, r, atol=2e-6, rtol=1e-5)
    assert not torch.equal(got[0], coef.free_coefficients_from_inputs(rgb, depth)[0])  # the net matters


def test_shipped_model_equals_the_torch_path():
    if not M.SHIPPED_PATH.exists():
        pytest.skip("no shipped checkpoint in this checkout")
    guide = M.load_guide_model(None, device="cpu")
    rgb, depth = _inputs(96, 128, seed=3)
    for scale in (4.0, 8.0, 16.0):
        ref = _torch_path(guide.net, rgb, depth, scale)
        via_guide = guide.coefficients_from_inputs(rgb, depth, torch.device("cpu"), scale)
        for r, g in zip(ref, via_guide):
            torch.testing.assert_close(g, r, atol=2e-6, rtol=1e-5)


def test_a_shut_gate_is_exactly_dada_free():
    net = _perturbed(CONFIGS["shipped-like (quarter, gated, ratio-conditioned)"])
    with torch.no_grad():
        net.gate.zero_()
    rgb, depth = _inputs(50, 70)
    got = FC.learned_coefficients_from_inputs(net, rgb, depth, 8.0)
    free = coef.free_coefficients_from_inputs(rgb, depth)
    assert all(torch.equal(g, f) for g, f in zip(got, free))


@pytest.mark.parametrize("cfg", [
    M.GuideConfig(architecture="lite-unet-fr", channels=8),  # no pooling
    M.GuideConfig(architecture="lite-unet", channels=8, refine_width=8),  # the refinement layer
    M.GuideConfig(architecture="resnet50-unet", channels=8),
])
def test_does_not_apply_where_it_does_not_cover(cfg):
    net = M.GuideNet(cfg).eval()
    rgb, depth = _inputs(64, 64)
    assert FC.learned_coefficients_from_inputs(net, rgb, depth, 8.0) is None
    guide = M.LearnedGuide(net, torch.device("cpu"))
    assert guide.coefficients_from_inputs(rgb, depth, torch.device("cpu"), 8.0) is None


def test_does_not_apply_in_training_mode():
    net = _perturbed(CONFIGS["shipped-like (quarter, gated, ratio-conditioned)"]).train()
    rgb, depth = _inputs(40, 40)
    assert FC.learned_coefficients_from_inputs(net, rgb, depth, 8.0) is None


def test_the_solver_uses_it_and_solves_as_the_torch_path(sample_x8, monkeypatch):
    """A learned solve on the CPU prepares without a feature tensor and returns the depth of the
    torch path's coefficients, to float rounding."""
    guide = M.LearnedGuide(_perturbed(CONFIGS["shipped-like (quarter, gated, ratio-conditioned)"]),
                           torch.device("cpu"))
    solver = DadaSolver(SolverConfig(iterations=300), guide)
    fast = solver.prepare(sample_x8.rgb, sample_x8.source)
    res_fast = solver.solve(sample_x8.rgb, sample_x8.source, prepared=fast)
    monkeypatch.setattr(M.LearnedGuide, "coefficients_from_inputs", lambda *a, **k: None)
    slow = solver.prepare(sample_x8.rgb, sample_x8.source)
    res_slow = solver.solve(sample_x8.rgb, sample_x8.source, prepared=slow)
    assert fast.features is None and slow.features is not None
    torch.testing.assert_close(fast.cv, slow.cv, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(res_fast.depth, res_slow.depth, rtol=1e-4, atol=1e-5)


def test_follows_the_weights_when_they_change_in_place():
    """Nothing of the network is cached: a gate set (as the gate search does between solves with
    one guide), new weights loaded, or an optimiser step is seen by the next call."""
    from dada_ros.learned.gate import set_gate

    net = _perturbed(CONFIGS["shipped-like (quarter, gated, ratio-conditioned)"])
    guide = M.LearnedGuide(net, torch.device("cpu"))
    rgb, depth = _inputs(64, 80, seed=5)
    cpu = torch.device("cpu")

    def check():
        got = guide.coefficients_from_inputs(rgb, depth, cpu, 8.0)
        for r, g in zip(_torch_path(net, rgb, depth, 8.0), got):
            torch.testing.assert_close(g, r, atol=2e-6, rtol=1e-5)
        return got

    first = check()
    set_gate(net, {8: 0.3})
    assert not torch.equal(check()[0], first[0])
    other = _perturbed(CONFIGS["shipped-like (quarter, gated, ratio-conditioned)"], seed=1)
    net.load_state_dict(other.state_dict())
    check()
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    net.coefficients(net(t, torch.from_numpy(depth)[None, None], 8.0))[0].mean().backward()
    opt.step()
    net.eval()
    check()
