"""``dada-replay``: replay a rosbag through the upsampling node's code path and score it.

Usage::

    dada-replay --bag BAG --out DIR [--methods dada-free,dada-free:naive,dada-free:cold,bicubic,jbf]
        [--gt-topic /depth_gt/image_rect] [--topics rgb=/cam/color,depth=/tof/depth,...]
        [--device auto|cpu|cuda] [--warm-iterations 50] [--node-params NAME:=VALUE,...]
        [--cold-every N] [--max-frames N] [--realtime]
    dada-replay --bag BAG1 BAG2 ... --out DIR [--jobs N]     # many bags: DIR/<bag name>/, DIR/bags.json
    dada-replay --make-sample DIR [--frames 64] [--size 640x480] [--source-size 160x120] [--seed 0]

Offline (default): reads BAG with ``rosbags`` (no ROS install needed), synchronises the inputs
with the node's synchroniser, runs every method through the node's per-frame pipeline, scores
against the ground-truth topic, and writes DIR/metrics.json (incrementally), DIR/frames.jsonl,
DIR/report.md with PNG figures and DIR/output_bag (upsampled depth, camera_info, point cloud).
``--realtime`` instead plays BAG at bag rate into a running ``upsample_node`` over rclpy and
records what comes back (drops, latency, scores). Several bags: each is replayed into
DIR/<bag name>/ (``--jobs N`` worker processes at once, each bag's scores identical to a serial
run's at the same ``--threads``) and DIR/bags.json pools their scores.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..core.errors import DadaInputError
from .common import run_cli

PROG = "dada-replay"


def _size(text: str) -> tuple[int, int]:
    """``640x480`` -> (H, W) = (480, 640)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    from ..replay.methods import DEFAULT_METHODS

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Methods: METHOD[:MODE[:N]] with METHOD dada-free|dada|bicubic|nearest|jbf|guided|fgs "
                                       "and MODE flow (default, the node's) | naive | cold; N = iterations per warm "
                                       "frame (flow/naive) or per frame (cold; default: equilibrium).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bag", type=Path, nargs="+", help="rosbag2 bag(s): directory, .mcap or .db3")
    src.add_argument("--make-sample", type=Path, metavar="DIR", help="write the synthetic sample bag to DIR and exit")
    p.add_argument("--out", type=Path, help="output folder (created); required with --bag")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})")
    p.add_argument("--gt-topic", help="ground-truth depth topic (default /depth_gt/image_rect; 'none': no scoring)")
    p.add_argument("--topics", help="input remaps KEY=TOPIC,... with KEY rgb, rgb_info, depth, gt")
    p.add_argument("--device", help="auto | cpu | cuda (node parameter device; default auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads (node parameter torch_threads; default torch's)")
    p.add_argument("--weights", help="learned model checkpoint (node parameter weights, method dada)")
    p.add_argument("--warm-iterations", type=int, help="iterations per warm frame (node parameter warm_iterations)")
    p.add_argument("--node-params", metavar="NAME:=VALUE,...",
                   help="any upsample_node parameter (config/upsample.yaml names), e.g. max_iterations:=4000")
    p.add_argument("--cold-every", type=int, default=1,
                   help="score equilibrium cold-start methods on every N-th frame only (they are stateless)")
    p.add_argument("--max-frames", type=int, help="stop after this many synchronised frames")
    p.add_argument("--no-bag", action="store_true", help="do not write the output bag")
    p.add_argument("--bag-storage", choices=("mcap", "sqlite3"), default="mcap", help="storage of written bags")
    p.add_argument("--bag-all-methods", action="store_true", help="output bag: every method's depth, not only the first")
    p.add_argument("--snapshots", type=int, default=4, help="frames shown in detail in the report")
    p.add_argument("--no-report", action="store_true",
                   help="offline: no report.md and figures (metrics.json, frames.jsonl, bags.json only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--jobs", type=int, default=1,
                   help="several bags: replay up to N at once in worker processes (each gets cpus/N threads "
                        "unless --threads is given)")
    p.add_argument("--realtime", action="store_true", help="play into a live upsample_node over rclpy")
    p.add_argument("--rate", type=float, default=1.0, help="--realtime: playback rate factor")
    p.add_argument("--launch-node", action=argparse.BooleanOptionalAction, default=True,
                   help="--realtime: start upsample_node here (default) or use one already running")
    p.add_argument("--node-timeout", type=float, default=60.0,
                   help="--realtime: seconds to wait for the node to appear / for its last output")
    # --make-sample options
    p.add_argument("--frames", type=int, default=64, help="--make-sample: number of frames")
    p.add_argument("--size", type=_size, default=(480, 640), help="--make-sample: RGB WIDTHxHEIGHT")
    p.add_argument("--source-size", type=_size, default=(120, 160), help="--make-sample: depth WIDTHxHEIGHT")
    p.add_argument("--seed", type=int, default=0, help="--make-sample: scene seed")
    return p


