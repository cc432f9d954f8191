"""End-to-end training of the learned guide (the paper's recipe, scaled to the hardware at hand).

Per step: one batch of random crops at one scale (sampled per batch: scale-agnostic model),
features and coefficients once, a random number n_pre_min*N_pre(s)..N_pre(s) of no-grad steps,
N_grad steps with gradient, loss = ``loss_weight`` x L1 (the paper) or squared error over valid
ground truth; Adam + StepLR + gradient-norm clipping (authors: lr 1e-4, weight decay 1e-5,
gamma 0.9, clip 0.01).

Defaults = the first recipe (the former ``dada_lite_v1.pt``): crops 96 x 96, batch 6, x4/x8/x16,
N_pre 2000 (linear in the scale: 1000/2000/4000), N_grad 32, 20 % ToF-like sources, lr 1e-3
(10x the authors': in two 80-step pilots from the same start, the validation loss fell 12.6 %
below DADA-free with 1e-3 and 1.5 % with 1e-4). What later runs measured (README, "Learned model", has the shipped model's exact commands):

* the error of a learned model can GROW with the number of steps on some scenes (weakened edges
  leak slowly), and inference runs up to 8000 steps: train at that horizon (``n_pre`` 8000,
  ``n_pre_scaling`` none, ``n_pre_min`` 0.25);
* the pooled MSE is dominated by rare configurations (an object with the wall's texture, a thin
  object in front of a far wall): ``loss`` l2 and hard-example replay (``hard_prob``) weigh them;
* the crop validation tracked the benchmark poorly: ``val_mode`` scenes validates as it measures.

N_pre(s) = ``n_pre`` x s / 8 with ``n_pre_scaling="linear"``: the number of steps a cell of the
source needs to equilibrate grows with its size, so larger scales get a longer random horizon.

Outputs in ``out_dir``: ``last.pt`` (checkpoint + optimizer/scheduler/RNG state, written every
``ckpt_every`` steps: ``resume=True`` continues from it), ``best.pt`` (lowest validation loss; the
inference checkpoint), ``log.csv`` (one row per step, validation columns filled every
``val_every`` steps), ``curve.png``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.device import resolve_device, set_cpu_threads
from ..core.errors import DadaInputError
from ..core.schedule import Schedule
from ..core.solver import FreeGuide
from .datasets.base import Batch, CropSampler, collate, make_example, sampling_problem
from .distributed import SINGLE, World
from .model import GuideConfig, GuideNet, load_checkpoint, save_checkpoint
from .unroll import masked_mse_cm2, unrolled_solve

LOSSES = ("l1", "l2", "log")
VAL_MODES = ("crops", "scenes", "ratios")
LOG_FIELDS = ["step", "seconds", "lr", "scale", "n_pre", "n_grad", "loss", "kappa", "val_loss", "val_mse_cm2"]
# Steps in a row with a non-finite gradient after which training stops (a skipped step is a rare
# crop whose solve ran away; a run of them is a model gone bad).
MAX_SKIPPED_IN_ROW = 20


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (all stored in the checkpoints' meta)."""

    dataset: str = "generated"
    data_dir: str | None = None
    architecture: str = "lite-unet"
    channels: int = 8
    normalisation: str = "log-mean"
    pretrained: str | None = None  # local torchvision ResNet-50 state_dict (resnet50-unet)
    refine_width: int = 0  # lite-unet optional full-resolution refinement width (0: none)
    widths: list[int] = field(default_factory=list)  # lite U-Nets: channels per level (empty: default)
    scale_film: bool = False  # lite U-Nets: condition the decoder on the resolution ratio
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning; new layers keep their init)
    gate: bool = False  # lite U-Nets: blend the coefficients with DADA-free's by a per-ratio gate (starts shut)
    # Cross-scale self-supervision (datasets/selfsup.py): train on (RGB resized to the depth's own
    # resolution, depth block-averaged by r) -> the depth itself; no ground truth needed.
    self_supervised: bool = False
    sensor_ratio: int = 1  # self-supervised on a dataset: emulate a sensor at 1/k of the RGB resolution
    bag: str | None = None  # rosbag2 with the node's topics: self-supervised adaptation to that camera
    bag_part: list[float] = field(default_factory=lambda: [0.0, 0.5])  # fractions of the bag's frames used
    bag_val_frames: int = 4  # the last frames of bag_part validate (and are not trained on)
    # ``dataset="realdata"``: train / validate on these files (names as in ../shared/realdata, e.g.
    # ``baby1_view1``) instead of the fixed split: what a cross-validation fold trains on.
    real_scenes: list[str] = field(default_factory=list)
    real_val_scenes: list[str] = field(default_factory=list)
    # A real dataset's training split beside this many procedural scenes (half the crops each), so
    # fine-tuning on a few real scenes does not unlearn the procedural ones; validation unchanged.
    mix_generated: int = 0
    scales: list[int] = field(default_factory=lambda: [4, 8, 16])
    scale_weights: list[float] = field(default_factory=list)  # relative frequency per scale (empty: uniform)
    crop: int = 96
    batch: int = 6
    steps: int = 2000
    n_pre: int = 2000
    n_pre_scaling: str = "linear"  # "linear": N_pre(s) = n_pre * s / 8; "none": n_pre at every scale
    # No-grad steps are drawn uniformly from [n_pre_min * N_pre(s), N_pre(s)]. The paper draws from
    # 0: early states then dominate the loss, and their gradient mostly asks for faster diffusion
    # (weaker edges), not for the equilibrium's quality, which is what inference returns.
    n_pre_min: float = 0.0
    n_grad: int = 32
    # "split": n_pre no-grad plain steps then n_grad steps with gradient (the paper's pass);
    # "full": the gradient flows through the whole default solve (Schedule.for_ratio: the
    # Chebyshev semi-iteration the solver runs at inference), n_pre / n_grad unused.
    solve: str = "split"
    segment: int = 0  # activation checkpointing every k unrolled steps (0: off)
    lam: float = 0.24
    lr: float = 1e-3  # authors: 1e-4; 1e-3 measurably better for lite-unet (see module docstring)
    weight_decay: float = 1e-5
    lr_step: int = 200  # StepLR step size in optimiser steps
    lr_gamma: float = 0.9
    clip: float = 0.01
    loss_weight: float = 10.0
    # "l1": the paper's L1 over valid ground truth (metres). "l2": mean squared error (metres^2):
    # the benchmark's metric is MSE, which a few large errors at depth edges dominate; L1 weights
    # those no more than small ones. "log": squared error of log depth (relative error): the same
    # weight to near and far pixels, so neither a depth metric (far errors dominate) nor a disparity
    # metric (near errors dominate) decides alone; an undershoot of a near pixel (z 1.5 -> 0.03)
    # costs what it costs in disparity.
    loss: str = "l1"
    val_every: int = 100
    # "scenes": whole validation scenes (tiles of ``val_tile``) through the solver's default policy,
    # val_loss = mean over scales of MSE(model) / MSE(DADA-free) -- the benchmark's measure, so
    # best.pt is chosen by what will be reported. "crops": centre crops at a fixed horizon
    # (N_pre(s) + N_grad) and the training loss (cheaper; measured to track the benchmark poorly:
    # flat while the scene ratio fell from 1.0 to 0.85). "ratios": whole scenes like "scenes", but
    # val_loss = geo-mean over (scene, scale) of sqrt(MSE ratio on depth x MSE ratio on inverse
    # depth) to DADA-free: every scene weighs the same (as the cross-validation tables count) and
    # both the far range (depth) and the near range (inverse depth ~ disparity) are scored.
    val_mode: str = "crops"
    val_tile: int = 256
    ckpt_every: int = 25
    val_scenes: int = 8
    val_crop: int = 128
    train_scenes: int = 300
    render_sizes: list[list[int]] = field(default_factory=lambda: [[256, 256], [256, 256], [384, 512]])
    cache_dir: str | None = None
    tof_prob: float = 0.2  # fraction of training sources made ToF-like (noise, dropouts)
    # Hard-example replay (see CropSampler): this fraction of crops is re-cut from the pool of the
    # highest-loss crops seen so far at the batch's scale.
    hard_prob: float = 0.0
    hard_pool: int = 256
    # Misregistration augmentation (CropSampler): this fraction of crops has its depth cut up to
    # misregister_px pixels away from its RGB (0: off).
    misregister_px: int = 0
    misregister_prob: float = 0.5
    device: str = "auto"
    threads: int = 1
    seed: int = 0
    time_limit_min: float | None = None
    out_dir: str = "train_out"

    def validate(self) -> None:
        if self.dataset not in ("generated", "middlebury", "nyuv2", "diml", "realdata"):
            raise DadaInputError(f"unknown dataset {self.dataset!r}")
        if self.bag and not self.self_supervised:
            raise DadaInputError("--bag trains on the sensor's own depth: add --self-supervised")
        if self.bag_val_frames < 1 or int(self.sensor_ratio) != self.sensor_ratio or self.sensor_ratio < 1:
            raise DadaInputError("bag_val_frames and sensor_ratio must be integers >= 1")
        if (self.real_scenes or self.real_val_scenes) and self.dataset != "realdata":
            raise DadaInputError("--real-scenes / --real-val-scenes need --dataset realdata")
        if self.dataset not in ("generated", "realdata") and not self.data_dir and not self.bag:
            raise DadaInputError(f"dataset {self.dataset!r} needs --data-dir")
        for s in self.scales:
            if s < 2 or self.crop % s or self.val_crop % s:
                raise DadaInputError(f"scale {s} must be >= 2 and divide crop {self.crop} and val crop {self.val_crop}")
        if self.n_grad < 1:
            raise DadaInputError("n_grad must be >= 1 (the gradient flows only through these steps)")
        if self.n_pre < 0 or self.batch < 1 or self.steps < 1:
            raise DadaInputError("n_pre must be >= 0, batch and steps >= 1")
        if self.solve not in ("split", "full"):
            raise DadaInputError(f"solve must be split or full, got {self.solve!r}")
        if self.n_pre_scaling not in ("linear", "none"):
            raise DadaInputError(f"n_pre_scaling must be linear or none, got {self.n_pre_scaling!r}")
        if self.loss not in LOSSES:
            raise DadaInputError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0 <= self.n_pre_min <= 1:
            raise DadaInputError(f"n_pre_min must be a fraction in [0, 1], got {self.n_pre_min}")
        problem = sampling_problem(self.scales, self.scale_weights or None, self.hard_prob, self.hard_pool,
                                   self.misregister_px, self.misregister_prob)
        if problem:
            raise DadaInputError(problem)
        if self.val_mode not in VAL_MODES:
            raise DadaInputError(f"val_mode must be one of {VAL_MODES}, got {self.val_mode!r}")
        if self.val_mode != "crops" and any(self.val_tile % s for s in self.scales):
            raise DadaInputError(f"val tile {self.val_tile} must be a multiple of every scale {self.scales}")
        if not 0 <= self.tof_prob <= 1:
            raise DadaInputError(f"tof_prob must be in [0, 1], got {self.tof_prob}")
        GuideConfig(architecture=self.architecture, channels=self.channels, normalisation=self.normalisation,
                    refine_width=self.refine_width, widths=list(self.widths), scale_film=self.scale_film,
                    gate=self.gate).validate()
        stride = 64 if self.architecture == "lite-unet-q" else 32 if self.architecture.startswith("lite-unet") else 16
        deepest = math.ceil(self.crop / stride)
        if self.batch * deepest**2 < 2:
            raise DadaInputError(
                f"batch {self.batch} of {self.crop}px crops leaves one value per channel at the deepest level "
                "(batch norm cannot train on that): use batch >= 2 or a larger crop")

    def n_pre_max(self, scale: int) -> int:
        return int(round(self.n_pre * scale / 8)) if self.n_pre_scaling == "linear" else self.n_pre

    def schedule(self, scale: float) -> Schedule | None:
        """The schedule the unrolled pass differentiates through (None: the split pass)."""
        return Schedule.for_ratio(scale) if self.solve == "full" else None


