"""Diffusion coefficients c(p, n) on the 4-neighbourhood, computed once per image.

Two symmetric arrays are enough: ``cv[b, 0, i, j]`` couples pixels (i, j) and (i+1, j) and
``ch[b, 0, i, j]`` couples (i, j) and (i, j+1). Both lie in (0, 1].

Forms (see ``../shared/dada-spec.md``):

* ``"code"`` (default, the authors' code): features f = [ImageNet-normalised RGB, depth_up in
  metres x 0.8907 (= mm / 1122.7)], x = mean over channels of |f(p) - f(n)|,
  c = 1 / (1 + x^2 / kappa^2). The learned model uses the same c(x) on its feature channels.
* ``"paper"`` (Eq. 2 as printed): g = RGB in [0, 1], c = kappa^2 / (kappa^2 + ||g(p) - g(n)||^2).
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import DadaInputError

# numba is optional: without it the torch expressions below run (same answer). The decorator comes
# from fused_cpu, which chooses a writable cache folder first (read-only install).
from .fused_cpu import HAVE_NUMBA

if HAVE_NUMBA:
    from .fused_cpu import njit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The authors divide Middlebury depth in mm by 1122.7 before it enters the features.
DEPTH_FEATURE_PER_METRE = 1000.0 / 1122.7
DEFAULT_KAPPA = 0.03
FORMS = ("code", "paper")


def guide_to_unit_float(guide: np.ndarray) -> np.ndarray:
    """RGB guide (H, W, 3) uint8/uint16/float -> float32 in [0, 1]; mono (H, W) is repeated."""
    g = np.asarray(guide)
    if g.ndim == 2:
        g = np.repeat(g[:, :, None], 3, axis=2)
    if g.ndim != 3 or g.shape[2] not in (3, 4):
        raise DadaInputError(f"guide must be HxW, HxWx3 or HxWx4, got shape {g.shape}")
    g = g[:, :, :3]
    if g.dtype == np.uint8:
        return g.astype(np.float32) / 255.0
    if g.dtype == np.uint16:
        return g.astype(np.float32) / 65535.0
    g = g.astype(np.float32)
    if not np.isfinite(g).all():
        raise DadaInputError("guide contains NaN or inf")
    if g.min() < 0 or g.max() > 1:
        raise DadaInputError(
            f"float guide must be in [0, 1] (got {g.min():.3g}..{g.max():.3g}); pass uint8 for 0..255"
        )
    return g


def free_features(rgb01: torch.Tensor, depth_up: torch.Tensor) -> torch.Tensor:
    """Learning-free features of the authors' code.

    Args:
        rgb01: (B, 3, H, W) RGB in [0, 1].
        depth_up: (B, 1, H, W) upsampled source depth in metres.
    Returns:
        (B, 4, H, W): ImageNet-normalised RGB and depth x ``DEPTH_FEATURE_PER_METRE``.
    """
    mean = rgb01.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = rgb01.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return torch.cat([(rgb01 - mean) / std, depth_up * DEPTH_FEATURE_PER_METRE], dim=1)


def check_kappa(kappa: float | torch.Tensor) -> None:
    k = float(kappa.detach().min()) if isinstance(kappa, torch.Tensor) else float(kappa)
    if not np.isfinite(k) or k <= 0:
        raise DadaInputError(f"kappa must be a finite number > 0, got {k}")


def coefficients_from_features(
    features: torch.Tensor, kappa: float | torch.Tensor = DEFAULT_KAPPA
) -> tuple[torch.Tensor, torch.Tensor]:
    """c = 1 / (1 + x^2 / kappa^2) with x the channel-mean absolute feature difference.

    Differentiable in ``features`` and ``kappa`` (a tensor for the learned model).

    Args:
        features: (B, C, H, W).
        kappa: edge sensitivity, > 0.
    Returns:
        (cv, ch): (B, 1, H-1, W) vertical and (B, 1, H, W-1) horizontal coefficients.
    """
    check_kappa(kappa)
    if _fused_applies(features, kappa):
        return _coefficients_fused(features, float(kappa.detach() if isinstance(kappa, torch.Tensor) else kappa))
    xv = (features[:, :, 1:, :] - features[:, :, :-1, :]).abs().mean(dim=1, keepdim=True)
    xh = (features[:, :, :, 1:] - features[:, :, :, :-1]).abs().mean(dim=1, keepdim=True)
    k2 = kappa * kappa
    return 1.0 / (1.0 + xv * xv / k2), 1.0 / (1.0 + xh * xh / k2)


def coefficients_paper(rgb01: torch.Tensor, kappa: float = DEFAULT_KAPPA) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (2) as printed: c = kappa^2 / (kappa^2 + ||g(p) - g(n)||_2^2), g = RGB in [0, 1].

    Args:
        rgb01: (B, 3, H, W).
    Returns:
        (cv, ch) as in :func:`coefficients_from_features`.
    """
    check_kappa(kappa)
    dv2 = (rgb01[:, :, 1:, :] - rgb01[:, :, :-1, :]).pow(2).sum(dim=1, keepdim=True)
    dh2 = (rgb01[:, :, :, 1:] - rgb01[:, :, :, :-1]).pow(2).sum(dim=1, keepdim=True)
    k2 = kappa * kappa
    return k2 / (k2 + dv2), k2 / (k2 + dh2)


