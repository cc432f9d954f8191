"""Data-parallel training across processes (``torchrun``): the world, the sharding, the reductions.

``torchrun --nproc_per_node N -m dada_ros.cli.train ...`` starts N copies of ``dada-train`` with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment;
:func:`session` sees them and joins the process group. A plain ``dada-train`` sees none of them and
gets :data:`SINGLE`, whose every method is the identity: the single-process trainer runs exactly
the code it ran before this module existed (same checkpoints, same figures).

The rules, chosen so that N processes compute what one process computes, only faster:

* **Global batch.** ``--batch`` stays the GLOBAL batch: each rank trains ``batch / N`` of it
  (uneven splits allowed, every rank needs at least one crop). The learning rate and every other
  setting keep their meaning, and the loss curve is the single process's within float rounding
  (tested). To spend N times the compute per step instead, raise ``--batch`` N-fold yourself; the
  usual starting point is then the linear scaling rule (lr x N, with a warm-up) -- not measured here.
* **Sampling (DistributedSampler-style).** Like :class:`torch.utils.data.DistributedSampler`, every
  rank draws the SAME global batch from the same seeded stream and keeps its interleaved share
  (examples ``rank, rank + N, ...``): no two ranks train on the same crop, the random stream
  (crops, ToF noise, N_pre, hard-example replay) is the single process's, and a checkpoint
  resumes under any world size. Each rank cuts all the batch's crops (12 ms for the default batch
  of six, ~2% of a default step, measured on a loaded 2-core machine) and solves only its own.
* **Loss.** The loss is the masked mean over the valid pixels of the GLOBAL batch: each rank's
  share of the pixel sum is divided by the global count (one all-reduce) and multiplied by N,
  because DistributedDataParallel averages gradients over ranks.
* **Batch norm.** Statistics over the global batch, so BN sees what it sees in one process:
  :class:`torch.nn.SyncBatchNorm` on CUDA; on the CPU, where SyncBatchNorm refuses to run,
  :class:`CrossRankBatchNorm2d` (global mean, then global variance, through autograd-aware
  all-reduces). Running statistics are therefore identical on every rank. The price: two small
  all-reduces per BN layer forward and two backward (the lite U-Net has 13 BN layers: ~52 per step,
  plus DDP's gradient bucket and the loss), which is latency-bound on a CPU shared with other work.
  ``--dist-bn local`` is the other documented choice: each rank normalises with its own share's
  statistics (DDP's plain behaviour; no BN collectives, running statistics broadcast from rank 0),
  and the loss curve then differs from the single process's (BN sees batch / N crops).
* **Writing.** Rank 0 alone writes checkpoints, ``log.csv``, ``curve.png``, runs validation and
  shows progress; every rank reads ``OUT/last.pt`` to resume (OUT must be visible to every node).
* **Agreement.** Before the first step every rank all-gathers a hash of its config and its start
  step; a mismatch (another ``--lr`` on one node, a node that cannot see ``last.pt``) is one clear
  :class:`~dada_ros.core.errors.DadaInputError` on every rank naming the differing fields.
* **Backend.** ``gloo`` for CPU training, ``nccl`` for CUDA (one GPU per rank, ``cuda:LOCAL_RANK``);
  ``--dist-backend`` overrides.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..core.errors import DadaInputError

BACKENDS = ("auto", "gloo", "nccl")
BATCH_NORMS = ("sync", "local")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Rank 0 validates while the others wait in their next collective: the timeout must outlast the
# longest validation (whole scenes through the solver can take minutes), not just a training step.
DEFAULT_TIMEOUT_MIN = 60.0


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` (``local_rank`` on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None
    sync_bn: bool = True  # batch-norm statistics over the global batch (False: each rank's own share)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1 or self.backend is not None

    # ---------------------------------------------------------------- devices
    def device(self, device: torch.device) -> torch.device:
        """The rank's own device: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per rank)."""
        if not self.distributed or device.type != "cuda":
            return device
        if device.index is not None and device.index != self.local_rank:
            raise DadaInputError(f"rank {self.rank} asked for {device}; under torchrun each rank uses "
                                 f"cuda:LOCAL_RANK (--device cuda or auto)")
        return torch.device("cuda", self.local_rank)

    # ---------------------------------------------------------------- model
    def wrap(self, net: nn.Module, device: torch.device) -> nn.Module:
        """``net`` inside DistributedDataParallel, its batch norm synchronised across ranks
        (unless ``sync_bn`` is off); ``net`` itself when there is one process. The returned object is what the training
        forward calls; ``net`` (same parameters) is what gets saved and validated."""
        if not self.distributed:
            return net
        if not self.sync_bn:
            ddp = nn.parallel.DistributedDataParallel(
                net, **({"device_ids": [device.index], "output_device": device.index} if device.type == "cuda" else {}))
        elif device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            ddp = nn.parallel.DistributedDataParallel(net, device_ids=[device.index], output_device=device.index)
        else:
            convert_cross_rank_batchnorm(net)
            ddp = nn.parallel.DistributedDataParallel(net)
        return _GuideDDP(ddp)

    # ---------------------------------------------------------------- data
    def share(self, size: int) -> list[int]:
        """The indices of a global batch of ``size`` this rank trains on."""
        return list(range(self.rank, size, self.size))

    def shard(self, batch):
        """This rank's share of a :class:`~dada_ros.learned.datasets.base.Batch` (all of it alone)."""
        if not self.distributed:
            return batch
        idx = torch.tensor(self.share(batch.rgb.shape[0]))
        fields = {k: getattr(batch, k).index_select(0, idx) for k in ("rgb", "gt", "gt_valid", "source", "valid", "y0")}
        return type(batch)(scale=batch.scale, **fields)

    def global_loss(self, error: torch.Tensor, valid: torch.Tensor, per_example: torch.Tensor,
                    global_batch: int) -> tuple[torch.Tensor, float, list[float]]:
        """The masked mean over the global batch from this rank's per-pixel ``error`` (zero where
        invalid) and ``valid`` mask; its per-example losses gathered in global batch order.

        Returns (loss to back-propagate: this rank's pixel sum x N / global count, so that DDP's
        gradient average is the global mean's gradient; the global loss value; the per-example
        losses of the whole batch, for the hard-example pool every rank keeps identically).
        """
        num = error.sum()
        packed = torch.zeros(2 + global_batch, dtype=torch.float64, device=error.device)
        packed[0] = num.detach().double()
        packed[1] = valid.sum().double()
        packed[2 + torch.tensor(self.share(global_batch), device=error.device)] = per_example.double()
        dist.all_reduce(packed)
        count = packed[1].clamp_min(1)
        loss = num * (self.size / count).to(num.dtype)
        return loss, float(packed[0] / count), packed[2:].tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on one (e.g. a time limit reached)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def check_agreement(self, config: dict, start_step: int, global_batch: int) -> None:
        """Refuse to train when ranks disagree on the config or on the step they start from, or
        when the global batch leaves a rank without a crop."""
        if not self.distributed:
            return
        # The process group's own settings too: ranks on different backends or batch-norm modes
        # would hang in mismatched collectives rather than fail.
        config = dict(config, dist_backend=self.backend, dist_bn="sync" if self.sync_bn else "local")
        mine = {"hash": config_hash(config), "step": int(start_step), "config": config}
        every: list = [None] * self.size
        dist.all_gather_object(every, mine)
        problem = disagreement(every)
        if problem:
            raise DadaInputError(problem)
        if global_batch < self.size:  # after the check, so that every rank raises it
            raise DadaInputError(f"--batch {global_batch} is the global batch and must give each of the "
                                 f"{self.size} ranks at least one crop")

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