def open_scenes(cfg: TrainConfig, split: str):
    """The train or val scene set of ``cfg.dataset``."""
    from . import datasets

    if cfg.bag:
        return _bag_scenes(cfg, split)
    # An emulated sensor (sensor_ratio > 1) on a dataset with ground truth validates on the
    # ground truth, as the benchmark measures; the sensor's own depth (ratio 1) is all there is.
    if cfg.self_supervised and (split == "train" or cfg.sensor_ratio == 1):
        from .datasets.selfsup import SelfSupervisedScenes

        base = open_scenes(TrainConfig(**(asdict(cfg) | {"self_supervised": False})), split)
        return SelfSupervisedScenes(base, cfg.sensor_ratio, multiple=max(cfg.scales))
    if cfg.dataset == "generated":
        from .datasets.procedural import TRAIN_SEED0, VAL_SEED0, ProceduralScenes

        if split == "train":
            seeds = range(TRAIN_SEED0, TRAIN_SEED0 + cfg.train_scenes)
            sizes = [tuple(s) for s in cfg.render_sizes]
        else:
            seeds = range(VAL_SEED0, VAL_SEED0 + cfg.val_scenes)
            side = cfg.val_tile if cfg.val_mode == "scenes" else cfg.val_crop * 2
            sizes = [(side, side)]
        return ProceduralScenes(list(seeds), sizes, cfg.cache_dir, progress=True)
    names = cfg.real_scenes if split == "train" else cfg.real_val_scenes
    kwargs = {"scenes": names} if cfg.dataset == "realdata" and names else {}
    scenes = datasets.open_dataset(cfg.dataset, cfg.data_dir, split, **kwargs)
    if split == "train" and cfg.mix_generated:
        from .datasets.base import MixedScenes
        from .datasets.procedural import TRAIN_SEED0, ProceduralScenes

        gen = ProceduralScenes(range(TRAIN_SEED0, TRAIN_SEED0 + cfg.mix_generated),
                               [tuple(s) for s in cfg.render_sizes], cfg.cache_dir, progress=True)
        return MixedScenes(scenes, gen)
    return scenes