def parse_node_params(text: str | None) -> dict:
    """``max_iterations:=4000,points_rgb:=true`` -> {name: typed value} (types from the node's table)."""
    from ..ros.parameters import PARAMS_BY_NAME

    out: dict = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition(":=")
        name = name.strip()
        if not sep:
            raise DadaInputError(f"bad node parameter {item!r}; expected NAME:=VALUE")
        if name not in PARAMS_BY_NAME:
            raise DadaInputError(f"unknown node parameter {name!r}; see config/upsample.yaml for the names")
        default = PARAMS_BY_NAME[name].default
        value = value.strip()
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false"):
                    raise ValueError
                out[name] = value.lower() == "true"
            elif isinstance(default, int):
                out[name] = int(value)
            elif isinstance(default, float):
                out[name] = float(value)
            else:
                out[name] = value
        except ValueError:
            raise DadaInputError(f"node parameter {name} needs a {type(default).__name__}, got {value!r}") from None
    return out


def node_settings(overrides: dict):
    """The node's defaults with ``overrides``, validated with the node's own checks."""
    from ..ros.parameters import NodeSettings, validate_settings

    settings = NodeSettings.defaults().updated(overrides)
    validate_settings(settings)
    return settings


def make_sample(args: argparse.Namespace) -> int:
    import shutil

    from tqdm import tqdm

    from ..replay.sample import SampleConfig, write_sample_bag

    dest = args.make_sample
    if dest.exists():
        raise DadaInputError(f"{dest} exists already; remove it first (bags are never overwritten)")
    if not dest.parent.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    cfg = SampleConfig(frames=args.frames, size=args.size, source_shape=args.source_size, seed=args.seed,
                       storage=args.bag_storage)
    with tqdm(total=args.frames, unit="frame", desc="sample bag", disable=args.no_progress, file=sys.stderr) as bar:
        info = write_sample_bag(tmp, cfg, progress=lambda i, n: bar.update(1))
    # rosbag2 names the storage file after the bag folder: rename it with the folder.
    for f in tmp.iterdir():
        if f.stem == tmp.name:
            f.rename(tmp / (dest.name + f.suffix))
    meta = tmp / "metadata.yaml"
    meta.write_text(meta.read_text().replace(tmp.name, dest.name))
    tmp.rename(dest)
    print(f"{PROG}: wrote {dest} ({info['frames']} frames, RGB {info['rgb_size'][0]}x{info['rgb_size'][1]}, "
          f"depth {info['depth_size'][0]}x{info['depth_size'][1]}, {info['bytes'] / 1e6:.1f} MB, {info['storage']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.make_sample is not None:
        return make_sample(args)
    if args.out is None:
        raise DadaInputError("--out DIR is required with --bag")
    if args.jobs < 1:
        raise DadaInputError(f"--jobs must be >= 1, got {args.jobs}")
    if args.realtime and len(args.bag) > 1:
        raise DadaInputError("--realtime plays one bag into one live node: give a single --bag")
    from ..replay.evaluate import ReplayConfig, run_replay
    from ..replay.methods import RunnerSettings, parse_methods
    from ..replay.report import format_summary
    from ..replay.topics import TopicMap

    topics = TopicMap().with_remaps(args.topics)
    if args.gt_topic is not None:
        topics = topics.with_remaps(f"gt={args.gt_topic}")
    specs = parse_methods(args.methods)
    overrides = parse_node_params(args.node_params)
    for name, value in (("device", args.device), ("torch_threads", args.threads), ("weights", args.weights),
                        ("warm_iterations", args.warm_iterations)):
        if value is not None:
            overrides[name] = value
    node = node_settings(overrides)
    device = node.device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():  # the node's rule: fall back to the CPU with one warning
            print(f"{PROG}: warning: device {device!r} requested but torch sees no CUDA GPU: using the CPU",
                  file=sys.stderr)
            device = "cpu"
    if node.torch_threads > 0:
        from ..core.device import set_cpu_threads

        set_cpu_threads(node.torch_threads)
    command = " ".join([PROG] + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)])
    if len(args.bag) > 1:
        return replay_many(args, specs, topics, RunnerSettings(node=node, device=device), command)
    cfg = ReplayConfig(
        bag=args.bag[0], out=args.out, methods=specs, topics=topics, settings=RunnerSettings(node=node, device=device),
        cold_every=args.cold_every, max_frames=args.max_frames, write_bag=not args.no_bag,
        bag_storage=args.bag_storage, bag_all_methods=args.bag_all_methods, snapshots=args.snapshots,
        report=not args.no_report, progress=not args.no_progress, command=command,
    )
    if args.realtime:
        from ..replay.realtime import RealtimeConfig, run_realtime

        from ..replay.methods import DEFAULT_METHODS

        result = run_realtime(RealtimeConfig(replay=cfg, rate=args.rate, launch_node=args.launch_node,
                                             node_params=overrides, node_timeout=args.node_timeout,
                                             methods_given=args.methods != DEFAULT_METHODS))
    else:
        result = run_replay(cfg)
    print(format_summary(result.metrics, result.report))
    processed = (result.metrics.get("input") or {}).get("frames_processed", 0)
    return 0 if result.status.startswith("complete") and processed else 1


