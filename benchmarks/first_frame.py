"""How late is the node's first frame? Start ``dada_upsample`` (default parameters) in a fresh
process, send 640x480 frames one at a time, and compare the first frame's stamp -> publish with
the median of the following ones. The node warms its kernels up before it logs "ready"
(``FramePipeline.warm_up``), so the first frame should cost one steady-state frame.

    python benchmarks/first_frame.py                 # x8 source, 8 frames
    python benchmarks/first_frame.py --source 160x120
"""

from __future__ import annotations

import dada_ros  # noqa: F401,I001 - first, as in the node: GOMP_SPINCOUNT before libgomp loads

import argparse
import os
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="80x60", help="depth WxH (guide 640x480)")
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.source.split("x"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from dada_ros.ros.transport_profile import apply_default_profile

    apply_default_profile()
    import node_latency  # noqa: PLC0415
    from dada_ros.core.sequences import SequenceConfig, make_sequence  # noqa: PLC0415
    from dada_ros.ros.parameters import PARAMS_BY_NAME  # noqa: PLC0415

    frames = list(make_sequence(SequenceConfig(seed=0, size=(480, 640), source_shape=(h, w),
                                               plan=(("pan", args.frames),))))
    ns = argparse.Namespace(max_age=PARAMS_BY_NAME["warm_start_max_age"].default,
                            threads=PARAMS_BY_NAME["torch_threads"].default, frame_timeout=120.0, verbose=False)
    t0 = time.perf_counter()
    domain = int(os.environ.get("ROS_DOMAIN_ID", 0)) or (180 + os.getpid() % 20)
    with node_latency.running_node(PARAMS_BY_NAME["warm_start"].default, ns, domain) as runner:
        print(f"node ready and connected {time.perf_counter() - t0:.2f} s after construction began "
              "(kernels warmed up)", flush=True)
        for i, f in enumerate(frames):
            runner.frame(i, f)
    lat = [r["latency"] * 1000 for r in runner.rows]
    print(f"640x480 <- {w}x{h}: first frame {lat[0]:.1f} ms, following frames median {statistics.median(lat[1:]):.1f} ms "
          f"(all: {', '.join(f'{x:.0f}' for x in lat)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
