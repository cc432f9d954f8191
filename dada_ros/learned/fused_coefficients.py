"""A lite U-Net's coefficients straight from the guide and Y0, for CPU inference.

The torch path of a learned frame (``GuideNet.forward`` then ``GuideNet.coefficients``) walks
full-resolution tensors many times: the normalised network input (a concatenation), the
learning-free base features (another), the reflection padding and pooling of the input, the
fused output stage writing C feature channels, the concatenation of features, base and gate
(C + 5 channels) and the coefficient kernel reading them back. At 640x480 on one thread those
passes cost about as much as the quarter-resolution U-Net itself.

:func:`learned_coefficients_from_inputs` does the same arithmetic in two passes over the image
and keeps only two rows of features at a time: one pass makes the pooled (padded) network input
the U-Net runs on; the U-Net runs in torch unchanged (:meth:`LiteUNet.trunk`); a second pass,
row by row, upsamples its gates and residuals, forms the features and the base, and writes the
blended coefficients. The answer equals the torch path's to float rounding (the depth channel's
mean and the pooling sum in another order); a shut gate returns DADA-free's coefficients
bit-identically, as the torch path does. Training, the GPU and the architectures it does not
cover keep the torch path (the function returns None).
"""

from __future__ import annotations

import numpy as np
import torch

from dada_ros.core import coefficients as coef
from dada_ros.core.errors import DadaInputError
from dada_ros.core.fused_cpu import HAVE_NUMBA

from .backbones import LiteUNet, pad_plan

if HAVE_NUMBA:
    from dada_ros.core.coefficients import _coef_rows, _free_row
    from dada_ros.core.fused_cpu import njit

    from .fused_head import up2_blend_row


def fused_inputs_apply(net) -> bool:
    """True when :func:`learned_coefficients_from_inputs` serves ``net`` (a :class:`GuideNet`):
    numba present, a lite U-Net pooling its input (``lite-unet``, ``lite-unet-q``) without the
    refinement layer, float32 parameters on the CPU, in eval mode."""
    inner = getattr(net, "net", None)
    if not (HAVE_NUMBA and isinstance(inner, LiteUNet) and inner.input_pool > 1 and not inner.refine_width):
        return False
    p = net.log_kappa
    return p.device.type == "cpu" and p.dtype == torch.float32 and not net.training


