"""Per-frame scores and the metrics file, written as the replay goes (nothing is lost on a crash).

``DIR/frames.jsonl`` gets one line per frame as soon as it is scored; ``DIR/metrics.json`` is
rewritten atomically (temp file + rename) at most once a second and at the end. Its ``summary``
is keyed by method name; per method:

``frames_in`` frames offered, ``frames_out`` outputs produced, ``frames_failed``,
``frames_dropped`` (``--realtime``: published, but the live node never answered),
``frames_scored`` (with ground truth), ``mse_cm2`` / ``mae_cm`` (mean over scored frames of the
per-frame value, as the paper averages per image), ``rmse_cm`` (sqrt of ``mse_cm2``),
``coverage`` (mean fraction of valid ground truth that got an estimate), ``consistency_max`` /
``consistency_median`` (relative max |down(Y) - S| / S), ``mean_iterations`` (plus
``mean_iterations_warm`` / ``_cold`` split by how each frame actually started), ``mean_ms`` /
``median_ms`` / ``p95_ms`` (wall time of the method call), ``mean_flow_ms``, ``init_modes``,
``cold_reasons``, ``errors``.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic_file import atomic_path
from ..core.errors import DadaInputError
from ..core.metrics import consistency_error, depth_errors


def score_frame(pred: np.ndarray, gt: np.ndarray | None, source: np.ndarray) -> dict:
    """Errors of ``pred`` against ``gt`` (metres, same grid) and its consistency with ``source``."""
    out: dict[str, Any] = {}
    if gt is not None:
        try:
            out.update(depth_errors(pred, gt).as_dict())
        except ValueError as exc:  # no valid ground truth pixel / shape mismatch
            out["score_error"] = str(exc)
    try:
        out["consistency"] = consistency_error(pred, source)
    except Exception as exc:  # noqa: BLE001 - a metric must never stop the replay
        out["consistency"] = float("nan")
        out["score_error"] = f"consistency: {exc}"
    return out


# Per-frame stats worth keeping from the solver / pipeline (the rest is noise in the file).
_KEEP = ("iterations", "residual", "converged", "init_mode", "cold_reason", "flow_ms", "mean_flow_px", "flow_tier",
         "warm_depth_feature",
         "warm_valid_fraction", "photometric_error", "init_ratio_error", "filled_fraction", "seconds", "loop_seconds", "guard",
         "prepare_overlapped", "prepare_wait_ms")


def frame_record(stats: dict, scores: dict) -> dict:
    """The per-method entry of one frame in metrics.json."""
    rec = {k: stats[k] for k in _KEEP if k in stats}
    rec["ms"] = stats.get("ms", float("nan"))
    rec.update(scores)
    return rec


def _finite(values: list[float]) -> list[float]:
    return [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def _mean(values: list[float]) -> float:
    v = _finite(values)
    return float(np.mean(v)) if v else float("nan")


def summarize(method: str, frames: list[dict]) -> dict:
    """Summary of one method over the per-frame entries (``frames[i]["methods"][method]``)."""
    recs = [f["methods"][method] for f in frames if method in f.get("methods", {})]
    ran = [r for r in recs if not r.get("skipped")]
    dropped = [r for r in ran if r.get("dropped")]
    ok = [r for r in ran if "error" not in r and not r.get("dropped")]
    scored = [r for r in ok if "mse_cm2" in r and math.isfinite(r.get("mse_cm2", float("nan")))]
    ms = _finite([r.get("ms") for r in ok])
    mse = _mean([r["mse_cm2"] for r in scored])
    warm = [r for r in ok if r.get("init_mode") in ("flow", "naive")]
    cold = [r for r in ok if r.get("init_mode", "cold") == "cold" and "iterations" in r]
    errors = Counter(r["error"] for r in ran if "error" in r)
    cons = _finite([r.get("consistency") for r in ok])
    return {
        "frames_in": len(ran),
        "frames_out": len(ok),
        "frames_failed": len(ran) - len(ok) - len(dropped),
        "frames_dropped": len(dropped),
        "frames_skipped": len(recs) - len(ran),
        "frames_scored": len(scored),
        "mse_cm2": mse,
        "mae_cm": _mean([r["mae_cm"] for r in scored]),
        "rmse_cm": math.sqrt(mse) if math.isfinite(mse) else float("nan"),
        "coverage": _mean([r.get("coverage") for r in scored]),
        "consistency_max": max(cons) if cons else float("nan"),
        "consistency_median": float(np.median(cons)) if cons else float("nan"),
        "mean_iterations": _mean([r.get("iterations") for r in ok]),
        "mean_iterations_warm": _mean([r.get("iterations") for r in warm]),
        "mean_iterations_cold": _mean([r.get("iterations") for r in cold]),
        "mean_ms": float(np.mean(ms)) if ms else float("nan"),
        "median_ms": float(np.median(ms)) if ms else float("nan"),
        "p95_ms": float(np.percentile(ms, 95)) if ms else float("nan"),
        "mean_flow_ms": _mean([r.get("flow_ms") for r in warm]),
        "init_modes": dict(Counter(r["init_mode"] for r in ok if "init_mode" in r)),
        "cold_reasons": dict(Counter(r["cold_reason"] for r in ok if r.get("cold_reason"))),
        # method dada behind the learned guard: which method ran the frames, how many were checked
        "guard_picks": dict(Counter(r["guard"]["pick"] for r in ok if r.get("guard"))),
        "guard_checks": sum(1 for r in ok if (r.get("guard") or {}).get("checked")),
        "errors": dict(errors),
    }


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _clean(o: Any) -> Any:
    """NaN / inf -> None so metrics.json is strict JSON (readable by any parser)."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


class MetricsLog:
    """Accumulates frames and writes ``metrics.json`` / ``frames.jsonl`` under ``out_dir``."""

    def __init__(self, out_dir: Path, header: dict, methods: list[str], min_interval_s: float = 1.0):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / "metrics.json"
        self.data: dict[str, Any] = dict(header)
        self.data.setdefault("status", "running")
        self.data.setdefault("notes", [])
        self.data["summary"] = {}
        self.data["frames"] = []
        self.methods = list(methods)
        self.min_interval_s = min_interval_s
        self._last_write = 0.0
        try:
            self._jsonl = open(self.out_dir / "frames.jsonl", "w")
        except OSError as exc:
            raise DadaInputError(f"output folder {self.out_dir} is not writable: {exc.strerror or exc}") from exc
        self.write(force=True)

    @property
    def frames(self) -> list[dict]:
        return self.data["frames"]

    def note(self, text: str) -> None:
        if text not in self.data["notes"]:
            self.data["notes"].append(text)

    def add_frame(self, entry: dict) -> None:
        """Append one frame (``{"index", "stamp", "methods": {key: record}}``) and persist it."""
        self.data["frames"].append(entry)
        self._jsonl.write(json.dumps(_clean(entry), default=_json_default) + "\n")
        self._jsonl.flush()
        self.write()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)

    def summary(self) -> dict:
        return {m: summarize(m, self.frames) for m in self.methods}

    def write(self, force: bool = False) -> None:
        """Rewrite metrics.json (throttled unless ``force``), atomically."""
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval_s:
            return
        self.data["summary"] = self.summary()
        with atomic_path(self.path) as tmp, open(tmp, "w") as fh:
            json.dump(_clean(self.data), fh, indent=1, default=_json_default)
        self._last_write = now

    def close(self, status: str) -> None:
        self.data["status"] = status
        self.write(force=True)
        self._jsonl.close()
