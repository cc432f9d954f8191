"""Warm frames of ``method: dada`` behind the guard, the preparation beside the alignment or after it.

The shipped learned model (``make_solver("dada", ..., guard=GuardConfig())``) in two pipelines fed a
generated 640x480 pan (x4, 160x120 source) frame by frame in turn, ``overlap_prepare`` True and
False; prints the median time of the warm frames the guard did not check (the check costs the
same in both) and their alignment (flow + acceptance).

    python benchmarks/warm_overlap_learned.py
"""
import statistics, time, numpy as np, dada_ros
from dada_ros.core.device import set_cpu_threads
from dada_ros.core.guard import GuardConfig
from dada_ros.core.methods import make_solver
from dada_ros.core.output_range import OutputRangeConfig
from dada_ros.core.pipeline import FramePipeline, WarmConfig
from dada_ros.core.sequences import SequenceConfig, make_sequence
from dada_ros.core.solver import SolverConfig
set_cpu_threads(2)
seq = list(make_sequence(SequenceConfig(plan=(("pan", 12),), source_shape=(120, 160))))
pipes = {f: FramePipeline(make_solver("dada", SolverConfig(device="cpu"), guard=GuardConfig()), WarmConfig(mode="flow", max_age=1e9, overlap_prepare=f), OutputRangeConfig()) for f in (False, True)}
for p in pipes.values(): p.warm_up()
T = {f: [] for f in pipes}; M = {f: [] for f in pipes}
for i, fr in enumerate(seq):
    src = np.nan_to_num(fr.source, nan=0.0).astype(np.float32)
    for f, p in pipes.items():
        t = time.perf_counter(); st = p.process(fr.rgb, src, fr.stamp).stats
        if i >= 2 and st["init_mode"] == "flow" and not st["guard"]["checked"]:
            T[f].append((time.perf_counter() - t) * 1000); M[f].append(st["flow_ms"] + st.get("accept_ms", 0))
for f in pipes:
    print(f"overlap {f}: warm frames {len(T[f])}, median {statistics.median(T[f]):.1f} ms, align {statistics.median(M[f]):.1f} ms")