@torch.no_grad()
def learned_coefficients_from_inputs(net, rgb: np.ndarray, depth_up: np.ndarray, scale: float | None
                                     ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``net.coefficients(net(rgb, depth_up, scale))`` without the full-resolution tensors.

    Args:
        net: a :class:`~dada_ros.learned.model.GuideNet` in eval mode.
        rgb: (H, W, 3) float32 guide in [0, 1]; depth_up: (H, W) float32 Y0 in metres.
        scale: the resolution ratio guide / source (a gated or ratio-conditioned model needs it).
    Returns:
        (cv, ch): (1, 1, H - 1, W) and (1, 1, H, W - 1) float32, or None where this path does not
        apply (:func:`fused_inputs_apply`): then the caller runs the torch path.
    """
    if not fused_inputs_apply(net):
        return None
    g = np.ascontiguousarray(rgb, dtype=np.float32)
    d = np.ascontiguousarray(depth_up, dtype=np.float32)
    if g.ndim != 3 or g.shape[2] != 3 or d.shape != g.shape[:2]:
        raise DadaInputError(f"expected a guide (H, W, 3) and a depth (H, W), got {g.shape} and {d.shape}")
    cfg = net.config
    alpha = float(net.gate_value(scale)) if cfg.gate else 1.0
    if cfg.gate and alpha == 0.0:  # shut at this ratio: exactly DADA-free, F is not run (as forward)
        return coef.free_coefficients_from_inputs(g, d)
    unet: LiteUNet = net.net
    pool, stride = unet.input_pool, unet.stride
    if pool not in (2, 4):  # fused_inputs_apply admits pooled nets; the kernel does one or two x2 steps
        raise AssertionError(f"a pooled lite U-Net pools by 2 or 4, not {pool}")
    H, W = d.shape
    # the network input's depth channel, centred on its image mean (GuideNet.network_input)
    if cfg.normalisation == "log-mean":
        from .model import MIN_DEPTH  # here: model.py imports this module
        z = np.log(np.maximum(d, np.float32(MIN_DEPTH)))
    else:
        z = d * np.float32(cfg.depth_scale)
    z -= np.float32(z.mean(dtype=np.float64))
    # the U-Net's input: the network input padded to its stride (backbones.pad_plan) and pooled
    ph, pw, mode = pad_plan(H, W, stride)
    rows = _pad_index(H, H + ph, mode == "reflect")
    cols = _pad_index(W, W + pw, mode == "reflect")
    mean = np.asarray(coef.IMAGENET_MEAN, np.float32)
    std = np.asarray(coef.IMAGENET_STD, np.float32)
    pooled = np.empty((1, 4, (H + ph) // pool, (W + pw) // pool), np.float32)
    _pooled_input_kernel(g, z, mean, std, rows, cols, pool, pooled)
    from .model import scale_code
    code = scale_code(scale, 1, torch.device("cpu")) if cfg.scale_film else None
    hd, _ = unet.trunk(torch.from_numpy(pooled), code)
    C = unet.out_channels
    cv = np.empty((1, 1, H - 1, W), np.float32)
    ch = np.empty((1, 1, H, W - 1), np.float32)
    k_learned = float(net.kappa)
    coef.check_kappa(k_learned)
    _coefficients_kernel(hd.numpy(), pool == 4, g, d, z, mean, std, np.float32(coef.DEPTH_FEATURE_PER_METRE),
                         unet.local.weight.detach().reshape(C, 4).contiguous().numpy(),
                         unet.local.bias.detach().contiguous().numpy(),
                         np.float32(k_learned * k_learned), np.float32(coef.DEFAULT_KAPPA * coef.DEFAULT_KAPPA),
                         np.float32(alpha), cfg.gate, cv, ch)
    return torch.from_numpy(cv), torch.from_numpy(ch)


def _pad_index(n: int, n_padded: int, reflect: bool) -> np.ndarray:
    """Source index of each padded index (padding at the end only, as ``F.pad(x, (0, p, 0, q))``):
    reflection without repeating the edge, or replication."""
    i = np.arange(n_padded)
    src = 2 * (n - 1) - i if reflect else np.full(n_padded, n - 1)
    return np.where(i < n, i, src).astype(np.int64)


if HAVE_NUMBA:

    @njit(cache=True, fastmath=False, error_model="numpy", nogil=True)
    def _pooled_input_kernel(g, z, mean, std, rows, cols, pool, out):  # pragma: no cover - compiled
        # out[0, :, a, b] = mean over the pool x pool block (a, b) of the padded network input:
        # ImageNet-normalised RGB and the centred depth channel z.
        hp, wp = out.shape[2], out.shape[3]
        acc = np.empty((4, wp), np.float32)
        inv = np.float32(1.0) / np.float32(pool * pool)
        for a in range(hp):
            acc[:] = np.float32(0.0)
            for r in range(pool):
                i = rows[a * pool + r]
                for b in range(wp):
                    for s in range(pool):
                        j = cols[b * pool + s]
                        for c in range(3):
                            acc[c, b] += (g[i, j, c] - mean[c]) / std[c]
                        acc[3, b] += z[i, j]
            for c in range(4):
                for b in range(wp):
                    out[0, c, a, b] = acc[c, b] * inv

    @njit(cache=True, fastmath=False, error_model="numpy", nogil=True)
    def _feature_row(hd, two_steps, g, d, z, i, mean, std, dscale, lw, lb, half, half_row, up, rowbuf, ringf, ringb,
                     slot):  # pragma: no cover - compiled
        # Row i of the base features (ringb, _free_row: normalised RGB, depth x dscale) and of the
        # learned features (ringf): local(x) + up(r) + base + base * up(g), as fused_head's kernel
        # with x's RGB channels = the base's and its depth channel = z. The head output hd is at
        # half resolution, or (two_steps) at a quarter: then its x2 rows to half resolution are
        # made here on demand, each once (half: three rows, half_row: which row each slot holds).
        C2 = hd.shape[1]
        C = C2 // 2
        W = d.shape[1]
        nb = ringb.shape[1]
        _free_row(g, d, i, mean, std, dscale, ringb, slot)
        k = i // 2
        h2 = 2 * hd.shape[2] if two_steps else hd.shape[2]
        i1 = max(k - 1, 0) if i % 2 == 0 else min(k + 1, h2 - 1)
        if two_steps:
            h4, w4 = hd.shape[2], hd.shape[3]
            for m in (k, i1):
                if half_row[m % 3] != m:
                    m0 = m // 2
                    m1 = max(m0 - 1, 0) if m % 2 == 0 else min(m0 + 1, h4 - 1)
                    for c in range(C2):
                        up2_blend_row(hd[0, c, m0], hd[0, c, m1], w4, rowbuf, half[c, m % 3])
                    half_row[m % 3] = m
            w = half.shape[2]
            for c in range(C2):
                up2_blend_row(half[c, k % 3], half[c, i1 % 3], w, rowbuf, up[c])
        else:
            w = hd.shape[3]
            for c in range(C2):
                up2_blend_row(hd[0, c, k], hd[0, c, i1], w, rowbuf, up[c])
        for c in range(C):
            o = ringf[0, c, slot]
            for j in range(W):
                o[j] = lb[c]
            for t in range(3):
                wt = lw[c, t]
                xr = ringb[0, t, slot]
                for j in range(W):
                    o[j] += wt * xr[j]
            wt = lw[c, 3]
            zr = z[i]
            for j in range(W):
                o[j] += wt * zr[j]
            bm = ringb[0, c % nb, slot]
            ug = up[c]
            ur = up[C + c]
            for j in range(W):
                o[j] = ((o[j] + ur[j]) + bm[j]) + bm[j] * ug[j]

    @njit(cache=True, fastmath=False, error_model="numpy", nogil=True)
    def _coefficients_kernel(hd, two_steps, g, d, z, mean, std, dscale, lw, lb, k2_learned, k2_free, alpha,
                             gated, cv, ch):  # pragma: no cover - compiled
        # Features two rows at a time (rings), then GuideNet.coefficients per row: the learned
        # features' c with the learned kappa, blended with DADA-free's (the base, default kappa)
        # by the gate alpha as fv + alpha * (cv - fv).
        H, W = d.shape
        C2 = hd.shape[1]
        C = C2 // 2
        w = 2 * hd.shape[3] if two_steps else hd.shape[3]  # the half-resolution width
        ringf = np.empty((1, C, 2, W), np.float32)
        ringb = np.empty((1, 4, 2, W), np.float32)
        half = np.empty((C2, 3, w), np.float32)
        half_row = np.full(3, -1, np.int64)
        up = np.empty((C2, 2 * w), np.float32)
        rowbuf = np.empty(w + 2, np.float32)
        acc = np.empty(W, np.float32)
        lv = np.empty(W, np.float32)
        lh = np.empty(W, np.float32)
        fv = np.empty(W, np.float32)
        fh = np.empty(W, np.float32)
        _feature_row(hd, two_steps, g, d, z, 0, mean, std, dscale, lw, lb, half, half_row, up, rowbuf, ringf, ringb, 0)
        for i in range(H):
            if i + 1 < H:
                _feature_row(hd, two_steps, g, d, z, i + 1, mean, std, dscale, lw, lb, half, half_row, up, rowbuf,
                             ringf, ringb, (i + 1) % 2)
            has_next = i + 1 < H
            _coef_rows(ringf, 0, i % 2, (i + 1) % 2, has_next, k2_learned, lv, lh, acc)
            if gated:
                _coef_rows(ringb, 0, i % 2, (i + 1) % 2, has_next, k2_free, fv, fh, acc)
                if has_next:
                    for j in range(W):
                        cv[0, 0, i, j] = fv[j] + alpha * (lv[j] - fv[j])
                for j in range(W - 1):
                    ch[0, 0, i, j] = fh[j] + alpha * (lh[j] - fh[j])
            else:
                if has_next:
                    for j in range(W):
                        cv[0, 0, i, j] = lv[j]
                for j in range(W - 1):
                    ch[0, 0, i, j] = lh[j]