_BAG_FRAMES: dict[str, list] = {}


def _bag_scenes(cfg: TrainConfig, split: str):
    """Self-supervised scenes of ``cfg.bag``'s frames ``bag_part``: the last ``bag_val_frames``
    validate, the others train (the bag is read once per process)."""
    from .datasets.selfsup import BagScenes, bag_frames, split_range

    frames = _BAG_FRAMES.setdefault(cfg.bag, bag_frames(cfg.bag))
    part = split_range(len(frames), cfg.bag_part)
    if len(part) <= cfg.bag_val_frames:
        raise DadaInputError(f"bag {cfg.bag}: {len(part)} frames in part {cfg.bag_part}, need more than "
                             f"bag_val_frames={cfg.bag_val_frames}")
    cut = (part.stop - cfg.bag_val_frames) / len(frames)
    a, b = (part.start / len(frames), cut) if split == "train" else (cut, part.stop / len(frames))
    return BagScenes(cfg.bag, (a, b), multiple=max(cfg.scales), frames=frames)


def validation_batches(scenes, cfg: TrainConfig) -> list[Batch]:
    """Fixed validation examples: the centre crop of each val scene, one batch per scale."""
    c = cfg.val_crop
    crops = []
    for i in range(min(len(scenes), cfg.val_scenes) if cfg.dataset == "generated" and not cfg.bag else len(scenes)):
        sc = scenes[i]
        H, W = sc.depth.shape
        if H < c or W < c:
            continue
        i0, j0 = (H - c) // 2, (W - c) // 2
        crops.append((sc.rgb[i0:i0 + c, j0:j0 + c], sc.depth[i0:i0 + c, j0:j0 + c]))
    if not crops:
        raise DadaInputError(f"no validation scene is at least {c}x{c}")
    out = []
    for s in cfg.scales:
        exs = [make_example(rgb, gt, s) for rgb, gt in crops]
        exs = [e for e in exs if (np.isfinite(e.source) & (e.source > 0)).any()]
        out.append(collate(exs))
    return out


