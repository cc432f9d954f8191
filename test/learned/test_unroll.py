"""The unrolled training pass: gradient paths, checkpointing, and that a tiny batch can be overfit."""

import numpy as np
import pytest
import torch

from dada_ros.core.loop import adjust_step, diffusion_step
from dada_ros.core.resample import Partition, Resampler
from dada_ros.core.scenes import make_sample
from dada_ros.learned.datasets.base import collate, make_example
from dada_ros.learned.model import GuideConfig, GuideNet
from dada_ros.learned.unroll import masked_l1, unrolled_solve


@pytest.fixture(scope="module")
def batch():
    exs = []
    for seed, (i, j) in ((3, (40, 20)), (5, (8, 60))):
        s = make_sample(seed, 8, (96, 96))
        exs.append(make_example(s.rgb[i:i + 32, j:j + 32].copy(), s.gt[i:i + 32, j:j + 32].copy(), 4))
    return collate(exs)


def _net(seed=0):
    torch.manual_seed(seed)
    net = GuideNet(GuideConfig(channels=8))
    for p in list(net.net.head.parameters()) + list(net.net.local.parameters()):
        torch.nn.init.normal_(p, std=0.05)
    return net.train()


def _grads(net):
    return {k: (p.grad.clone() if p.grad is not None else None) for k, p in net.named_parameters()}


def test_gradient_reaches_f_and_kappa(batch):
    net = _net()
    masked_l1(unrolled_solve(net, batch, 5, 4), batch.gt, batch.gt_valid).backward()
    g = _grads(net)
    assert g["log_kappa"] is not None and g["log_kappa"].abs() > 0
    assert g["net.head.weight"].abs().sum() > 0 and g["net.enc.0.0.weight"].abs().sum() > 0


def test_gradient_reaches_the_scale_film(batch):
    """A ratio-conditioned F learns its FiLM from the unrolled pass, which hands it the batch's ratio (x4)."""
    torch.manual_seed(0)
    net = GuideNet(GuideConfig(channels=8, scale_film=True))
    torch.nn.init.normal_(net.net.head.weight, std=0.05)
    seen = []
    original = net.forward
    net.forward = lambda rgb, d, scale=None: seen.append(scale) or original(rgb, d, scale)
    masked_l1(unrolled_solve(net, batch, 5, 4), batch.gt, batch.gt_valid).backward()
    assert seen == [4.0]
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in net.net.film)


def test_no_gradient_without_grad_steps(batch):
    pred = unrolled_solve(_net(), batch, 7, 0)
    assert not pred.requires_grad


def test_gradient_only_through_last_n_grad_steps(batch):
    """Gradients equal those of N_grad differentiable steps started from the DETACHED state
    after N_pre steps, and differ from back-propagating through all N_pre + N_grad steps."""
    n_pre, n_grad, lam = 6, 3, 0.24
    net = _net().eval()  # eval: batch-norm statistics do not change between the runs
    masked_l1(unrolled_solve(net, batch, n_pre, n_grad, lam), batch.gt, batch.gt_valid).backward()
    g_unroll = _grads(net)

    res = Resampler(Partition(tuple(batch.rgb.shape[-2:]), tuple(batch.source.shape[-2:])), torch.device("cpu"))

    def manual(n_detached, n_diff):
        net.zero_grad()
        cv, ch = net.coefficients(net(batch.rgb, batch.y0))
        y = batch.y0.clone()
        with torch.no_grad():
            for _ in range(n_detached):
                y = adjust_step(diffusion_step(y, cv * lam, ch * lam), batch.source, batch.valid, res)
        for _ in range(n_diff):
            y = adjust_step(diffusion_step(y, cv * lam, ch * lam), batch.source, batch.valid, res)
        masked_l1(y, batch.gt, batch.gt_valid).backward()
        return _grads(net)

    g_cut = manual(n_pre, n_grad)
    g_full = manual(0, n_pre + n_grad)
    for k in ("log_kappa", "net.head.weight", "net.local.weight"):
        torch.testing.assert_close(g_unroll[k], g_cut[k], rtol=1e-4, atol=1e-7)
        assert not torch.allclose(g_unroll[k], g_full[k], rtol=1e-3, atol=1e-9)


def test_activation_checkpointing_same_gradients(batch):
    net = _net().eval()
    out = {}
    for seg in (0, 2):
        net.zero_grad()
        pred = unrolled_solve(net, batch, 3, 7, segment=seg)
        masked_l1(pred, batch.gt, batch.gt_valid).backward()
        out[seg] = (pred.detach(), _grads(net))
    torch.testing.assert_close(out[0][0], out[2][0])
    for k in ("log_kappa", "net.head.weight", "net.enc.1.0.0.weight"):
        torch.testing.assert_close(out[0][1][k], out[2][1][k], rtol=1e-4, atol=1e-8)


def test_positivity_guard_shift(batch):
    """Near-zero depths are shifted like the solver does; the prediction stays consistent."""
    b = collate([make_example(np.full((16, 16, 3), 128, np.uint8), np.full((16, 16), 0.05, np.float32), 4)])
    pred = unrolled_solve(GuideNet().eval(), b, 3, 2)
    torch.testing.assert_close(pred, torch.full_like(pred, 0.05), atol=1e-6, rtol=0)


def test_overfit_tiny_batch(batch):
    """A few Adam steps on one tiny batch lower the loss clearly (F and kappa can learn)."""
    torch.manual_seed(0)
    net = GuideNet(GuideConfig(channels=8)).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for it in range(15):
        loss = 10 * masked_l1(unrolled_solve(net, batch, 5, 4), batch.gt, batch.gt_valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.85 * losses[0], losses


def test_full_solve_forward_equals_the_solver_loop_and_checkpointing_keeps_the_gradient(batch):
    """Training through the whole Chebyshev solve: the prediction is what the in-place loop of the
    solver returns for the same schedule, and segmented checkpointing gives the same gradient."""
    from dada_ros.core.loop import run_loop
    from dada_ros.core.schedule import Schedule

    schedule = Schedule.chebyshev(30, 0.01)
    net = _net()
    pred = unrolled_solve(net, batch, 0, 0, schedule=schedule)
    masked_l1(pred, batch.gt, batch.gt_valid).backward()
    g_full = _grads(net)
    assert g_full["log_kappa"] is not None and g_full["log_kappa"].abs() > 0
    with torch.no_grad():
        part = Partition(tuple(batch.rgb.shape[-2:]), tuple(batch.source.shape[-2:]))
        res = Resampler(part, batch.rgb.device)
        cv, ch = net.coefficients(net(batch.rgb, batch.y0, part.scale))
        y = batch.y0.clone().contiguous()
        src = torch.where(batch.valid, batch.source, torch.zeros_like(batch.source))
        run_loop(y, src, batch.valid, cv, ch, res, 0.24, backend="torch", schedule=schedule)
    torch.testing.assert_close(pred.detach(), y, rtol=1e-4, atol=1e-5)
    net.zero_grad()
    masked_l1(unrolled_solve(net, batch, 0, 0, segment=7, schedule=schedule), batch.gt, batch.gt_valid).backward()
    for k, g in _grads(net).items():
        if g is not None:
            torch.testing.assert_close(g, g_full[k], rtol=1e-4, atol=1e-7)
