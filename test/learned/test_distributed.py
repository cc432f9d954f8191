"""Data-parallel training (dada_ros.learned.distributed): the world from torchrun's environment,
the sharding, and two real gloo processes on tiny procedural crops against one process."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dada_ros.core.errors import DadaInputError
from dada_ros.learned import distributed as D
from dada_ros.learned.datasets.base import collate, make_example
from dada_ros.learned.model import GuideNet, load_checkpoint
from dada_ros.learned.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[2]
# torchrun is torch.distributed.run's console script; the module itself where the script is elsewhere.
_SCRIPT = Path(sys.executable).with_name("torchrun")
TORCHRUN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "torch.distributed.run"]
# Tiny run: 4 crops of 32^2 (global batch), x4 and x8, 8 + 3 unrolled steps; validation at 2 and 4.
TINY = dict(train_scenes=3, render_sizes=[[48, 48]], crop=32, val_crop=32, val_scenes=1, scales=[4, 8],
            batch=4, n_pre=8, n_grad=3, val_every=2, ckpt_every=2, hard_prob=0.5, hard_pool=8, tof_prob=0.5)
TINY_LR = TrainConfig().lr


def _args(out: Path, cache: Path, steps: int, **over) -> list[str]:
    cfg = dict(TINY, **over)
    args = ["--out", str(out), "--cache-dir", str(cache), "--steps", str(steps), "--quiet", "--no-resume"]
    for k, v in cfg.items():
        flag = "--" + k.replace("_", "-")
        if k == "render_sizes":
            args += [flag] + ["x".join(map(str, s)) for s in v]
        elif isinstance(v, list):
            args += [flag] + [str(x) for x in v]
        else:
            args += [flag, str(v)]
    return args


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for v in D.TORCHRUN_VARS:
        env.pop(v, None)
    env.update(extra)
    return env


def _losses(out: Path) -> tuple[list[int], np.ndarray, list[str]]:
    rows = list(csv.DictReader(open(out / "log.csv")))
    return [int(r["step"]) for r in rows], np.array([float(r["loss"]) for r in rows]), [r["val_loss"] for r in rows]


# ---------------------------------------------------------------------- without processes
def test_environment_detection():
    assert D.torchrun_env({}) is None
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert D.torchrun_env(env) == {"rank": 1, "size": 2, "local_rank": 1}
    with pytest.raises(DadaInputError, match="MASTER_ADDR"):
        D.torchrun_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(DadaInputError, match="bad distributed environment"):
        D.torchrun_env(dict(env, RANK="2"))
    with pytest.raises(DadaInputError, match="integers"):
        D.torchrun_env(dict(env, WORLD_SIZE="two"))
    with D.session(environ={}) as world:  # outside torchrun: nothing is initialised
        assert world is D.SINGLE and not torch.distributed.is_initialized()
    with pytest.raises(DadaInputError, match="batch norm must be one of"):
        with D.session(environ={}, batch_norm="group"):
            pass


def test_backend_choice():
    assert D.choose_backend("auto", "cpu") == "gloo"
    assert D.choose_backend("gloo", "cpu") == "gloo"
    if not torch.cuda.is_available():
        assert D.choose_backend("auto", "auto") == "gloo"
        with pytest.raises(DadaInputError, match="nccl needs CUDA"):
            D.choose_backend("nccl", "cpu")
    else:
        assert D.choose_backend("auto", "cuda") == "nccl"
    with pytest.raises(DadaInputError, match="unknown distributed backend"):
        D.choose_backend("mpi", "cpu")


def test_shares_partition_the_batch_and_single_is_identity(sample_x8):
    for size in (1, 2, 3):
        for batch in range(size, 8):
            shares = [D.World(r, size, r, "gloo").share(batch) for r in range(size)]
            assert sorted(i for s in shares for i in s) == list(range(batch))
    b = collate([make_example(sample_x8.rgb[:32, :32], sample_x8.gt[:32, :32] + k, 8) for k in range(3)])
    part = D.World(1, 2, 1, "gloo").shard(b)
    assert torch.equal(part.gt, b.gt[1:2]) and part.scale == b.scale and part.y0.shape[0] == 1
    assert D.SINGLE.shard(b) is b
    net = GuideNet()
    assert D.SINGLE.wrap(net, torch.device("cpu")) is net
    assert D.SINGLE.device(torch.device("cpu")) == torch.device("cpu")


def test_disagreement_names_the_fields():
    a = {"lr": 1e-3, "batch": 4}
    rec = [{"hash": D.config_hash(a), "step": 0, "config": a}]
    assert D.disagreement(rec * 2) is None
    b = dict(a, lr=2e-3)
    msg = D.disagreement(rec + [{"hash": D.config_hash(b), "step": 0, "config": b}])
    assert "rank 1 differs from rank 0" in msg and "lr (0.001 vs 0.002)" in msg and "batch" not in msg
    msg = D.disagreement(rec + [{"hash": D.config_hash(a), "step": 6, "config": a}])
    assert "rank 0 at step 0, rank 1 at step 6" in msg


def test_batchnorm_conversion_shares_parameters():
    net = GuideNet()
    params = {id(p) for p in net.parameters()}
    n = D.convert_cross_rank_batchnorm(net)
    assert n > 0 and {id(p) for p in net.parameters()} == params
    assert not any(type(m) is torch.nn.BatchNorm2d for m in net.modules())
    x = torch.rand(2, 3, 32, 32)
    # Outside a process group it is exactly BatchNorm2d.
    ref = GuideNet()
    ref.load_state_dict(net.state_dict())
    assert torch.equal(net.train()(x, 1 + x[:, :1]), ref.train()(x, 1 + x[:, :1]))


# ---------------------------------------------------------------------- two gloo processes
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny training in one plain process (this one) and under ``torchrun
    --nproc_per_node 2``; at the same time (process starts are seconds on two shared cores) two
    ranks started by hand with torchrun's variables and a --lr of their own."""
    base = tmp_path_factory.mktemp("dist")
    cache = base / "cache"
    one, two = base / "one", base / "two"
    logs = {k: open(base / f"{k}.log", "w") for k in ("torchrun", "rank0", "rank1")}
    procs = {"torchrun": subprocess.Popen(
        # --time-limit far away: the ranks' agreement on stopping (an all-reduce per step) runs, never fires.
        [*TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "dada_ros.cli.train", *_args(two, cache, 4),
         "--time-limit", "100"],
        cwd=ROOT, env=_env(), stdout=logs["torchrun"], stderr=subprocess.STDOUT)}
    port = str(_free_port())
    for rank in (0, 1):
        env = _env(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs[f"rank{rank}"] = subprocess.Popen(
            [sys.executable, "-m", "dada_ros.cli.train", *_args(base / "mismatch", cache, 2, lr=0.001 * (1 + rank))],
            cwd=ROOT, env=env, stdout=logs[f"rank{rank}"], stderr=subprocess.STDOUT)
    try:
        Trainer(TrainConfig(steps=4, out_dir=str(one), cache_dir=str(cache), **TINY), resume=False,
                progress=False).run()
        for p in procs.values():
            p.wait(timeout=240)
    finally:
        for p in procs.values():
            if p.poll() is None:  # a hung rank must not outlive the test
                p.kill()
        for fh in logs.values():
            fh.close()
    out = {k: (p.returncode, (base / f"{k}.log").read_text()) for k, p in procs.items()}
    assert out["torchrun"][0] == 0, out["torchrun"][1][-3000:]
    return one, two, cache, out, base


def test_two_processes_follow_the_single_process_loss_curve(runs):
    one, two, _, out, _ = runs
    log = out["torchrun"][1]
    s1, l1, v1 = _losses(one)
    s2, l2, v2 = _losses(two)
    assert s1 == s2 == [0, 1, 2, 3, 4]  # rank 0 alone logged: every step once
    np.testing.assert_allclose(l2, l1, rtol=3e-6)  # measured ~1e-7; without BN sync 5e-5
    np.testing.assert_allclose([float(v) for v in v2 if v], [float(v) for v in v1 if v], rtol=3e-6)
    assert '"world_size": 2' in log and log.count('"steps": 4') == 1  # rank 0 alone printed the summary
    # One set of files (rank 0's), no leftovers of a second writer.
    assert sorted(p.name for p in two.iterdir()) == ["best.pt", "curve.png", "last.pt", "log.csv"]
    net1, _, d1 = load_checkpoint(one / "last.pt")
    net2, meta2, d2 = load_checkpoint(two / "last.pt")
    # Adam's first steps move each weight by about lr x sign(gradient), so a gradient within float
    # rounding of zero can move one weight by up to lr either way: compare within one lr.
    for (k, a), b in zip(net1.state_dict().items(), net2.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=TINY_LR, msg=k)  # BN running stats included
    assert d2["resume"]["step"] == 4 and d2["resume"]["numpy_rng"] == d1["resume"]["numpy_rng"]
    # The hard pool is fed the whole batch's per-example losses in global order: same crops, same losses.
    p1, p2 = json.loads(d1["resume"]["hard_pool"]), json.loads(d2["resume"]["hard_pool"])
    assert p1.keys() == p2.keys() and any(p1.values())
    for s in p1:
        assert [k for _, k in p1[s]] == [k for _, k in p2[s]]
        np.testing.assert_allclose([v for v, _ in p2[s]], [v for v, _ in p1[s]], rtol=1e-5)


def test_single_process_resumes_a_two_process_checkpoint(runs):
    one, two, cache, _, _ = runs
    for out in (one, two):
        t = Trainer(TrainConfig(steps=6, out_dir=str(out), cache_dir=str(cache), **TINY), resume=True, progress=False)
        assert t.step == 4
        t.run()
    s1, l1, _ = _losses(one)
    s2, l2, _ = _losses(two)
    assert s1 == s2 == list(range(7))
    np.testing.assert_allclose(l2, l1, rtol=2e-5)


def test_ranks_that_disagree_fail_cleanly(runs):
    *_, out, base = runs
    msg = "dada-train: error: ranks disagree on the training config: rank 1 differs from rank 0 in lr (0.001 vs 0.002)"
    for rank in ("rank0", "rank1"):
        rc, log = out[rank]
        assert rc == 2 and msg in log and "Traceback" not in log, log[-2000:]
    assert not (base / "mismatch" / "last.pt").exists()