def init_from_checkpoint(net: GuideNet, path: str) -> list[str]:
    """Copy the weights of a checkpoint into ``net`` (same architecture and channels, or a
    ``lite-unet`` checkpoint starting a ``lite-unet-q``: the same layers, run at a quarter of the
    resolution instead of a half); parameters the checkpoint lacks (layers added since) keep their
    initialisation. Returns those keys."""
    src, _, _ = load_checkpoint(path)
    pair = (src.config.architecture, net.config.architecture)
    if (pair[0] != pair[1] and pair != ("lite-unet", "lite-unet-q")) or src.config.channels != net.config.channels:
        raise DadaInputError(f"{path}: {src.config.architecture} with {src.config.channels} channels cannot "
                             f"initialise {net.config.architecture} with {net.config.channels} (dada-train: "
                             f"--arch {src.config.architecture} --channels {src.config.channels} fine-tunes it)")
    own = net.state_dict()
    sd = src.state_dict()
    for k, v in sd.items():
        if k not in own or own[k].shape != v.shape:
            raise DadaInputError(f"{path}: tensor {k!r} does not fit the model being trained")
    net.load_state_dict(sd, strict=False)
    return sorted(k for k in own if k not in sd)


class FreeNet(torch.nn.Module):
    """DADA-free as a 'network' for :func:`unrolled_solve` (validation reference)."""

    def __init__(self):
        super().__init__()
        self.guide = FreeGuide()

    def forward(self, rgb, y0, scale=None):
        return self.guide.features(rgb, y0, scale)

    def coefficients(self, f):
        return self.guide.coefficients(f)


def _masked_error(pred: torch.Tensor, batch: Batch, cfg: TrainConfig) -> torch.Tensor:
    """``loss_weight`` x per-pixel |error| (l1), error^2 (l2) or (log pred - log gt)^2 (log), zero
    where the ground truth is invalid."""
    if cfg.loss == "log":
        # Invalid truth pixels hold 0 or NaN: give them 1 so the log is finite, the mask zeroes them.
        gt = torch.where(batch.gt_valid > 0, batch.gt, torch.ones_like(batch.gt))
        err = (torch.log(pred.clamp_min(1e-4)) - torch.log(gt)) ** 2
        return cfg.loss_weight * err * batch.gt_valid
    err = (pred - batch.gt) ** 2 if cfg.loss == "l2" else (pred - batch.gt).abs()
    return cfg.loss_weight * err * batch.gt_valid


