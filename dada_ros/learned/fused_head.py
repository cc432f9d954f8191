"""The lite U-Net's full-resolution output stage in one pass, for CPU inference.

``LiteUNet.forward`` ends with a bilinear x2 upsampling of the head's gates and residuals
(2C channels), a 1x1 convolution of the network input and a few element-wise sums, all at full
resolution: at 640x480 on one thread these passes cost about 19 ms of a 62 ms F, more than the
whole encoder, because each allocates and walks a (B, C, H, W) temporary. :func:`full_res_output`
does the same arithmetic pixel by pixel (upsampling weights 3/4 and 1/4, as
``F.interpolate(scale_factor=2, mode="bilinear", align_corners=False)``), writing the features
once. The answer equals the torch expressions to float rounding (the sums run in another
order); training, the GPU and autograd keep the torch expressions.
"""

from __future__ import annotations

import numpy as np
import torch

from dada_ros.core.fused_cpu import HAVE_NUMBA

if HAVE_NUMBA:
    from dada_ros.core.fused_cpu import njit


def fused_head_applies(head_out: torch.Tensor, x: torch.Tensor, base: torch.Tensor) -> bool:
    """True when :func:`full_res_output` may replace the torch expressions: numba present, CPU
    float32 tensors, no gradient wanted."""
    tensors = (head_out, x, base)
    return (HAVE_NUMBA and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)))


def full_res_output(head_out: torch.Tensor, x: torch.Tensor, base: torch.Tensor, local_weight: torch.Tensor,
                    local_bias: torch.Tensor) -> torch.Tensor:
    """Features (B, C, H, W) of a lite U-Net from its half-resolution head output.

    Args:
        head_out: (B, 2C, h, w) gates g then residuals r at half resolution (h >= H / 2 and
            w >= W / 2: the padded grid, cropped here after the upsampling as in the torch path).
        x: (B, n_in, H, W) the network input; base: (B, 4, H, W) the learning-free features.
        local_weight, local_bias: the full-resolution 1x1 convolution (C, n_in, 1, 1) and (C,).
    Returns:
        (B, C, H, W) float32: local(x) + up(r) + base + base * up(g), channel c on base channel
        c % 4 (as the torch path's (k, 4) view).
    """
    B, C2, h, w = head_out.shape
    _, n_in, H, W = x.shape
    C = C2 // 2
    out = np.empty((B, C, H, W), np.float32)
    _full_res_kernel(head_out.detach().contiguous().numpy(), x.detach().contiguous().numpy(),
                     base.detach().contiguous().numpy(),
                     local_weight.detach().reshape(C, n_in).contiguous().numpy().astype(np.float32),
                     local_bias.detach().contiguous().numpy().astype(np.float32), out)
    return torch.from_numpy(out)


if HAVE_NUMBA:

    @njit(cache=True, fastmath=False, error_model="numpy", nogil=True, inline="always")
    def up2_blend_row(ra, rb, w, row, out):  # pragma: no cover - compiled
        # One output row of a bilinear x2 upsampling (align_corners=False): the source rows ra
        # (3/4) and rb (1/4) blended vertically into row[1:w + 1] (edge-padded), then output
        # column 2k reads source k (3/4) and k - 1 (1/4), 2k + 1 reads k (3/4) and k + 1 (1/4).
        q1 = np.float32(0.75)
        q2 = np.float32(0.25)
        for jj in range(w):
            row[jj + 1] = q1 * ra[jj] + q2 * rb[jj]
        row[0] = row[1]
        row[w + 1] = row[w]
        for jj in range(w):
            out[2 * jj] = q1 * row[jj + 1] + q2 * row[jj]
            out[2 * jj + 1] = q1 * row[jj + 1] + q2 * row[jj + 2]

    # Single-threaded, like the coefficient kernel: a few ms, and a parallel region would add a
    # barrier that stalls on a shared CPU. nogil: it runs beside the warm-start alignment.
    @njit(cache=True, fastmath=False, error_model="numpy", nogil=True)
    def _full_res_kernel(hd, x, base, lw, lb, out):  # pragma: no cover - compiled
        # Row by row; every inner loop runs along a contiguous row (vectorised). Upsampling
        # (align_corners=False, x2): output row / column 2k reads source k (3/4) and k - 1 (1/4),
        # 2k + 1 reads k (3/4) and k + 1 (1/4), clamped at the borders.
        B, C2, h, w = hd.shape
        n_in = x.shape[1]
        H, W = x.shape[2], x.shape[3]
        C = C2 // 2
        nb = base.shape[1]
        row = np.empty(w + 2, np.float32)  # one channel's source row, blended vertically, edge-padded
        up = np.empty((C2, 2 * w), np.float32)
        acc = np.empty(W, np.float32)
        for b in range(B):
            for i in range(H):
                k = i // 2
                i1 = max(k - 1, 0) if i % 2 == 0 else min(k + 1, h - 1)
                for c in range(C2):
                    up2_blend_row(hd[b, c, k], hd[b, c, i1], w, row, up[c])
                for c in range(C):
                    for j in range(W):
                        acc[j] = lb[c]
                    for t in range(n_in):
                        wt = lw[c, t]
                        xr = x[b, t, i]
                        for j in range(W):
                            acc[j] += wt * xr[j]
                    bm = base[b, c % nb, i]
                    ug = up[c]
                    ur = up[C + c]
                    o = out[b, c, i]
                    for j in range(W):
                        o[j] = ((acc[j] + ur[j]) + bm[j]) + bm[j] * ug[j]
