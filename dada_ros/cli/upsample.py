"""``dada-upsample``: upsample one low-resolution depth map onto an RGB guide.

Contract (other tooling depends on it)::

    dada-upsample --guide RGB.png --source DEPTH.(npy|png|tiff) --out OUT.npy
        [--method dada-free|dada|bicubic|nearest|jbf|guided|fgs] [--iterations N] [--tol T]
        [--init Y0.npy] [--device auto|cpu|cuda] [--stats STATS.json]

Output: float32 .npy in metres at guide resolution, NaN where nothing could be inferred.
"""

from __future__ import annotations

import argparse
import sys

from ..core.image_io import read_depth, read_guide, write_depth_npy
from ..core.methods import DADA_METHODS, METHODS, run_method
from ..core.solver import DEFAULT_LAMBDA, DEFAULT_MAX_ITERATIONS, SolverConfig
from .common import run_cli, write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dada-upsample", description=__doc__.split("\n\n")[0])
    p.add_argument("--guide", required=True, help="RGB image at the output resolution")
    p.add_argument("--source", required=True, help="low-res depth: .npy metres, 16-bit .png mm, .tif(f)")
    p.add_argument("--out", required=True, help="output .npy (float32 metres, NaN = no estimate)")
    p.add_argument("--method", default="dada-free", choices=METHODS)
    p.add_argument("--iterations", type=int, help="fixed number of diffusion-adjustment steps")
    p.add_argument("--tol", type=float, help="stop when the max relative change per check is below this")
    p.add_argument("--max-iterations", type=int, default=DEFAULT_MAX_ITERATIONS, help="cap with --tol / default")
    p.add_argument("--init", help="warm start Y0 (.npy metres at guide resolution)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--stats", help="write solver statistics as JSON here")
    p.add_argument("--kappa", type=float, help="edge sensitivity of the coefficients (dada-free)")
    p.add_argument("--lambda", dest="lam", type=float, default=DEFAULT_LAMBDA, help="step size, < 0.25")
    p.add_argument("--form", choices=("code", "paper"), default="code", help="coefficient form (dada-free)")
    p.add_argument("--coarse-to-fine", action="store_true", help="cold start from coarser guides first")
    p.add_argument("--max-fill-distance", type=float, default=8.0,
                   help="NaN beyond this many source cells from any measurement (inf: fill all)")
    p.add_argument("--weights", help="learned model checkpoint (--method dada)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    guide = read_guide(args.guide)
    source = read_depth(args.source)
    init = read_depth(args.init) if args.init else None
    config = SolverConfig(
        lam=args.lam, iterations=args.iterations, tol=args.tol, max_iterations=args.max_iterations,
        coarse_to_fine=args.coarse_to_fine, max_fill_distance=args.max_fill_distance, device=args.device,
    )
    config.validate()
    if args.method in DADA_METHODS:
        depth, stats = run_method(args.method, guide, source, config=config, init=init,
                                  kappa=args.kappa, form=args.form, weights=args.weights)
    else:
        from ..core.baselines import BaselineParams

        depth, stats = run_method(args.method, guide, source, init=init,
                                  baseline_params=BaselineParams(max_fill_distance=args.max_fill_distance))
    write_depth_npy(args.out, depth)
    if args.stats:
        write_json(args.stats, stats)
    return 0


def entry() -> None:
    sys.exit(run_cli("dada-upsample", main))


if __name__ == "__main__":
    entry()