def per_example_loss(pred: torch.Tensor, batch: Batch, cfg: TrainConfig) -> torch.Tensor:
    """(B,) the training loss of each example alone (no gradient): what the hard pool ranks by."""
    with torch.no_grad():
        n = batch.gt_valid.flatten(1).sum(1).clamp_min(1)
        return _masked_error(pred, batch, cfg).flatten(1).sum(1) / n


def training_loss(pred: torch.Tensor, batch: Batch, cfg: TrainConfig) -> torch.Tensor:
    """``loss_weight`` x (L1 or squared error) over the batch's valid ground-truth pixels."""
    return _masked_error(pred, batch, cfg).sum() / batch.gt_valid.sum().clamp_min(1)


@torch.no_grad()
def evaluate_batches(net, batches: list[Batch], cfg: TrainConfig, device: torch.device) -> tuple[float, float]:
    """(loss, MSE cm^2) on the validation batches at the longest training horizon per scale."""
    was_training = net.training
    net.eval()
    losses, mses = [], []
    for b in batches:
        b = b.to(device)
        pred = unrolled_solve(net, b, cfg.n_pre_max(b.scale), cfg.n_grad, cfg.lam, schedule=cfg.schedule(b.scale))
        losses.append(float(training_loss(pred, b, cfg)))
        mses.append(float(masked_mse_cm2(pred, b.gt, b.gt_valid)))
    net.train(was_training)
    return float(np.mean(losses)), float(np.mean(mses))


@torch.no_grad()
def scene_errors(net, scenes, cfg: TrainConfig, device: torch.device) -> dict[str, list[float]]:
    """Every ``val_tile`` tile of the validation scenes at every training scale through the
    solver's default policy: ``{"<tile>|<scale>": [squared depth error (cm^2) summed, squared
    inverse-depth error (1/m^2) summed, pixels]}``. ``net=None`` solves with DADA-free."""
    from ..core.methods import run_method
    from ..core.resample import valid_source_mask
    from ..core.solver import DadaSolver, SolverConfig
    from .datasets.base import tiles
    from .model import LearnedGuide

    was_training = net.training if net is not None else False
    solver = DadaSolver(SolverConfig(device=str(device)), LearnedGuide(net, device) if net is not None else FreeGuide())
    out: dict[str, list[float]] = {}
    count = min(len(scenes), cfg.val_scenes) if cfg.dataset == "generated" and not cfg.bag else len(scenes)
    for i in range(count):
        for name, rgb, gt in tiles(scenes[i], cfg.val_tile or None):  # 0: whole frames
            for s in cfg.scales:
                ex = make_example(rgb, gt, s)
                if not (np.isfinite(ex.source) & (ex.source > 0)).any():
                    continue
                pred, _ = run_method("dada", rgb, np.nan_to_num(ex.source, nan=0.0), solver=solver)
                # The pixels depth_errors scores (valid truth, finite prediction): a prediction at or
                # below 0 counts, its inverse taken at 1e-4 m as the log loss clamps it.
                m = valid_source_mask(gt) & np.isfinite(pred)
                p, g = pred[m].astype(np.float64), gt[m].astype(np.float64)
                out[f"{i}:{name}|{int(s)}"] = [float(np.sum((100.0 * (p - g)) ** 2)),
                                              float(np.sum((1.0 / np.maximum(p, 1e-4) - 1.0 / g) ** 2)),
                                              int(m.sum())]
    if net is not None:
        net.train(was_training)
    if not any(v[2] for v in out.values()):
        raise DadaInputError(f"no validation tile of {cfg.val_tile}x{cfg.val_tile} with valid depth")
    return out


def _per_scale(errors: dict[str, list[float]]) -> dict[int, float]:
    sq: dict[int, float] = {}
    px: dict[int, int] = {}
    for key, (sq_d, _, n) in errors.items():
        s = int(key.rsplit("|", 1)[1])
        sq[s], px[s] = sq.get(s, 0.0) + sq_d, px.get(s, 0) + n
    return {s: sq[s] / px[s] for s in sq if px[s]}


def _pooled(errors: dict[str, list[float]]) -> float:
    return sum(v[0] for v in errors.values()) / max(1, sum(v[2] for v in errors.values()))