SINGLE = World()


def config_hash(config: dict) -> str:
    """sha256 of the config as canonical JSON (what :meth:`World.check_agreement` compares)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def disagreement(every: Sequence[dict]) -> str | None:
    """Why the ranks' ``{"hash", "step", "config"}`` records disagree (None: they agree)."""
    ref = every[0]
    for rank, rec in enumerate(every[1:], start=1):
        if rec["hash"] != ref["hash"]:
            keys = sorted(set(ref["config"]) | set(rec["config"]))
            diff = [f"{k} ({ref['config'].get(k)!r} vs {rec['config'].get(k)!r})"
                    for k in keys if ref["config"].get(k) != rec["config"].get(k)]
            return (f"ranks disagree on the training config: rank {rank} differs from rank 0 in "
                    + ", ".join(diff[:8]) + ("" if len(diff) <= 8 else f" and {len(diff) - 8} more")
                    + "; start every rank with the same arguments")
        if rec["step"] != ref["step"]:
            return (f"ranks disagree on where to start: rank 0 at step {ref['step']}, rank {rank} at step "
                    f"{rec['step']} (OUT/last.pt must be on a filesystem every node sees)")
    return None


# -------------------------------------------------------------------- environment
def torchrun_env(environ: dict | None = None) -> dict[str, int] | None:
    """(rank, world size, local rank) from torchrun's variables; None outside torchrun. A partial
    set (RANK without WORLD_SIZE, ...) is an error rather than a silent single process."""
    env = os.environ if environ is None else environ
    present = [v for v in ("RANK", "WORLD_SIZE") if v in env]
    if not present:
        return None
    missing = [v for v in TORCHRUN_VARS if v not in env and v != "LOCAL_RANK"]
    if missing:
        raise DadaInputError(f"distributed environment incomplete: {', '.join(missing)} not set "
                             "(start with torchrun, or unset RANK/WORLD_SIZE for one process)")
    try:
        rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise DadaInputError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {exc}") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise DadaInputError(f"bad distributed environment: RANK {rank}, WORLD_SIZE {size}, LOCAL_RANK {local}")
    return {"rank": rank, "size": size, "local_rank": local}


