"""Training loop (checkpoints, resume, logs) and the dada-train / dada-eval / dada-upsample CLIs,
on tiny generated scenes."""

import csv
import json

import numpy as np
import pytest

from dada_ros.cli import eval as eval_cli
from dada_ros.cli import train as train_cli
from dada_ros.core.errors import DadaInputError
from dada_ros.learned.evaluate import evaluate, format_table, generated_scenes
from dada_ros.learned.model import load_checkpoint
from dada_ros.learned.train import TrainConfig, Trainer

TINY = dict(train_scenes=3, render_sizes=[[48, 48]], crop=32, val_crop=32, val_scenes=2, scales=[4, 8],
            batch=2, n_pre=8, n_grad=3, val_every=2, ckpt_every=2, lr=1e-3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    cfg = TrainConfig(steps=3, out_dir=str(out), cache_dir=str(cache), **TINY)
    summary = Trainer(cfg, resume=False, progress=False).run()
    return out, cache, summary


def _rows(out):
    return list(csv.DictReader(open(out / "log.csv")))


def test_training_writes_checkpoints_logs_and_curve(trained):
    out, _, summary = trained
    assert summary["steps"] == 3 and summary["stopped"] == "steps"
    assert (out / "curve.png").stat().st_size > 1000
    rows = _rows(out)
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert rows[2]["val_loss"] != "" and rows[1]["val_loss"] == ""
    net, meta, data = load_checkpoint(out / "best.pt")
    assert meta["train_config"]["crop"] == 32 and "val_free" in meta and "resume" not in data
    assert net.config.train_scales == [4, 8]
    _, _, last = load_checkpoint(out / "last.pt")
    assert last["resume"]["step"] == 3


def test_resume_continues_from_last(trained):
    out, cache, _ = trained
    cfg = TrainConfig(steps=5, out_dir=str(out), cache_dir=str(cache), **TINY)
    t = Trainer(cfg, resume=True, progress=False)
    assert t.step == 3
    summary = t.run()
    assert summary["steps"] == 5
    assert [int(r["step"]) for r in _rows(out)] == [0, 1, 2, 3, 4, 5]


def test_a_step_with_a_non_finite_gradient_is_skipped_not_applied(trained, tmp_path, monkeypatch, capsys):
    """A crop whose weighted solve runs away gives a finite loss and an infinite gradient: that step
    is skipped (the weights are not touched, the count is in the summary, the checkpoint and the
    resume state) and training goes on; 20 in a row stop it with the last good state named."""
    _, cache, _ = trained
    import torch

    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def inf_on_second(params, max_norm, *a, **k):
        calls["n"] += 1
        params = list(params)
        out = real(params, max_norm, *a, **k)
        return torch.tensor(float("inf")) if calls["n"] == 2 else out

    cfg = TrainConfig(steps=3, out_dir=str(tmp_path / "a"), cache_dir=str(cache), **TINY)
    t = Trainer(cfg, resume=False, progress=False)
    seen = []
    real_step = t.opt.step
    monkeypatch.setattr(t.opt, "step", lambda *a, **k: (seen.append(1), real_step(*a, **k))[1])
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", inf_on_second)
    summary = t.run()
    assert summary["steps"] == 3 and summary["skipped_steps"] == 1 and len(seen) == 2
    assert "step skipped (1 so far)" in capsys.readouterr().out
    _, meta, data = load_checkpoint(tmp_path / "a" / "last.pt")
    assert meta["skipped_steps"] == 1 and data["resume"]["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in t.net.parameters())
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(float("nan")))
    cfg = TrainConfig(steps=25, out_dir=str(tmp_path / "b"), cache_dir=str(cache), **TINY)
    with pytest.raises(RuntimeError, match="20 steps in a row"):
        Trainer(cfg, resume=False, progress=False).run()


def test_resume_with_other_model_refused(trained, tmp_path):
    out, cache, _ = trained
    import shutil

    shutil.copy(out / "last.pt", tmp_path / "last.pt")
    cfg = TrainConfig(steps=5, out_dir=str(tmp_path), cache_dir=str(cache), channels=12, **TINY)
    from dada_ros.core.errors import DadaInputError

    with pytest.raises(DadaInputError, match="different model config"):
        Trainer(cfg, resume=True, progress=False)


def test_train_cli_and_bad_args(tmp_path, capsys):
    args = ["--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "--steps", "1", "--train-scenes", "2",
            "--render-sizes", "32x32", "--crop", "16", "--val-crop", "16", "--val-scenes", "1", "--scales", "4",
            "--batch", "2", "--n-pre", "2", "--n-grad", "2", "--quiet"]
    assert train_cli.main(args) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["steps"] == 1
    assert (tmp_path / "o" / "best.pt").exists()
    from dada_ros.cli.common import run_cli

    assert run_cli("dada-train", train_cli.main, args[:4] + ["--crop", "30"]) == 2
    assert "must be >= 2 and divide crop" in capsys.readouterr().err
    assert run_cli("dada-train", train_cli.main, args[:4] + ["--batch", "1", "--crop", "32"]) == 2
    assert "batch norm" in capsys.readouterr().err


def test_evaluate_and_eval_cli(trained, tmp_path, capsys):
    out, _, _ = trained
    report = evaluate(generated_scenes([0], (32, 32)), [4, 8], ["bicubic", "dada-free", "dada"], None,
                      weights=str(out / "best.pt"))
    res = report["results"]
    assert report["tiles"] == 1 and set(res) == {"bicubic", "dada-free", "dada"}
    assert all(np.isfinite(res[m][s]["mse_cm2"]) for m in res for s in (4, 8))
    table = format_table(report)
    assert "| dada / dada-free (MSE) |" in table and "| bicubic |" in table
    js = tmp_path / "r.json"
    rc = eval_cli.main(["--seeds", "1,2", "--size", "32", "32", "--scales", "4", "--methods", "bicubic", "dada",
                        "--weights", str(out / "best.pt"), "--iterations", "50", "--json", str(js), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "generated seeds 1,2" in text and "| dada |" in text
    assert json.loads(js.read_text())["tiles"] == 2
    from dada_ros.cli.common import run_cli

    assert run_cli("dada-eval", eval_cli.main, ["--size", "30", "30", "--seeds", "0", "--methods", "bicubic",
                                                "--quiet"]) == 2
    assert "not a multiple of scale" in capsys.readouterr().err


def test_upsample_cli_method_dada_with_weights(trained, tmp_path, sample_x8):
    """dada-upsample --method dada --weights F runs the learned guide through the core."""
    import cv2

    from dada_ros.cli import upsample

    out, _, _ = trained
    cv2.imwrite(str(tmp_path / "g.png"), sample_x8.rgb[:, :, ::-1])
    np.save(tmp_path / "s.npy", sample_x8.source)
    rc = upsample.main(["--guide", str(tmp_path / "g.png"), "--source", str(tmp_path / "s.npy"), "--out",
                        str(tmp_path / "o.npy"), "--method", "dada", "--weights", str(out / "best.pt"),
                        "--iterations", "50"])
    assert rc == 0 and np.load(tmp_path / "o.npy").shape == sample_x8.gt.shape


def test_init_from_checkpoint_keeps_function(tmp_path):
    """Fine-tuning a model with a new full-resolution refinement starts from the same function."""
    import torch

    from dada_ros.core.errors import DadaInputError
    from dada_ros.learned.model import GuideConfig, GuideNet, save_checkpoint
    from dada_ros.learned.train import init_from_checkpoint

    torch.manual_seed(0)
    old = GuideNet(GuideConfig(refine_width=0))
    torch.nn.init.normal_(old.net.head.weight, std=0.05)
    save_checkpoint(tmp_path / "old.pt", old)
    new = GuideNet(GuideConfig(refine_width=8))
    added = init_from_checkpoint(new, str(tmp_path / "old.pt"))
    assert added and all(k.startswith(("net.proj", "net.refine")) for k in added)
    x, d = torch.rand(1, 3, 40, 48), 1 + torch.rand(1, 1, 40, 48)
    with torch.no_grad():
        torch.testing.assert_close(old.eval()(x, d), new.eval()(x, d))
    with pytest.raises(DadaInputError, match="cannot initialise"):
        init_from_checkpoint(GuideNet(GuideConfig(channels=12)), str(tmp_path / "old.pt"))


def test_l2_loss_is_the_masked_squared_error_and_bad_loss_refused():
    import torch

    from dada_ros.core.errors import DadaInputError
    from dada_ros.learned.datasets.base import Batch
    from dada_ros.learned.train import training_loss

    gt = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    valid = torch.tensor([[[[True, True], [True, False]]]])
    pred = gt + torch.tensor([[[[0.1, -0.2], [0.3, 9.0]]]])  # the 9 m error is on an invalid pixel
    b = Batch(rgb=torch.zeros(1, 3, 2, 2), gt=gt, gt_valid=valid, source=gt[..., :1, :1], valid=valid[..., :1, :1],
              y0=gt, scale=2)
    l2 = training_loss(pred, b, TrainConfig(loss="l2", loss_weight=2.0))
    l1 = training_loss(pred, b, TrainConfig(loss="l1", loss_weight=2.0))
    assert float(l2) == pytest.approx(2.0 * (0.01 + 0.04 + 0.09) / 3)
    assert float(l1) == pytest.approx(2.0 * (0.1 + 0.2 + 0.3) / 3)
    with pytest.raises(DadaInputError, match="loss must be one of"):
        TrainConfig(loss="huber").validate()
    with pytest.raises(DadaInputError, match="misregister"):  # the augmentation's settings, before any scene
        TrainConfig(misregister_px=-2).validate()


def test_log_loss_is_the_masked_squared_log_error():
    """loss "log": (log pred - log gt)^2 over valid truth; an invalid pixel (truth 0) is finite
    and ignored; a real-scene list needs the realdata dataset."""
    import math

    import torch

    from dada_ros.core.errors import DadaInputError
    from dada_ros.learned.datasets.base import Batch
    from dada_ros.learned.train import training_loss

    gt = torch.tensor([[[[1.0, 2.0], [4.0, 0.0]]]])
    valid = gt > 0
    pred = torch.tensor([[[[2.0, 1.0], [4.0, 3.0]]]])
    b = Batch(rgb=torch.zeros(1, 3, 2, 2), gt=gt, gt_valid=valid, source=gt[..., :1, :1], valid=valid[..., :1, :1],
              y0=gt, scale=2)
    loss = training_loss(pred, b, TrainConfig(loss="log", loss_weight=3.0))
    assert math.isfinite(float(loss))
    assert float(loss) == pytest.approx(3.0 * 2 * math.log(2) ** 2 / 3)
    # Relative: a 2x overshoot of a near pixel costs what a 2x overshoot of a far one does.
    far = Batch(rgb=b.rgb, gt=gt * 10, gt_valid=valid, source=b.source, valid=b.valid, y0=gt, scale=2)
    assert float(training_loss(pred * 10, far, TrainConfig(loss="log"))) == pytest.approx(
        float(training_loss(pred, b, TrainConfig(loss="log"))), rel=1e-5)
    with pytest.raises(DadaInputError, match="need --dataset realdata"):
        TrainConfig(real_scenes=["teddy"]).validate()


def test_ratio_loss_weighs_depth_and_inverse_depth():
    from dada_ros.learned.train import ratio_loss

    free = {"a|4": [10.0, 2.0, 5], "b|4": [1.0, 1.0, 5]}
    assert ratio_loss(free, free) == pytest.approx(1.0)
    # a: depth 4x worse, inverse depth the same -> 2; b: both halved -> 0.5; geo-mean 1
    assert ratio_loss({"a|4": [40.0, 2.0, 5], "b|4": [0.5, 0.5, 5]}, free) == pytest.approx(1.0)
    assert ratio_loss({"a|4": [40.0, 2.0, 5], "b|4": [1.0, 1.0, 5]}, free) == pytest.approx(2 ** 0.5)
    from dada_ros.core.errors import DadaInputError

    with pytest.raises(DadaInputError, match="nonzero"):
        ratio_loss({"c|4": [1.0, 1.0, 5]}, free)


def test_ratio_validation_on_named_real_files(tmp_path):
    """val_mode "ratios" on realdata files named by --real-scenes / --real-val-scenes (what a
    cross-validation fold trains on): the untrained lite-unet (DADA-free's coefficients) scores
    about 1, DADA-free's per-tile errors are kept in the checkpoint's meta for the resumed run."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64]
    for name in ("one", "two", "three"):
        rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        disp = (20 + 10 * (xx > rng.integers(16, 48)) + 0.1 * yy).astype(np.float32)
        (tmp_path / "d").mkdir(exist_ok=True)
        np.savez(tmp_path / "d" / f"{name}.npz", rgb=rgb, depth=disp, valid=np.ones((64, 64), bool),
                 unit=np.array("disparity_px"), meta=np.array("{}"))
    cfg = TrainConfig(**{**TINY, "val_every": 1}, steps=2, dataset="realdata", data_dir=str(tmp_path),
                      real_scenes=["one", "two"], real_val_scenes=["three"], val_mode="ratios", val_tile=0,
                      loss="log", out_dir=str(tmp_path / "o"))
    Trainer(cfg, resume=False, progress=False).run()
    rows = _rows(tmp_path / "o")
    assert float(rows[0]["val_loss"]) == pytest.approx(1.0, abs=0.05)
    _, meta, _ = load_checkpoint(tmp_path / "o" / "last.pt")
    assert sorted(meta["val_free_errors"]) == ["0:three|4", "0:three|8"]
    args = train_cli.build_parser().parse_args(["--dataset", "realdata", "--real-scenes", "a", "b",
                                                "--real-val-scenes", "c", "--loss", "log", "--val-mode", "ratios"])
    assert args.real_scenes == ["a", "b"] and args.real_val_scenes == ["c"]


def test_scene_validation_is_relative_to_dada_free(tmp_path):
    """val_mode "scenes": whole validation tiles through the default solver policy; val_loss is
    MSE / DADA-free's MSE, so the untrained lite-unet (whose coefficients ARE DADA-free's) scores
    about 1: not exactly, because the solver runs a learned guide on the schedule that follows
    8000 plain steps (Schedule.matching_plain) and DADA-free on its per-ratio table, which end
    within a few percent of each other on these 32 px tiles."""
    cfg = TrainConfig(steps=2, out_dir=str(tmp_path / "o"), cache_dir=str(tmp_path / "c"), val_mode="scenes",
                      val_tile=32, **{**TINY, "val_every": 1})
    Trainer(cfg, resume=False, progress=False).run()
    rows = _rows(tmp_path / "o")
    assert float(rows[0]["val_loss"]) == pytest.approx(1.0, abs=0.05)
    assert all(r["val_loss"] != "" for r in rows)
    _, meta, _ = load_checkpoint(tmp_path / "o" / "best.pt")
    assert set(meta["val_free"]["mse_cm2_per_scale"]) == {"4", "8"}
    from dada_ros.core.errors import DadaInputError

    with pytest.raises(DadaInputError, match="multiple of every scale"):
        TrainConfig(val_mode="scenes", val_tile=100, scales=[8]).validate()


def test_full_solve_training_differentiates_the_default_schedule(trained, tmp_path):
    """--solve full: every step's gradient runs through the solver's default schedule at the
    batch's ratio (logged as n_grad, n_pre 0), and a bad value is refused."""
    from dada_ros.core.errors import DadaInputError
    from dada_ros.core.schedule import Schedule

    _, cache, _ = trained
    cfg = TrainConfig(steps=2, out_dir=str(tmp_path), cache_dir=str(cache), solve="full", **TINY)
    Trainer(cfg, resume=False, progress=False).run()
    rows = [r for r in _rows(tmp_path) if int(r["step"]) > 0]
    assert len(rows) == 2
    for r in rows:
        assert int(r["n_pre"]) == 0 and int(r["n_grad"]) == len(Schedule.for_ratio(float(r["scale"])))
        assert np.isfinite(float(r["loss"]))
    with pytest.raises(DadaInputError, match="solve"):
        TrainConfig(solve="sometimes", **TINY).validate()


def test_arch_left_out_is_the_init_checkpoints(tmp_path):
    """Fine-tuning or adapting a shipped model without --arch keeps its architecture (dada_lite_v8
    is a lite-unet-q); --arch given wins; no --init-from: the default. A lite-unet-q checkpoint
    cannot start a lite-unet (its weights were trained at another resolution): refused, with the flag
    to pass."""
    from dada_ros.learned import model as M
    from dada_ros.learned.train import init_from_checkpoint

    q = tmp_path / "q.pt"
    M.save_checkpoint(q, M.GuideNet(M.GuideConfig(architecture="lite-unet-q", scale_film=True)))
    parse = lambda *a: vars(train_cli.build_parser().parse_args(list(a)))  # noqa: E731
    assert train_cli.resolve_architecture(parse("--init-from", str(q))) == "lite-unet-q"
    assert train_cli.resolve_architecture(parse("--init-from", str(q), "--arch", "lite-unet")) == "lite-unet"
    assert train_cli.resolve_architecture(parse()) == TrainConfig().architecture == "lite-unet"
    with pytest.raises(DadaInputError, match="lite-unet-q"):
        init_from_checkpoint(M.GuideNet(M.GuideConfig(scale_film=True)), str(q))
    with pytest.raises(DadaInputError, match="does not exist"):
        train_cli.resolve_architecture(parse("--init-from", str(tmp_path / "missing.pt")))