def evaluate_scenes(net, scenes, cfg: TrainConfig, device: torch.device,
                    free_mse: dict[int, float] | None = None) -> tuple[float, float, dict[int, float]]:
    """Validation as the benchmark measures: every ``val_tile`` tile of the validation scenes, at
    every training scale, through the solver's default policy; MSE pooled over pixels per scale.

    Returns (mean over scales of MSE / DADA-free's MSE, MSE pooled over all scales in cm^2, the
    per-scale MSE). ``net=None`` evaluates DADA-free itself (its per-scale MSE is then the
    ``free_mse`` of later calls).
    """
    errors = scene_errors(net, scenes, cfg, device)
    mse = _per_scale(errors)
    ref = free_mse or mse
    rel = float(np.mean([mse[s] / ref[s] for s in mse if ref.get(s)]))
    return rel, _pooled(errors), mse


def ratio_loss(errors: dict[str, list[float]], free: dict[str, list[float]]) -> float:
    """Geo-mean over (tile, scale) of sqrt(depth MSE ratio x inverse-depth MSE ratio) to
    DADA-free's ``free`` errors (``val_mode="ratios"``; entries DADA-free scores 0 are skipped)."""
    logs = [0.5 * (math.log(max(e[0], 1e-30) / f[0]) + math.log(max(e[1], 1e-30) / f[1]))
            for k, e in errors.items() if (f := free.get(k)) and f[0] > 0 and f[1] > 0]
    if not logs:
        raise DadaInputError("no validation tile where DADA-free has a nonzero error")
    return float(math.exp(sum(logs) / len(logs)))