def choose_backend(requested: str, device: str) -> str:
    """``auto``: nccl when training on CUDA (``device`` cuda, or auto with a GPU), else gloo."""
    if requested not in BACKENDS:
        raise DadaInputError(f"unknown distributed backend {requested!r}; expected one of {', '.join(BACKENDS)}")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if requested == "auto":
        return "nccl" if cuda else "gloo"
    if requested == "nccl" and not cuda:
        raise DadaInputError("backend nccl needs CUDA training (--device cuda); use gloo on the CPU")
    return requested


@contextmanager
def session(backend: str = "auto", device: str = "auto", timeout_min: float = DEFAULT_TIMEOUT_MIN,
            environ: dict | None = None, batch_norm: str = "sync") -> Iterator[World]:
    """The process group of this torchrun rank (joined on entry, left on exit), or :data:`SINGLE`
    outside torchrun (nothing is initialised). ``batch_norm``: sync | local (see the module doc)."""
    if batch_norm not in BATCH_NORMS:
        raise DadaInputError(f"batch norm must be one of {BATCH_NORMS}, got {batch_norm!r}")
    env = torchrun_env(environ)
    if env is None:
        yield SINGLE
        return
    name = choose_backend(backend, device)
    if name == "nccl":
        torch.cuda.set_device(env["local_rank"])
    dist.init_process_group(name, rank=env["rank"], world_size=env["size"],
                            timeout=datetime.timedelta(minutes=timeout_min))
    try:
        yield World(env["rank"], env["size"], env["local_rank"], name, sync_bn=batch_norm == "sync")
    finally:
        dist.destroy_process_group()


# -------------------------------------------------------------------- modules
class _GuideDDP(nn.Module):
    """DistributedDataParallel around a GuideNet, keeping ``coefficients`` reachable: the unrolled
    solve calls ``net(rgb, y0, ratio)`` (the DDP forward) and ``net.coefficients(features)``."""

    def __init__(self, ddp: nn.parallel.DistributedDataParallel):
        super().__init__()
        self.ddp = ddp

    def forward(self, *args, **kwargs):
        return self.ddp(*args, **kwargs)

    def coefficients(self, features: torch.Tensor):
        return self.ddp.module.coefficients(features)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks with a gradient: the backward of a sum every rank uses is the sum of the
    ranks' gradients. (torch.distributed.nn's version is deprecated; the functional collectives
    that replace it are private API.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``x`` over all ranks."""
    return _AllReduceSum.apply(x)


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch across all ranks (CPU /
    gloo; :class:`torch.nn.SyncBatchNorm` only runs on accelerators). Two all-reduces per call --
    the mean first, then the centred sum of squares (stable, unlike E[x^2] - E[x]^2) -- both
    through :func:`all_reduce_sum`, whose backward all-reduces the gradients. Outside training
    or outside a process group it is a plain BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        C = x.shape[1]
        local_n = x.numel() // C
        sums = all_reduce_sum(torch.cat([x.sum(dim=(0, 2, 3)), x.new_tensor([float(local_n)])]))
        n = sums[C]
        mean = sums[:C] / n
        centred = x - mean.view(1, C, 1, 1)
        var = all_reduce_sum((centred * centred).sum(dim=(0, 2, 3))) / n
        y = centred * torch.rsqrt(var + self.eps).view(1, C, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, C, 1, 1) + self.bias.view(1, C, 1, 1)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                count = float(n)
                unbiased = var.detach() * (count / (count - 1)) if count > 1 else var.detach()
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(unbiased, alpha=f)
        return y


def convert_cross_rank_batchnorm(module: nn.Module) -> int:
    """Replace every ``nn.BatchNorm2d`` under ``module`` in place by :class:`CrossRankBatchNorm2d`,
    sharing its parameters and buffers (an optimizer built before keeps working). Returns the count."""
    count = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = CrossRankBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            if child.track_running_stats:
                new.running_mean, new.running_var = child.running_mean, child.running_var
                new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
            count += 1
        else:
            count += convert_cross_rank_batchnorm(child)
    return count


__all__ = ["World", "SINGLE", "session", "torchrun_env", "choose_backend", "config_hash", "disagreement",
           "CrossRankBatchNorm2d", "convert_cross_rank_batchnorm", "BACKENDS", "BATCH_NORMS"]