def _fused_applies(features: torch.Tensor, kappa) -> bool:
    """The one-pass kernel serves features on the CPU without a gradient (float32, one kappa):
    DADA-free's 4 channels bit-identical to the torch expressions (so a shut gate stays exactly
    DADA-free), a learned model's C channels equal to them to float rounding (torch may sum the
    channel mean in another order). Training (a gradient to the features or to a learned kappa)
    and the GPU keep the torch expressions."""
    if isinstance(kappa, torch.Tensor) and (kappa.numel() != 1 or kappa.device.type != "cpu"):
        return False
    wants_grad = torch.is_grad_enabled() and (
        features.requires_grad or (isinstance(kappa, torch.Tensor) and kappa.requires_grad))
    return (HAVE_NUMBA and features.device.type == "cpu" and features.dtype == torch.float32
            and features.ndim == 4 and not wants_grad)


def _coefficients_fused(features: torch.Tensor, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`coefficients_from_features` in one pass over the features (about 3-7x faster than the
    torch expressions at 640x480, which allocate six feature-sized temporaries) and bit-identical to
    them; single-threaded on purpose: it is a few ms, and a parallel region would add a barrier that
    stalls on a shared CPU."""
    f = features.detach().contiguous().numpy()
    B, C, H, W = f.shape
    cv = np.empty((B, 1, H - 1, W), np.float32)
    ch = np.empty((B, 1, H, W - 1), np.float32)
    _coef_kernel(f, np.float32(kappa * kappa), cv, ch)
    return torch.from_numpy(cv), torch.from_numpy(ch)


def free_coefficients_from_inputs(rgb: np.ndarray, depth_up: np.ndarray, kappa: float = DEFAULT_KAPPA
                                  ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """DADA-free's coefficients straight from the guide and Y0, without the feature tensor:
    :func:`free_features` and :func:`coefficients_from_features` in one pass, bit-identical to
    them (the same float32 operations in the same order). The solver's cold preparation on the
    CPU uses it (the two steps cost ~6 ms at 640x480: a normalised copy of the guide, a
    concatenation, then the kernel; this pass ~1-2 ms). None without numba.

    Args:
        rgb: (H, W, 3) float32 guide in [0, 1] (as :func:`guide_to_unit_float` returns it).
        depth_up: (H, W) float32 upsampled depth in metres.
        kappa: edge sensitivity, > 0.
    Returns:
        (cv, ch) as :func:`coefficients_from_features`, batch 1; None when numba is absent.
    """
    if not HAVE_NUMBA:
        return None
    check_kappa(kappa)
    g = np.ascontiguousarray(rgb, dtype=np.float32)
    d = np.ascontiguousarray(depth_up, dtype=np.float32)
    if g.ndim != 3 or g.shape[2] != 3 or d.shape != g.shape[:2]:
        raise DadaInputError(f"expected a guide (H, W, 3) and a depth (H, W), got {g.shape} and {d.shape}")
    H, W = d.shape
    cv = np.empty((1, 1, H - 1, W), np.float32)
    ch = np.empty((1, 1, H, W - 1), np.float32)
    _free_coef_kernel(g, d, np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32),
                      np.float32(DEPTH_FEATURE_PER_METRE), np.float32(float(kappa) * float(kappa)), cv, ch)
    return torch.from_numpy(cv), torch.from_numpy(ch)


if HAVE_NUMBA:

    # error_model numpy: IEEE division (x / 0 = inf, 0 / 0 = NaN) as torch, not a ZeroDivisionError
    # nogil: it runs beside the warm-start alignment (DadaSolver.prepare on a second thread)
    @njit(cache=True, fastmath=False, error_model="numpy", nogil=True, inline="always")
    def _coef_rows(f, b, i, i_next, has_next, k2, cv_row, ch_row, acc):  # pragma: no cover - compiled
        # One image row's coefficients from the features f[b, :, i] (and the next row's,
        # f[b, :, i_next], read only with ``has_next``), indexed in place: a (C, W) row view would
        # not be known contiguous and its loops would not vectorise (3-4x slower). Channel by
        # channel along contiguous rows, the operations and their order the torch expressions'
        # (channel sum in order, / C, x * x / k2): bit-identical, so a shut gate stays exactly
        # DADA-free.
        C, W = f.shape[1], f.shape[3]
        nc = np.float32(C)
        one = np.float32(1.0)
        if has_next:
            for j in range(W):
                acc[j] = np.float32(0.0)
            for c in range(C):
                for j in range(W):
                    acc[j] += abs(f[b, c, i_next, j] - f[b, c, i, j])
            for j in range(W):
                x = acc[j] / nc
                cv_row[j] = one / (one + x * x / k2)
        for j in range(W - 1):
            acc[j] = np.float32(0.0)
        for c in range(C):
            for j in range(W - 1):
                acc[j] += abs(f[b, c, i, j + 1] - f[b, c, i, j])
        for j in range(W - 1):
            x = acc[j] / nc
            ch_row[j] = one / (one + x * x / k2)

    @njit(cache=True, fastmath=False, error_model="numpy", nogil=True)
    def _coef_kernel(f, k2, cv, ch):  # pragma: no cover - compiled
        B, C, H, W = f.shape
        acc = np.empty(W, np.float32)
        spare = np.empty(W, np.float32)  # the cv row of the last image row (it has none)
        for b in range(B):
            for i in range(H):
                cv_row = cv[b, 0, i] if i + 1 < H else spare
                _coef_rows(f, b, i, min(i + 1, H - 1), i + 1 < H, k2, cv_row, ch[b, 0, i], acc)

    @njit(cache=True, fastmath=False, error_model="numpy", nogil=True)
    def _free_row(g, d, i, mean, std, dscale, ring, slot):  # pragma: no cover - compiled
        # Row i of free_features into ring[0, :, slot]: (rgb - mean) / std per colour channel,
        # depth x dscale (float32, the torch expressions' operations).
        W = d.shape[1]
        for c in range(3):
            m = mean[c]
            s = std[c]
            for j in range(W):
                ring[0, c, slot, j] = (g[i, j, c] - m) / s
        for j in range(W):
            ring[0, 3, slot, j] = d[i, j] * dscale

    @njit(cache=True, fastmath=False, error_model="numpy", nogil=True)
    def _free_coef_kernel(g, d, mean, std, dscale, k2, cv, ch):  # pragma: no cover - compiled
        # _coef_kernel on the features of _free_row, held two rows at a time in a (1, 4, 2, W) ring.
        H, W = d.shape
        ring = np.empty((1, 4, 2, W), np.float32)
        acc = np.empty(W, np.float32)
        spare = np.empty(W, np.float32)
        _free_row(g, d, 0, mean, std, dscale, ring, 0)
        for i in range(H):
            if i + 1 < H:
                _free_row(g, d, i + 1, mean, std, dscale, ring, (i + 1) % 2)
            cv_row = cv[0, 0, i] if i + 1 < H else spare
            _coef_rows(ring, 0, i % 2, (i + 1) % 2, i + 1 < H, k2, cv_row, ch[0, 0, i], acc)
