"""Solver speed and schedule quality, side by side in one run: the eager 8000-step loop, the
package's plain loop and its default (Chebyshev semi-iteration) on synthetic AND real scenes.

Tables (each figure of a table comes from the same run):

1. Quality per scale (x4, x8, x16; x32 reported): on generated scenes (seeds 100-103, 256x256)
   and the real scenes of ``../shared/realdata`` (the seven dense Middlebury 2001-2005 scenes,
   disparity turned into depth-like z = 2 m x median(d) / d; the NYU raw Kinect frame (depth not
   registered to the RGB: caveated); the rendered ICL-NUIM living room frame 0 (synthetic); a
   masked block-average source from the ground truth, MSE over valid ground truth): the default
   policy's MSE / the 8000-step plain MSE (worst and median over the scenes, target <= 1.01), its
   applications, and the plain loop's own first entry into the 1% band (median, max).
2. Speed per guide size (640x480, 1280x720) and scale: ms per step of the eager reference (the
   authors' code form: out-of-place ops, avg-pool down, nearest up), of the torch backend and
   the fused numba kernel (plain step and weighted step), and the cold-frame time of the default
   solve (features, Y0, coefficients and loop, best of ``--repeat``) against the eager 8000-step
   loop (8000 x its ms/step: cost is linear in N) -- the speed-up a user gets.
3. With ``--schedule-sweep OUT.json``: the trajectories the default schedule was chosen from
   (MSE after every 5 applications for each candidate delta, and the plain loop's every 50 steps up
   to 8000), then their summary (worst ratio over scenes per delta and budget).

Timings on a shared 2-core machine are noisy: each is the minimum of ``--repeat`` runs and the
ratios come from the same run. Real scenes skip (with a note) when ../shared/realdata is absent.

    python benchmarks/solver_speed.py [--quick] [--repeat 3] [--scales 4,8,16,32]
    python benchmarks/solver_speed.py --schedule-sweep sweep.json [--scales 4,8,16,32]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from dada_ros.core.coefficients import coefficients_from_features, free_features
from dada_ros.core.device import set_cpu_threads
from dada_ros.core.fused_cpu import HAVE_NUMBA, numba_threads
from dada_ros.core.loop import run_loop
from dada_ros.core.resample import Partition, Resampler
from dada_ros.core.scenes import block_average, make_sample
from dada_ros.core.schedule import Schedule, chebyshev_defaults
from dada_ros.core.solver import DadaSolver, SolverConfig

SYNTHETIC_SEEDS = (100, 101, 102, 103)
REAL_SCENES = ("tsukuba", "venus", "cones", "teddy", "art", "books", "moebius", "nyu_raw_sample",
               "livingroom_seq_00000")
SWEEP_C = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4)  # candidate delta = c / s^2


def eager_reference(y, source, valid, cv, ch, scale, lam, iterations):
    """Plain Eq. (1)-(3): every step allocates, down = avg_pool, up = nearest interpolate."""
    for _ in range(iterations):
        fv = lam * cv * (y[:, :, 1:, :] - y[:, :, :-1, :])
        fh = lam * ch * (y[:, :, :, 1:] - y[:, :, :, :-1])
        y = y + F.pad(fv, (0, 0, 0, 1)) - F.pad(fv, (0, 0, 1, 0)) + F.pad(fh, (0, 1, 0, 0)) - F.pad(fh, (1, 0, 0, 0))
        ratio = torch.where(valid, source / (F.avg_pool2d(y, scale) + 1e-8), torch.ones_like(source))
        y = y * F.interpolate(ratio, scale_factor=scale, mode="nearest")
    return y


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def mse_cm2(depth: np.ndarray, gt: np.ndarray) -> float:
    """MSE (cm^2) over pixels with ground truth and an estimate."""
    m = np.isfinite(gt) & np.isfinite(depth)
    return float((((depth[m] - gt[m]) * 100.0) ** 2).mean())


def scenes(scale: int, quick: bool) -> tuple[list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]], str]:
    """[(group, name, rgb, gt, source)] at this scale, and a note on what was left out."""
    out = []
    for seed in SYNTHETIC_SEEDS[:2] if quick else SYNTHETIC_SEEDS:
        smp = make_sample(seed=seed, scale=scale, size=(256, 256))
        out.append(("synthetic", f"seed {seed}", smp.rgb, smp.gt, smp.source))
    note = ""
    try:
        from dada_ros.learned.datasets.realdata import RealDataScenes, default_root

        if default_root() is None:
            raise FileNotFoundError("../shared/realdata is absent")
        names = REAL_SCENES[:3] if quick else REAL_SCENES
        real = RealDataScenes(scenes=list(names), multiple=32)
        for sc in real.scenes:
            H, W = sc.depth.shape
            src = np.nan_to_num(block_average(sc.depth, (H // scale, W // scale)), nan=0.0)
            group = "rendered" if sc.name.startswith("livingroom") else "real"
            out.append((group, sc.name, sc.rgb, sc.depth, src))
    except (FileNotFoundError, ImportError) as exc:
        note = f"real scenes skipped: {exc}"
    return out, note


def trajectories(rgb, gt, src, deltas, budget: int, plain_every: int = 50):
    """MSE along the plain 8000-step loop (every ``plain_every``) and along the semi-iteration
    for each delta (every 5 applications up to ``budget``), from the same Y0 and coefficients."""
    solver = DadaSolver(SolverConfig(max_fill_distance=np.inf))
    plain: list[tuple[int, float]] = []
    solver.solve(rgb, src, schedule=Schedule.plain(8000, check_every=plain_every),
                 observe=lambda n, d: plain.append((n, mse_cm2(d, gt))))
    semi = {}
    for delta in deltas:
        tr: list[tuple[int, float]] = []
        solver.solve(rgb, src, schedule=Schedule.chebyshev(budget, delta, check_every=5),
                     observe=lambda n, d: tr.append((n, mse_cm2(d, gt))))
        semi[delta] = tr
    return plain, semi


def first_entry(plain: list[tuple[int, float]], band: float = 1.01) -> int:
    """Plain steps until the MSE first enters the band around the 8000-step MSE."""
    ref = plain[-1][1]
    return next(n for n, m in plain if m <= band * ref)


def quality_table(scales: list[int], quick: bool) -> None:
    print("\nQuality of the default policy (Chebyshev, per-ratio budget) against the paper's 8000 plain steps")
    print("| scale | scenes | default applications | MSE / MSE(8000): worst | median | worst scene | "
          "plain: first entry into 1% band (median / max steps) | 8000 / default applications |")
    print("|---|---|---|---|---|---|---|---|")
    for scale in scales:
        found, note = scenes(scale, quick)
        delta, budget = chebyshev_defaults(scale)
        by_group: dict[str, list] = {}
        for group, name, rgb, gt, src in found:
            plain, semi = trajectories(rgb, gt, src, [delta], budget)
            ratio = semi[delta][-1][1] / plain[-1][1]
            by_group.setdefault(group, []).append((ratio, name, first_entry(plain)))
        for group, rows in by_group.items():
            ratios = np.array([r for r, _, _ in rows])
            entries = np.array([e for _, _, e in rows])
            worst = rows[int(ratios.argmax())][1]
            print(f"| x{scale} | {group} ({len(rows)}) | {budget} | {ratios.max():.3f} | {np.median(ratios):.3f} | "
                  f"{worst} | {np.median(entries):.0f} / {entries.max()} | {8000 / budget:.0f}x |", flush=True)
        if note:
            print(f"| x{scale} | ({note}) | | | | | | |")


def schedule_sweep(path: str, scales: list[int], quick: bool) -> None:
    """Trajectories for every candidate delta (table 3) into ``path``, then their summary."""
    records = []
    for scale in scales:
        found, note = scenes(scale, quick)
        if note:
            print(note)
        for group, name, rgb, gt, src in found:
            t0 = time.perf_counter()
            plain, semi = trajectories(rgb, gt, src, [c / scale**2 for c in SWEEP_C], 300)
            records.append({"scale": scale, "group": group, "scene": name, "plain": plain,
                            "semi": {f"{d:.6g}": tr for d, tr in semi.items()}})
            print(f"x{scale} {name}: {time.perf_counter() - t0:.0f} s", flush=True)
            with open(path, "w") as fh:
                json.dump(records, fh)
    summarise_sweep(records)


def summarise_sweep(records: list[dict]) -> None:
    """Worst MSE / MSE(8000) over the scenes of each scale, per delta and budget."""
    budgets = list(range(50, 301, 25))
    print("\nWorst MSE / MSE(8000) over all scenes, per delta (rows) and applications (columns)")
    print("| scale | delta | " + " | ".join(str(b) for b in budgets) + " |")
    print("|---|---|" + "---|" * len(budgets))
    for scale in sorted({r["scale"] for r in records}):
        rows = [r for r in records if r["scale"] == scale]
        for key in rows[0]["semi"]:
            worst = [max(dict(r["semi"][key])[b] / r["plain"][-1][1] for r in rows) for b in budgets]
            print(f"| x{scale} | {key} | " + " | ".join(f"{w:.3f}" for w in worst) + " |")


def loop_inputs(size, scale):
    smp = make_sample(seed=4242, scale=scale, size=size)
    res = Resampler(Partition(size, smp.source.shape), torch.device("cpu"))
    src = torch.from_numpy(np.nan_to_num(smp.source, nan=0.0))[None, None]
    valid = src > 0
    rgb = torch.from_numpy(smp.rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    y0 = res.up(torch.where(valid, src, src[valid].mean())).contiguous()
    cv, ch = coefficients_from_features(free_features(rgb, y0), 0.03)
    return smp, res, src, valid, y0, cv, ch


def speed_table(sizes, scales, repeat: int, n_time: int) -> None:
    print("\nCold-frame speed (CPU): ms per step, and the default solve against the eager 8000-step loop")
    print("| guide | scale | eager ms/step | torch ms/step | fused ms/step (plain / weighted) | "
          "default: applications | default cold frame ms (fused / torch backend) | eager 8000 s | "
          "speed-up vs eager 8000 | vs plain fused 8000 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        for scale in scales:
            smp, res, src, valid, y0, cv, ch = loop_inputs(size, scale)
            ms = {}
            semi = Schedule.chebyshev(n_time, 1e-3)
            with torch.no_grad():
                eager_reference(y0.clone(), src, valid, cv, ch, scale, 0.24, 3)
                n_eager = max(20, n_time // 5)  # the eager loop is slow: fewer steps suffice
                ms["eager"] = best_time(lambda: eager_reference(y0.clone(), src, valid, cv, ch, scale, 0.24, n_eager),
                                        repeat) / n_eager
                ms["torch"] = best_time(lambda: run_loop(y0.clone(), src, valid, cv, ch, res, 0.24, n_time,
                                                         backend="torch"), repeat) / n_time
                if HAVE_NUMBA:
                    run_loop(y0.clone(), src, valid, cv, ch, res, 0.24, 5, backend="fused")  # JIT / cache load
                    run_loop(y0.clone(), src, valid, cv, ch, res, 0.24, backend="fused", schedule=Schedule.chebyshev(5, 1e-3))
                    ms["fused"] = best_time(lambda: run_loop(y0.clone(), src, valid, cv, ch, res, 0.24, n_time,
                                                             backend="fused"), repeat) / n_time
                    ms["fused_semi"] = best_time(lambda: run_loop(y0.clone(), src, valid, cv, ch, res, 0.24,
                                                                  backend="fused", schedule=semi), repeat) / n_time
            solver = DadaSolver(SolverConfig())
            solver.solve(smp.rgb, smp.source)
            cold = best_time(lambda: solver.solve(smp.rgb, smp.source), repeat)
            apps = solver.solve(smp.rgb, smp.source).stats.iterations
            torch_solver = DadaSolver(SolverConfig())
            import dada_ros.core.fused_cpu as fused_cpu

            keep = fused_cpu.HAVE_NUMBA
            fused_cpu.HAVE_NUMBA = False  # the same solve on the torch backend
            try:
                cold_torch = best_time(lambda: torch_solver.solve(smp.rgb, smp.source), 1)
            finally:
                fused_cpu.HAVE_NUMBA = keep
            eager8000 = 8000 * ms["eager"]
            fused8000 = 8000 * ms.get("fused", float("nan"))
            print(f"| {size[1]}x{size[0]} | x{scale} | {ms['eager'] * 1e3:.2f} | {ms['torch'] * 1e3:.2f} | "
                  f"{ms.get('fused', float('nan')) * 1e3:.3f} / {ms.get('fused_semi', float('nan')) * 1e3:.3f} | "
                  f"{apps} | {cold * 1e3:.1f} / {cold_torch * 1e3:.0f} | {eager8000:.1f} | {eager8000 / cold:.0f}x | "
                  f"{fused8000 / cold:.0f}x |", flush=True)


def sync(dev: torch.device) -> None:
    """Wait for the device (timings of asynchronous CUDA work must include it)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def copy_bandwidth(dev: torch.device, mib: int = 512, copies: int = 10, repeat: int = 3) -> float:
    """Measured device-to-device copy bandwidth in bytes/s (each copy reads and writes ``mib``):
    the practical peak a memory-bound kernel can reach on this device."""
    a = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=dev)
    b = torch.empty_like(a)
    b.copy_(a)
    sync(dev)

    def run():
        for _ in range(copies):
            b.copy_(a)
        sync(dev)

    return 2 * a.nbytes * copies / best_time(run, repeat)