def replay_many(args: argparse.Namespace, specs, topics, settings, command: str) -> int:
    """Several bags, ``--jobs`` at a time: DIR/<bag name>/ each, DIR/bags.json, a pooled table."""
    from ..replay.evaluate import ReplayConfig, prepare_out_dir
    from ..replay.many import bag_out_dirs, bags_report, format_pooled, run_many
    from ..replay.report import format_summary
    from .common import write_json

    outs = bag_out_dirs(args.bag, args.out)
    prepare_out_dir(args.out)
    cfgs = [ReplayConfig(bag=bag, out=out, methods=specs, topics=topics, settings=settings,
                         cold_every=args.cold_every, max_frames=args.max_frames, write_bag=not args.no_bag,
                         bag_storage=args.bag_storage, bag_all_methods=args.bag_all_methods,
                         snapshots=args.snapshots, report=not args.no_report, progress=not args.no_progress,
                         command=command)
            for bag, out in zip(args.bag, outs)]
    outcomes = run_many(cfgs, args.jobs, threads=args.threads, progress=not args.no_progress)
    for o in outcomes:
        if o.result is not None:
            print(format_summary(o.result.metrics, o.result.report))
    report = bags_report(outcomes, args.jobs)
    write_json(str(args.out / "bags.json"), report)
    print(format_pooled(report))
    return 0 if len(outcomes) == len(cfgs) and all(o.ok for o in outcomes) else 1


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the replay like Ctrl-C: partial results are written


def entry() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(run_cli(PROG, main))


if __name__ == "__main__":
    entry()
