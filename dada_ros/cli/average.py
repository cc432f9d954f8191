"""``dada-average``: weight-average guide checkpoints of one configuration into one (a model soup).

Runs fine-tuned from the same parent (e.g. two seeds or two recipes of a stage) average into a
model about as good as the better one or better (not always: compare it on validation data); the
result starts the next stage or ships.
"""

from __future__ import annotations

import argparse
import sys

from .common import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dada-average", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="guide checkpoints (same architecture and config), two or more")
    p.add_argument("--out", required=True, help="where to write the averaged checkpoint")
    p.add_argument("--weights", type=float, nargs="+", default=None,
                   help="relative weight of each checkpoint (default: equal)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..learned.model import average_checkpoints, save_checkpoint

    net, meta = average_checkpoints(args.checkpoints, args.weights)
    save_checkpoint(args.out, net, meta)
    print(f"dada-average: wrote {args.out} (mean of {len(args.checkpoints)} checkpoints, weights "
          f"{', '.join(f'{w:.3g}' for w in meta['average_weights'])})")
    return 0


def entry() -> None:
    sys.exit(run_cli("dada-average", main))


if __name__ == "__main__":
    entry()