def eager_bytes(B: int, H: int, W: int, h: int, w: int) -> float:
    """Bytes per iteration of :func:`eager_reference`, each op reading its inputs and writing its
    output once (P = one full-resolution pass): lam*cv, the difference and the product for each
    direction (2 x 8P), four pads and four adds (20P), avg-pool (1P), nearest up (1P), y*up (3P)."""
    P, p = 4 * B * H * W, 4 * B * h * w
    return 41 * P + 11 * p  # + the cell-sized ratio ops (eps, divide, where, up's read)


def torch_loop_bytes(B: int, H: int, W: int, h: int, w: int) -> float:
    """Bytes per iteration of run_loop's torch backend at an integer ratio, counted per op as in
    :func:`eager_bytes`: two differences and two in-place products (12P), four slice updates
    (12P), the reshape mean (1P), the broadcast in-place product (2P), the cell-sized ratio ops,
    plus 1/25 (the default check_every) of the check: the relative change's sub, abs, abs, +eps,
    div and max (13P) and the copy to y_prev (2P)."""
    P, p = 4 * B * H * W, 4 * B * h * w
    return 27 * P + 10 * p + (15 * P) / 25


def gpu_section(dev: torch.device, cases, repeat: int, n_time: int) -> None:
    """The CUDA table (see the module docstring); ``cases`` = [((H, W), batch)], at x4 and x8."""
    from dada_ros.core.triton_loop import HAVE_TRITON, triton_traffic

    peak = copy_bandwidth(dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    print(f"\nGPU: {name}, measured copy bandwidth {peak / 1e9:.0f} GB/s; triton "
          f"{'present' if HAVE_TRITON else 'absent'}; {n_time} iterations per run, best of {repeat}. "
          "Bytes = tensors each implementation reads and writes per iteration, once per op/kernel; "
          "a fraction above 1 means the working set stays in the L2 cache.")
    print("| guide | batch | scale | backend | ms/it | GB/s moved | fraction of copy bandwidth |")
    print("|---|---|---|---|---|---|---|")
    for (H, W), batch in cases:
        for scale in (4, 8):
            s = make_sample(seed=4242, scale=scale, size=(H, W))
            part = Partition((H, W), s.source.shape)
            res = Resampler(part, dev)
            h, w = s.source.shape
            src = torch.from_numpy(np.nan_to_num(s.source, nan=0.0))[None, None].to(dev).repeat(batch, 1, 1, 1)
            valid = src > 0
            rgb = torch.from_numpy(s.rgb.astype(np.float32) / 255).permute(2, 0, 1)[None].to(dev)
            y0 = res.up(torch.where(valid, src, src[valid].mean())).contiguous()
            cv, ch = coefficients_from_features(free_features(rgb, y0[:1]), 0.03)
            cv, ch = cv.repeat(batch, 1, 1, 1), ch.repeat(batch, 1, 1, 1)
            runs = {
                "eager (reference)": (lambda n: eager_reference(y0.clone(), src, valid, cv, ch, scale, 0.24, n),
                                      eager_bytes(batch, H, W, h, w)),
                "torch backend": (lambda n: run_loop(y0.clone(), src, valid, cv, ch, res, 0.24, n, backend="torch"),
                                  torch_loop_bytes(batch, H, W, h, w)),
            }
            if HAVE_TRITON:
                runs["triton backend"] = (
                    lambda n: run_loop(y0.clone(), src, valid, cv, ch, res, 0.24, n, backend="triton"),
                    triton_traffic(y0, src, valid, cv, ch, res))
            with torch.no_grad():
                for label, (fn, nbytes) in runs.items():
                    fn(5)  # allocator warm-up, Triton JIT compile
                    sync(dev)
                    t = best_time(lambda: (fn(n_time), sync(dev)), repeat) / n_time
                    print(f"| {W}x{H} | {batch} | x{scale} | {label} | {t * 1e3:.4f} | {nbytes / t / 1e9:.0f} | "
                          f"{nbytes / t / peak:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="640x480 only, 2 synthetic + 3 real scenes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scales", default="4,8,16,32", help="quality scales (speed: x4, x8, x16)")
    ap.add_argument("--iterations", type=int, default=200, help="steps per ms/step timing run")
    ap.add_argument("--cuda-iterations", type=int, default=2000, help="iterations per GPU timing run")
    ap.add_argument("--only", choices=("quality", "speed"), help="one table only")
    ap.add_argument("--schedule-sweep", metavar="OUT.json", help="table 3 (slow) instead of 1 and 2")
    ap.add_argument("--summarise", metavar="SWEEP.json", help="print table 3's summary of a saved sweep")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch AND numba (default: their own defaults)")
    args = ap.parse_args()
    if args.threads:
        set_cpu_threads(args.threads)
    scales = [int(s) for s in args.scales.split(",")]
    if args.summarise:
        with open(args.summarise) as fh:
            summarise_sweep(json.load(fh))
        return
    if args.schedule_sweep:
        schedule_sweep(args.schedule_sweep, scales, args.quick)
        return
    print(f"CPU: torch {torch.get_num_threads()} threads, numba {'%d threads' % numba_threads() if HAVE_NUMBA else 'absent'}")
    if args.only in (None, "speed"):
        sizes = [(480, 640)] if args.quick else [(480, 640), (720, 1280)]
        speed_table(sizes, [4, 8, 16], args.repeat, args.iterations)
    if args.only in (None, "quality"):
        quality_table(scales, args.quick)
    if torch.cuda.is_available():
        gpu_section(torch.device("cuda"), [((480, 640), 1), ((720, 1280), 1), ((720, 1280), 8)], args.repeat,
                    args.cuda_iterations)


if __name__ == "__main__":
    main()
