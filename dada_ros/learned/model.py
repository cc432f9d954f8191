"""The learned guide of DADA: feature network F + trainable kappa, its checkpoint format, and the
:class:`~dada_ros.core.solver.GuideModel` the solver, the CLI and the node use (``method: dada``).

Inputs of F (``normalise_inputs``): ImageNet-normalised RGB and the bicubic upsampled source depth
normalised per image, so one model serves any depth range:

* ``"log-mean"`` (default): log(depth) minus its per-image mean -- scale invariant: a 0.5 m step
  at 2 m looks like a 2.5 m step at 10 m;
* ``"mean"`` (the authors' code): depth in metres x ``depth_scale`` minus its per-image mean.

Coefficients: ``c = 1 / (1 + x^2 / kappa^2)`` with x the channel-mean absolute feature difference
(:func:`dada_ros.core.coefficients.coefficients_from_features`), kappa = exp(log_kappa) > 0.

Gate toward DADA-free (``gate: true``): the coefficients become

    c = c_free + alpha(s) * (c_net - c_free),     alpha(s) = clamp(gate interpolated at log2 s, 0, 1)

with c_free DADA-free's coefficients (its features, its kappa) and ``gate`` three parameters at
the ratios x4 / x8 / x16 (linear in log2 s between them, constant outside). A gate of zero is
exactly DADA-free -- where the network does not help on real data the gate stays shut -- and one
is the network alone. The gate is a trainable parameter and is chosen on real validation scenes
(:mod:`dada_ros.learned.gate`). Gated features carry C network channels, DADA-free's 4 and one
constant alpha channel, so the solver's ``features`` / ``coefficients`` protocol is unchanged; at
inference a shut ratio skips F altogether (DADA-free's 4 channels and alpha only: DADA-free's cost).

Checkpoint (``torch.save`` of a plain dict, loaded with ``weights_only=True``)::

    {"format": "dada_ros.guide", "version": 1,
     "config": GuideConfig as dict (architecture, channels, kappa_init, normalisation, depth_scale,
               train_scales, ...),
     "state_dict": F's parameters and buffers plus "log_kappa",
     "meta": free-form training summary (steps, validation loss, data, date)}

:func:`load_checkpoint` validates all of it and raises :class:`DadaInputError` with a reason
(missing file, not a torch file, wrong format/version, unknown architecture, missing or
mis-shaped tensors, non-finite values).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..core import coefficients as coef
from ..core.atomic_file import atomic_path
from ..core.device import resolve_device
from ..core.errors import DadaInputError
from .backbones import ARCHITECTURES, ResNet50UNet, build_network, load_torchvision_resnet50
from .fused_coefficients import learned_coefficients_from_inputs

FORMAT = "dada_ros.guide"
VERSION = 1
NORMALISATIONS = ("log-mean", "mean")
SHIPPED_NAME = "dada_lite_v8.pt"  # v7 (the default before), v6_mixed, v6 (real only), v5 (procedural only) stay in data/
SHIPPED_PATH = Path(__file__).resolve().parent.parent / "data" / SHIPPED_NAME
# Ratios at which a gated model's gate parameters sit (linear in log2 ratio between them).
GATE_SCALES = (4, 8, 16)
# Depths are clamped to this before the log (metres); the solver never sees smaller values.
MIN_DEPTH = 1e-3


@dataclass
class GuideConfig:
    """Everything needed to rebuild F; stored in every checkpoint."""

    architecture: str = "lite-unet"
    channels: int = 8
    kappa_init: float = coef.DEFAULT_KAPPA
    normalisation: str = "log-mean"
    depth_scale: float = coef.DEPTH_FEATURE_PER_METRE  # used by "mean" normalisation
    train_scales: list[int] = field(default_factory=lambda: [4, 8, 16])
    lam: float = 0.24
    refine_width: int = 0  # lite-unet: width of an optional full-resolution 3x3 refinement (0: none)
    widths: list[int] = field(default_factory=list)  # lite U-Nets: channels per level (empty: default)
    scale_film: bool = False  # lite U-Nets: decoder conditioned on log2(resolution ratio) (FiLM)
    gate: bool = False  # blend the coefficients with DADA-free's by a per-ratio gate (see module docstring)

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise DadaInputError(f"unknown architecture {self.architecture!r}; expected one of {ARCHITECTURES}")
        if not isinstance(self.channels, int) or self.channels < 1:
            raise DadaInputError(f"channels must be a positive integer, got {self.channels!r}")
        if self.architecture.startswith("lite-unet") and self.channels % 4:
            raise DadaInputError(f"lite-unet needs channels to be a multiple of 4, got {self.channels}")
        if not isinstance(self.widths, list) or not all(isinstance(w, int) and w > 0 for w in self.widths):
            raise DadaInputError(f"widths must be a list of positive integers, got {self.widths!r}")
        if self.widths and (not self.architecture.startswith("lite-unet") or len(self.widths) < 2):
            raise DadaInputError(f"widths (>= 2 levels) apply to the lite U-Nets, not {self.architecture} {self.widths}")
        if not isinstance(self.scale_film, bool):
            raise DadaInputError(f"scale_film must be true or false, got {self.scale_film!r}")
        if self.scale_film and not self.architecture.startswith("lite-unet"):
            raise DadaInputError(f"scale_film applies to the lite U-Nets, not {self.architecture}")
        if not isinstance(self.refine_width, int) or self.refine_width < 0:
            raise DadaInputError(f"refine_width must be an integer >= 0, got {self.refine_width!r}")
        if not isinstance(self.gate, bool):
            raise DadaInputError(f"gate must be true or false, got {self.gate!r}")
        if self.gate and not self.architecture.startswith("lite-unet"):
            raise DadaInputError(f"gate applies to the lite U-Nets, not {self.architecture}")
        if self.normalisation not in NORMALISATIONS:
            raise DadaInputError(f"unknown normalisation {self.normalisation!r}; expected one of {NORMALISATIONS}")
        coef.check_kappa(float(self.kappa_init))
        if not (0 < self.lam < 0.25):
            raise DadaInputError(f"lambda must be in (0, 0.25), got {self.lam}")

    @classmethod
    def from_dict(cls, d: dict) -> "GuideConfig":
        if not isinstance(d, dict):
            raise DadaInputError(f"checkpoint config must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DadaInputError(f"checkpoint config has unknown fields {unknown} (written by a newer version?)")
        cfg = cls(**d)
        cfg.validate()
        return cfg


class GuideNet(nn.Module):
    """F plus log kappa; ``forward(rgb01, depth_up) -> features``, ``coefficients(features)``."""

    def __init__(self, config: GuideConfig | None = None):
        super().__init__()
        self.config = config or GuideConfig()
        self.config.validate()
        self.net = build_network(self.config.architecture, self.config.channels, self.config.refine_width,
                                 self.config.widths, self.config.scale_film)
        self.log_kappa = nn.Parameter(torch.tensor(math.log(self.config.kappa_init)))
        if self.config.gate:
            # alpha at log2 ratio codes -1, 0, 1 (x4, x8, x16); zero = exactly DADA-free.
            self.gate = nn.Parameter(torch.zeros(len(GATE_SCALES)))
        self.register_buffer("rgb_mean", torch.tensor(coef.IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(coef.IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def kappa(self) -> torch.Tensor:
        return self.log_kappa.exp()

    def network_input(self, rgb01: torch.Tensor, depth_up: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] + (B, 1, H, W) metres -> (B, 4, H, W) normalised input."""
        rgb = (rgb01 - self.rgb_mean) / self.rgb_std
        if self.config.normalisation == "log-mean":
            z = depth_up.clamp_min(MIN_DEPTH).log()
        else:
            z = depth_up * self.config.depth_scale
        z = z - z.mean(dim=(1, 2, 3), keepdim=True)
        return torch.cat([rgb, z], dim=1)

    def forward(self, rgb01: torch.Tensor, depth_up: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """Features (B, C, H, W). ``scale``: the resolution ratio guide / source (e.g. 8.0), needed
        by a model conditioned on it (``config.scale_film``), ignored by the others."""
        if rgb01.ndim != 4 or rgb01.shape[1] != 3 or depth_up.shape != (rgb01.shape[0], 1, *rgb01.shape[2:]):
            raise DadaInputError(
                f"expected rgb (B, 3, H, W) and depth (B, 1, H, W), got {tuple(rgb01.shape)} and {tuple(depth_up.shape)}"
            )
        x = self.network_input(rgb01, depth_up)
        if not self.config.architecture.startswith("lite-unet"):
            return self.net(x, None)
        base = coef.free_features(rgb01, depth_up)
        if self.config.gate and not (self.training or torch.is_grad_enabled()):
            alpha = self.gate_value(scale)
            if float(alpha) == 0.0:  # shut at this ratio: DADA-free's features alone, F is not run
                return torch.cat([base, alpha.to(base.dtype).expand(base.shape[0], 1, *base.shape[2:])], dim=1)
        if not self.config.scale_film:
            f = self.net(x, base)
        else:
            f = self.net(x, base, scale_code(scale, rgb01.shape[0], rgb01.device))
        if not self.config.gate:
            return f
        alpha = self.gate_value(scale).to(f.dtype).expand(f.shape[0], 1, *f.shape[2:])
        return torch.cat([f, base, alpha], dim=1)

    def gate_value(self, scale: float | None) -> torch.Tensor:
        """alpha(scale) in [0, 1] (a 0-d tensor, differentiable in ``gate``)."""
        if scale is None:
            raise DadaInputError("a gated model needs the resolution ratio: pass scale (guide / source size)")
        code = min(max(math.log2(float(scale)) - 3.0, -1.0), 1.0)
        i = min(int(math.floor(code + 1.0)), len(GATE_SCALES) - 2)
        t = code + 1.0 - i
        return ((1 - t) * self.gate[i] + t * self.gate[i + 1]).clamp(0.0, 1.0)

    def coefficients(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.config.gate:
            return coef.coefficients_from_features(features, self.kappa)
        C = self.config.channels
        fv, fh = coef.coefficients_from_features(features[:, -5:-1], coef.DEFAULT_KAPPA)
        if features.shape[1] == 5:  # a shut gate's features (see forward): exactly DADA-free
            return fv, fh
        cv, ch = coef.coefficients_from_features(features[:, :C], self.kappa)
        alpha = features[:, C + 4:C + 5, :1, :1]
        return fv + alpha * (cv - fv), fh + alpha * (ch - fh)

    def load_pretrained_encoder(self, path: str) -> list[str]:
        """Load ImageNet ResNet-50 weights (a local torchvision state_dict file) into the encoder."""
        if not isinstance(self.net, ResNet50UNet):
            raise DadaInputError(f"pretrained encoder weights apply to resnet50-unet, not {self.config.architecture}")
        sd = _torch_load(path, "pretrained encoder")
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise DadaInputError(f"{path}: not a state_dict of tensors")
        try:
            return load_torchvision_resnet50(self.net.encoder, sd)
        except ValueError as exc:
            raise DadaInputError(f"{path}: {exc}") from exc


def scale_code(scale: float | None, batch: int, device: torch.device) -> torch.Tensor:
    """(batch, 1) log2(ratio) - 3: 0 at x8, -1 at x4, +1 at x16 -- what a scale-conditioned F reads."""
    if scale is None:
        raise DadaInputError("this model is conditioned on the resolution ratio: pass scale (guide / source size)")
    scale = float(scale)
    if not math.isfinite(scale) or scale < 1:
        raise DadaInputError(f"resolution ratio must be a finite number >= 1, got {scale}")
    return torch.full((batch, 1), math.log2(scale) - 3.0, device=device)


class LearnedGuide:
    """:class:`~dada_ros.core.solver.GuideModel` around a trained :class:`GuideNet` (inference)."""

    def __init__(self, net: GuideNet, device: torch.device, meta: dict | None = None, path: str | None = None):
        self.net = net.to(device).eval()
        self.device = device
        self.meta = meta or {}
        self.path = path

    @property
    def config(self) -> GuideConfig:
        return self.net.config

    @property
    def kappa(self) -> float:
        return float(self.net.kappa.detach())

    @torch.no_grad()
    def features(self, rgb01: torch.Tensor, depth_up: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        return self.net(rgb01.to(self.device), depth_up.to(self.device), scale)

    @torch.no_grad()
    def coefficients(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.coefficients(features)

    def coefficients_from_inputs(self, rgb: np.ndarray, depth_up: np.ndarray, device: torch.device,
                                 scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``coefficients(features(rgb, depth_up, scale))`` without the full-resolution feature
        tensors (:func:`~.fused_coefficients.learned_coefficients_from_inputs`: equal to float
        rounding), or None where it does not apply (a GPU, no numba, another architecture)."""
        if device.type != "cpu" or self.device.type != "cpu":
            return None
        return learned_coefficients_from_inputs(self.net, rgb, depth_up, scale)


# ----------------------------------------------------------------------------- checkpoints
def _plain(meta: dict | None) -> dict:
    """JSON-able copy of ``meta`` (plain types only, so ``weights_only`` loading accepts it)."""
    return json.loads(json.dumps(dict(meta or {}), default=lambda v: float(v) if isinstance(v, (int, float)) else str(v)))


def checkpoint_dict(net: GuideNet, meta: dict | None = None) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": asdict(net.config),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "meta": _plain(meta),
    }


def save_checkpoint(path: str | os.PathLike, net: GuideNet, meta: dict | None = None, extra: dict | None = None) -> None:
    """Write a checkpoint atomically (:func:`~dada_ros.core.atomic_file.atomic_path`); ``extra`` adds keys (e.g. resume state)."""
    data = checkpoint_dict(net, meta)
    if extra:
        data.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def _torch_load(path: str | os.PathLike, what: str):
    p = Path(path)
    if not p.exists():
        raise DadaInputError(f"{what} file {str(p)!r} does not exist")
    if not p.is_file():
        raise DadaInputError(f"{what} path {str(p)!r} is not a file")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many exception types on garbage input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DadaInputError(f"{what} file {str(p)!r} is not a readable torch checkpoint ({first[:160]})") from exc


def load_checkpoint(path: str | os.PathLike) -> tuple[GuideNet, dict, dict]:
    """Read and validate a checkpoint -> (GuideNet on CPU in eval mode, meta, the raw dict)."""
    data = _torch_load(path, "checkpoint")
    where = f"checkpoint {str(path)!r}"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise DadaInputError(f"{where} is not a dada_ros guide checkpoint (format {got!r}, expected {FORMAT!r})")
    version = data.get("version")
    if not isinstance(version, int) or version < 1 or version > VERSION:
        raise DadaInputError(f"{where} has version {version!r}; this dada_ros reads versions 1..{VERSION}")
    for key in ("config", "state_dict"):
        if key not in data:
            raise DadaInputError(f"{where} lacks the {key!r} entry")
    cfg = GuideConfig.from_dict(data["config"])
    net = GuideNet(cfg)
    sd = data["state_dict"]
    if not isinstance(sd, dict):
        raise DadaInputError(f"{where}: state_dict must be a dict")
    own = net.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise DadaInputError(
            f"{where} does not match architecture {cfg.architecture!r} with {cfg.channels} channels: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor) or v.shape != own[k].shape:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise DadaInputError(f"{where}: tensor {k!r} has shape {shape}, expected {tuple(own[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise DadaInputError(f"{where}: tensor {k!r} contains NaN or inf (a diverged training run?)")
    net.load_state_dict(sd)
    coef.check_kappa(float(net.kappa.detach()))
    meta = data.get("meta") or {}
    return net.eval(), meta if isinstance(meta, dict) else {}, data


def average_checkpoints(paths: Sequence[str | os.PathLike],
                        weights: Sequence[float] | None = None) -> tuple[GuideNet, dict]:
    """Weight-average guide checkpoints of one configuration (a "model soup": runs fine-tuned from
    one parent often average into a model about as good as the better one or better, cheaper than
    training longer; not always, so compare the result on validation data).

    Every floating-point tensor, batch-norm statistics and log kappa included, is the weighted mean;
    integer counters are taken from the first. ``weights`` (default equal) must be positive; they
    are normalised to sum 1. Returns (GuideNet in eval mode, meta naming the sources)."""
    if len(paths) < 2:
        raise DadaInputError(f"averaging needs at least two checkpoints, got {len(paths)}")
    w = [1.0] * len(paths) if weights is None else [float(x) for x in weights]
    if len(w) != len(paths):
        raise DadaInputError(f"{len(w)} weights for {len(paths)} checkpoints")
    if not all(math.isfinite(x) and x > 0 for x in w):
        raise DadaInputError(f"averaging weights must be finite and > 0, got {w}")
    w = [x / sum(w) for x in w]
    nets = [load_checkpoint(p)[0] for p in paths]
    first = asdict(nets[0].config)
    for p, n in zip(paths[1:], nets[1:]):
        if asdict(n.config) != first:
            diff = sorted(k for k, v in asdict(n.config).items() if first.get(k) != v)
            raise DadaInputError(f"{str(p)!r} has another configuration than {str(paths[0])!r} (differs in {diff}); "
                                 "only checkpoints of one configuration can be averaged")
    states = [n.state_dict() for n in nets]
    avg = {k: (sum(wi * sd[k] for wi, sd in zip(w, states)) if v.is_floating_point() else v.clone())
           for k, v in states[0].items()}
    net = nets[0]
    net.load_state_dict(avg)
    coef.check_kappa(float(net.kappa.detach()))
    meta = {"averaged_from": [str(p) for p in paths], "average_weights": w}
    return net.eval(), meta


def load_guide_model(weights: str | os.PathLike | None = None, device: str = "auto") -> LearnedGuide:
    """The learned guide for the solver: ``weights=None`` loads the checkpoint shipped in the package."""
    path = Path(weights) if weights else SHIPPED_PATH
    if weights is None and not path.exists():
        raise DadaInputError(f"the shipped model {str(path)!r} is missing from this installation; pass --weights")
    net, meta, _ = load_checkpoint(path)
    return LearnedGuide(net, resolve_device(device), meta, str(path))
