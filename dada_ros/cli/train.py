"""``dada-train``: train the learned guide of DADA end to end (see :mod:`dada_ros.learned.train`).

Examples::

    dada-train --out runs/lite                      # procedural scenes, the shipped recipe
    dada-train --out runs/lite                      # again: resumes from runs/lite/last.pt
    dada-train --dataset middlebury --data-dir data/Middlebury --scales 8 --crop 256 --batch 8 \\
        --arch resnet50-unet --channels 64 --pretrained resnet50-imagenet.pth \\
        --n-pre 8000 --n-pre-scaling none --n-grad 1024 --segment 32 --device cuda --out runs/mb_x8

    dada-train --dataset realdata --val-mode scenes --val-tile 0 --out runs/real     # real frames (../shared/realdata)
    dada-train --bag my.mcap --self-supervised --init-from dada_ros/data/dada_lite_v5.pt \
        --scales 2 4 8 --crop 64 --steps 150 --n-pre 400 --val-mode scenes --val-tile 0 --out runs/adapt

Outputs: OUT/best.pt (use with --weights), OUT/last.pt (resume), OUT/log.csv, OUT/curve.png.

Data-parallel (:mod:`dada_ros.learned.distributed`; ``--batch`` stays the global batch)::

    torchrun --nproc_per_node 2 -m dada_ros.cli.train --out runs/lite      # 2 CPU processes (gloo)
    torchrun --nproc_per_node 4 -m dada_ros.cli.train --device cuda ...    # 4 GPUs (nccl)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from ..learned.distributed import BACKENDS, BATCH_NORMS, session
from ..learned.train import TrainConfig, Trainer
from .common import run_cli

HELP = {
    "dataset": "generated | middlebury | nyuv2 | diml",
    "data_dir": "dataset root (not needed for generated)",
    "architecture": "lite-unet (CPU real time; dada_lite_v5-v7) | lite-unet-q (its U-Net at quarter resolution; "
                    "dada_lite_v8, the default) | lite-unet-fr (first level at full resolution) | resnet50-unet (the "
                    "paper's); left out: the --init-from checkpoint's, else lite-unet",
    "channels": "feature channels C (lite-unet: multiple of 4; paper: 64)",
    "normalisation": "depth input normalisation: log-mean | mean",
    "pretrained": "local torchvision ResNet-50 ImageNet state_dict (resnet50-unet); nothing is downloaded",
    "scales": "scale factors, one sampled per batch",
    "scale_weights": "relative frequency of each of --scales (default: uniform)",
    "crop": "square training crop (multiple of every scale)",
    "n_pre": "max no-grad steps at x8 (random 0..N_pre per batch)",
    "n_pre_scaling": "linear: N_pre(s) = n_pre * s / 8; none: n_pre at every scale",
    "n_grad": "steps with gradient after the no-grad ones",
    "n_pre_min": "no-grad steps drawn from [n_pre_min x N_pre(s), N_pre(s)] (paper: 0)",
    "segment": "activation checkpointing every k unrolled steps (0: off)",
    "solve": "split: n_pre no-grad + n_grad steps with gradient; full: gradient through the whole default "
             "(Chebyshev) solve",
    "lr_step": "StepLR step size in optimiser steps",
    "clip": "gradient-norm clipping (0: off)",
    "tof_prob": "fraction of training sources made ToF-like (noise, dropouts)",
    "hard_prob": "fraction of crops replayed from the pool of the highest-loss crops seen so far (0: off)",
    "hard_pool": "crops kept per scale in the hard pool",
    "misregister_px": "misregistration augmentation: a crop's depth cut up to this many pixels away from its RGB "
                      "(sensors register depth to colour to a pixel or a few; 0: off)",
    "misregister_prob": "fraction of crops with --misregister-px applied",
    "real_scenes": "--dataset realdata: train on these files (e.g. baby1_view1 baby1_view5) instead of the fixed split",
    "real_val_scenes": "--dataset realdata: validate on these files instead of the fixed split",
    "val_mode": "ratios: whole val scenes, loss = geo-mean over scenes and scales of sqrt(depth x inverse-depth "
                "MSE ratio to DADA-free); scenes: whole val scenes through the default solver policy, loss = MSE / DADA-free's "
                "(what the benchmark reports); crops: centre crops at a fixed horizon (cheaper)",
    "val_tile": "tile size of --val-mode scenes",
    "time_limit_min": "stop (and save) after this many minutes of training",
    "cache_dir": "keep rendered training scenes here (generated)",
    "refine_width": "lite-unet: width of the full-resolution 3x3 refinement (0: none)",
    "scale_film": "lite U-Nets: condition the decoder on log2(resolution ratio) (FiLM; starts as the unconditioned model)",
    "widths": "lite U-Nets: channels of each level, finest first (default: 16 24 40 64 64; -fr: 12 16 24 40 64 64)",
    "init_from": "start from this checkpoint's weights (fine-tune; layers it lacks keep their init)",
    "gate": "lite U-Nets: blend the coefficients with DADA-free's by a per-ratio gate (starts shut = DADA-free)",
    "self_supervised": "cross-scale self-supervision: (RGB resized to the depth's resolution, depth block-averaged "
                       "by each --scales r) -> the depth itself; no ground truth",
    "sensor_ratio": "--self-supervised on a dataset: emulate a depth sensor at 1/k of the RGB resolution",
    "bag": "rosbag2 with the node's topics (needs --self-supervised): adapt to that camera; "
           "e.g. --bag B --self-supervised --init-from dada_ros/data/<model>.pt --scales 2 4 8 --crop 64",
    "bag_part": "fractions START STOP of the bag's synchronised frames to adapt on (default: the first half)",
    "bag_val_frames": "the last N frames of --bag-part validate instead of training",
    "mix_generated": "add this many procedural training scenes beside a real dataset's (half the crops each)",
    "out_dir": "output directory (resumes from its last.pt)",
    "threads": "torch CPU threads",
    "loss": "l1 (the paper's) | l2 (squared error: weights the large errors that dominate MSE) | log (squared "
            "error of log depth: relative, near and far weigh the same)",
}
ALIASES = {"architecture": "--arch", "out_dir": "--out", "time_limit_min": "--time-limit"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dada-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = ALIASES.get(f.name, "--" + f.name.replace("_", "-"))
        value = getattr(defaults, f.name)
        kw = {"dest": f.name, "default": value, "help": HELP.get(f.name, " ")}
        if f.name in ("scales", "widths"):
            kw.update(type=int, nargs="+")
        elif f.name in ("real_scenes", "real_val_scenes"):
            kw.update(type=str, nargs="+")
        elif f.name in ("scale_weights", "bag_part"):
            kw.update(type=float, nargs="+")
        elif f.name == "render_sizes":
            kw.update(type=lambda s: [int(v) for v in s.lower().split("x")], nargs="+",
                      help="render sizes HxW of the generated training scenes, e.g. 256x256 384x512")
        elif isinstance(value, bool):
            kw.update(action="store_true")
        elif value is None:
            kw.update(type=float if f.name == "time_limit_min" else str)
        else:
            kw.update(type=type(value))
        p.add_argument(flag, **kw)
    # --arch left out: the --init-from checkpoint's architecture (resolve_architecture)
    p.set_defaults(architecture=None)
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dist-backend", choices=BACKENDS, default="auto",
                   help="under torchrun: gloo (CPU) or nccl (CUDA); auto chooses by --device")
    p.add_argument("--dist-bn", choices=BATCH_NORMS, default="sync",
                   help="under torchrun: batch-norm statistics over the global batch (sync: the single "
                        "process's curve) or each rank's share (local: no BN collectives)")
    return p


def resolve_architecture(args: dict) -> str:
    """``--arch`` as given; without it the ``--init-from`` checkpoint's (fine-tuning or adapting a
    shipped model keeps its architecture: ``dada_lite_v8`` is a ``lite-unet-q``), else the default."""
    if args.get("architecture"):
        return args["architecture"]
    if args.get("init_from"):
        from ..learned.model import load_checkpoint  # noqa: PLC0415

        return load_checkpoint(args["init_from"])[0].config.architecture
    return TrainConfig().architecture


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    args["architecture"] = resolve_architecture(args)
    no_resume, quiet = args.pop("no_resume"), args.pop("quiet")
    backend, bn = args.pop("dist_backend"), args.pop("dist_bn")
    cfg = TrainConfig(**args)
    # Outside torchrun the session is the single process (nothing initialised, the old code path).
    with session(backend, cfg.device, batch_norm=bn) as world:
        summary = Trainer(cfg, resume=not no_resume, progress=not quiet, world=world).run()
        if world.is_main:
            print(json.dumps(summary | ({"world_size": world.size} if world.distributed else {}),
                         indent=2, default=float))
    return 0


def entry() -> None:
    sys.exit(run_cli("dada-train", main))


if __name__ == "__main__":
    entry()