def plot_curve(csv_path: Path, png_path: Path, ylabel: str = "10 x L1 (m)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(csv_path)))
    if not rows:
        return
    step = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    k = max(1, min(50, len(loss) // 10))
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    vr = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"] not in ("", None)]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(step, loss, color="0.8", lw=0.5, label="train loss (per step)")
    ax.plot(step[k - 1:], smooth, color="C0", label=f"train loss (mean of {k})")
    if vr:
        ax.plot(*zip(*vr), "o-", color="C1", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


class Trainer:
    """One training run. ``world``: this process's place in a torchrun job
    (:mod:`dada_ros.learned.distributed`; default: one process, the code path unchanged)."""

    def __init__(self, cfg: TrainConfig, resume: bool = True, progress: bool = True, world: World | None = None):
        cfg.validate()
        self.cfg = cfg
        self.progress = progress
        self.world = world or SINGLE
        # torch AND the fused loop's numba threads (the no-grad steps run there): see set_cpu_threads.
        set_cpu_threads(max(1, int(cfg.threads)))
        self.device = self.world.device(resolve_device(cfg.device))
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        gcfg = GuideConfig(architecture=cfg.architecture, channels=cfg.channels, normalisation=cfg.normalisation,
                           train_scales=list(cfg.scales), lam=cfg.lam, refine_width=cfg.refine_width,
                           widths=list(cfg.widths), scale_film=cfg.scale_film, gate=cfg.gate)
        self.net = GuideNet(gcfg)
        if cfg.init_from:
            new = init_from_checkpoint(self.net, cfg.init_from)
            print(f"initialised from {cfg.init_from}" + (f"; new parameters keep their init: {new}" if new else ""))
        if cfg.pretrained:
            missing = self.net.load_pretrained_encoder(cfg.pretrained)
            if missing:
                print(f"pretrained encoder: {len(missing)} keys not in the file (kept random)")
        self.net.to(self.device).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
        self.step = 0
        self.elapsed = 0.0
        self.sampler: CropSampler | None = None
        self._hard_state: str | None = None
        self.best_val = math.inf
        self.skipped_steps = 0  # steps whose gradient was not finite (not applied)
        self.skipped_in_row = 0
        self.meta: dict = {"train_config": asdict(cfg)}
        self.last_path, self.best_path = self.out / "last.pt", self.out / "best.pt"
        self.csv_path, self.png_path = self.out / "log.csv", self.out / "curve.png"
        if resume and self.last_path.exists():
            self._resume()
        elif self.csv_path.exists() and self.world.is_main:
            self.csv_path.unlink()
        self.world.check_agreement(asdict(cfg), self.step, cfg.batch)
        # What the training forward calls: the net itself, or the net in DDP (batch norm over ranks).
        self.model = self.world.wrap(self.net, self.device)

    # ----------------------------------------------------------------- state
    def _resume(self) -> None:
        net, meta, data = load_checkpoint(self.last_path)
        if "resume" not in data:
            raise DadaInputError(f"{self.last_path} has no resume state")
        if asdict(net.config) != asdict(self.net.config):
            raise DadaInputError(f"{self.last_path} was trained with a different model config; use a new --out")
        self.net.load_state_dict(net.state_dict())
        st = data["resume"]
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.step, self.elapsed, self.best_val = int(st["step"]), float(st["elapsed"]), float(st["best_val"])
        self.skipped_steps = int(st.get("skipped_steps", 0))
        self.rng.bit_generator.state = json.loads(st["numpy_rng"])
        self._hard_state = st.get("hard_pool")  # applied to the sampler when run() makes it
        torch.set_rng_state(st["torch_rng"])
        self.meta = dict(meta)
        print(f"resumed from {self.last_path} at step {self.step} (best val {self.best_val:.4g})")

    def _meta(self) -> dict:
        m = dict(self.meta)
        m.update(steps=self.step, skipped_steps=self.skipped_steps, train_seconds=round(self.elapsed, 1),
                 best_val_loss=self.best_val,
                 device=str(self.device), torch=str(torch.__version__),
                 date=time.strftime("%Y-%m-%d %H:%M:%S"))
        return m

    def save_last(self) -> None:
        if not self.world.is_main:
            return
        resume = {
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(), "step": self.step,
            "elapsed": self.elapsed, "best_val": self.best_val, "skipped_steps": self.skipped_steps,
            "numpy_rng": json.dumps(self.rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
            "hard_pool": self.sampler.pool_state() if self.sampler is not None else None,
        }
        save_checkpoint(self.last_path, self.net, self._meta(), extra={"resume": resume})

    def _log(self, row: dict) -> None:
        if not self.world.is_main:
            return
        new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in LOG_FIELDS})

    def _loss(self, pred: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, float, list[float]]:
        """(loss to back-propagate, its value, per-example losses of the whole batch); under
        torchrun the mean over the GLOBAL batch's valid pixels (:meth:`World.global_loss`)."""
        per_example = per_example_loss(pred, batch, self.cfg)
        if self.world.distributed:
            return self.world.global_loss(_masked_error(pred, batch, self.cfg), batch.gt_valid, per_example,
                                          self.cfg.batch)
        loss = training_loss(pred, batch, self.cfg)
        return loss, float(loss.detach()), per_example.tolist()

    # ----------------------------------------------------------------- loop
    def run(self) -> dict:
        cfg = self.cfg
        from .datasets.procedural import tof_source

        train_scenes = open_scenes(cfg, "train")
        sampler = CropSampler(train_scenes, cfg.crop, cfg.scales, self.rng,
                              source_fn=lambda gt, rgb, s, rng: tof_source(gt, rgb, s, rng), source_prob=cfg.tof_prob,
                              hard_prob=cfg.hard_prob, hard_pool=cfg.hard_pool,
                              scale_weights=cfg.scale_weights or None,
                              misregister_px=cfg.misregister_px, misregister_prob=cfg.misregister_prob)
        if self._hard_state:
            sampler.load_pool_state(self._hard_state)
        self.sampler = sampler
        val_scenes = open_scenes(cfg, "val") if self.world.is_main else None
        if not self.world.is_main:
            validate = None  # rank 0 alone validates (the others wait in their next collective)
        elif cfg.val_mode == "ratios":
            if "val_free_errors" not in self.meta:
                free_err = scene_errors(None, val_scenes, cfg, self.device)
                self.meta["val_free_errors"] = free_err
                self.meta["val_free"] = {"loss": 1.0, "mse_cm2": _pooled(free_err),
                                         "mse_cm2_per_scale": _per_scale(free_err)}
                print(f"validation, DADA-free reference: {len(free_err)} (tile, scale) entries, MSE "
                      f"{_pooled(free_err):.2f} cm^2")
            free_err = self.meta["val_free_errors"]

            def validate():
                errors = scene_errors(self.net, val_scenes, cfg, self.device)
                return ratio_loss(errors, free_err), _pooled(errors)
        elif cfg.val_mode == "scenes":
            if "val_free" not in self.meta:
                _, free_all, free_per = evaluate_scenes(None, val_scenes, cfg, self.device)
                self.meta["val_free"] = {"loss": 1.0, "mse_cm2": free_all, "mse_cm2_per_scale": free_per}
                print(f"validation, DADA-free reference: MSE {free_all:.2f} cm^2 "
                      + ", ".join(f"x{k} {v:.1f}" for k, v in free_per.items()))
            free_per = {int(k): v for k, v in self.meta["val_free"]["mse_cm2_per_scale"].items()}

            def validate():
                rel, mse_all, _ = evaluate_scenes(self.net, val_scenes, cfg, self.device, free_per)
                return rel, mse_all
        else:
            val_batches = validation_batches(val_scenes, cfg)
            if "val_free" not in self.meta:
                free_loss, free_mse = evaluate_batches(FreeNet().to(self.device), val_batches, cfg, self.device)
                self.meta["val_free"] = {"loss": free_loss, "mse_cm2": free_mse}
                print(f"validation, DADA-free reference: loss {free_loss:.4f}, MSE {free_mse:.2f} cm^2")

            def validate():
                return evaluate_batches(self.net, val_batches, cfg, self.device)
        if self.step == 0 and self.world.is_main:
            v_loss, v_mse = validate()
            self.best_val = v_loss
            self._log({"step": 0, "seconds": 0.0, "lr": cfg.lr, "loss": v_loss, "val_loss": v_loss,
                       "val_mse_cm2": v_mse, "kappa": float(self.net.kappa.detach())})
            save_checkpoint(self.best_path, self.net, self._meta() | {"val_loss": v_loss, "val_mse_cm2": v_mse})
        bar = None
        if self.progress and self.world.is_main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="dada-train", mininterval=20, smoothing=0.05)
        t_start = time.perf_counter() - self.elapsed
        stop_reason = "steps"
        while self.step < cfg.steps:
            batch = self.world.shard(sampler.batch(cfg.batch)).to(self.device)  # this rank's share
            top = cfg.n_pre_max(batch.scale)
            n_pre = int(self.rng.integers(int(round(cfg.n_pre_min * top)), top + 1))
            schedule = cfg.schedule(batch.scale)
            pred = unrolled_solve(self.model, batch, n_pre, cfg.n_grad, cfg.lam, cfg.segment, schedule=schedule)
            if schedule is not None:  # the whole solve carries the gradient (n_pre is drawn, unused)
                n_pre, n_grad = 0, len(schedule)
            else:
                n_grad = cfg.n_grad
            loss, loss_value, example_losses = self._loss(pred, batch)
            sampler.record(batch.scale, sampler.last_keys, example_losses)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if not math.isfinite(loss_value):
                raise RuntimeError(f"loss became {loss_value} at step {self.step}; last good state is {self.last_path}")
            # clip_grad_norm_ also measures the norm (max_norm inf: measured, not clipped)
            norm = float(torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.clip if cfg.clip > 0 else math.inf))
            if math.isfinite(norm):
                self.opt.step()
                self.skipped_in_row = 0
            else:
                # A rare crop whose weighted solve ran away (a finite loss of ~1e9, a gradient of inf):
                # one step with it makes every weight NaN (a clipped inf is NaN). Skip it and say so;
                # many in a row mean the model itself has gone bad.
                self.skipped_steps += 1
                self.skipped_in_row += 1
                self.opt.zero_grad(set_to_none=True)
                msg = (f"step {self.step}: gradient norm {norm} (loss {loss_value:.3g}, x{batch.scale}): "
                       f"step skipped ({self.skipped_steps} so far)")
                (bar.write(msg) if bar else print(msg))
                if self.skipped_in_row >= MAX_SKIPPED_IN_ROW:
                    raise RuntimeError(f"{self.skipped_in_row} steps in a row had a non-finite gradient (step "
                                       f"{self.step}); last good state is {self.last_path}")
            self.sched.step()
            self.step += 1
            self.elapsed = time.perf_counter() - t_start
            row = {"step": self.step, "seconds": round(self.elapsed, 2), "lr": self.sched.get_last_lr()[0],
                   "scale": batch.scale, "n_pre": n_pre, "n_grad": n_grad, "loss": loss_value,
                   "kappa": float(self.net.kappa.detach())}
            if self.world.is_main and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                v_loss, v_mse = validate()
                row.update(val_loss=v_loss, val_mse_cm2=v_mse)
                if v_loss < self.best_val:
                    self.best_val = v_loss
                    save_checkpoint(self.best_path, self.net,
                                    self._meta() | {"val_loss": v_loss, "val_mse_cm2": v_mse})
                msg = f"step {self.step}: val loss {v_loss:.4f} MSE {v_mse:.2f} cm^2 (best {self.best_val:.4f})"
                (bar.write(msg) if bar else print(msg))
            self._log(row)
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", s=batch.scale, refresh=False)
            if self.step % cfg.ckpt_every == 0:
                self.save_last()
            if cfg.time_limit_min and self.world.any(self.elapsed > 60 * cfg.time_limit_min):
                stop_reason = "time limit"
                break
        self.save_last()
        if bar:
            bar.close()
        unit = "L1 (m)" if cfg.loss == "l1" else "squared error (m^2)"
        if self.world.is_main:
            plot_curve(self.csv_path, self.png_path, f"{cfg.loss_weight:g} x {unit}")
        self.world.barrier()  # every rank returns once rank 0's files are written
        return {"steps": self.step, "skipped_steps": self.skipped_steps, "seconds": self.elapsed,
                "best_val_loss": self.best_val,
                "val_free": self.meta.get("val_free"), "stopped": stop_reason,
                "best": str(self.best_path), "last": str(self.last_path)}
