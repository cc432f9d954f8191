"""Feature networks, the GuideModel wrapper and the checkpoint format."""

import numpy as np
import pytest
import torch

from dada_ros.core import coefficients as coef
from dada_ros.core.errors import DadaInputError
from dada_ros.core.metrics import consistency_error
from dada_ros.core.solver import DadaSolver, FreeGuide, SolverConfig
from dada_ros.learned import model as M
from dada_ros.learned.backbones import ResNet50Encoder, load_torchvision_resnet50


def _inputs(B=2, H=37, W=53, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, H, W, generator=g), 1.0 + 3 * torch.rand(B, 1, H, W, generator=g)


@pytest.mark.parametrize("arch", ["lite-unet", "lite-unet-fr", "lite-unet-q"])
def test_untrained_lite_unet_is_dada_free(arch):
    """Zero-initialised last layers: the untrained model reproduces DADA-free's coefficients."""
    net = M.GuideNet(M.GuideConfig(architecture=arch)).eval()
    rgb, d = _inputs()
    with torch.no_grad():
        cv, ch = net.coefficients(net(rgb, d))
    fcv, fch = FreeGuide().coefficients(FreeGuide().features(rgb, d))
    assert cv.shape == (2, 1, 36, 53) and ch.shape == (2, 1, 37, 52)
    torch.testing.assert_close(cv, fcv, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ch, fch, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ["lite-unet", "lite-unet-fr", "lite-unet-q"])
@pytest.mark.parametrize("shape", [(17, 29), (64, 64), (40, 100)])
def test_lite_unet_any_size(shape, arch):
    net = M.GuideNet(M.GuideConfig(architecture=arch, channels=12)).eval()
    for p in net.net.head.parameters():
        torch.nn.init.normal_(p, std=0.1)
    rgb, d = _inputs(1, *shape)
    with torch.no_grad():
        f = net(rgb, d)
    assert f.shape == (1, 12, *shape) and torch.isfinite(f).all()


@pytest.mark.parametrize("arch", ["lite-unet", "lite-unet-q"])
@pytest.mark.parametrize("shape", [(17, 29), (37, 53), (120, 160)])
def test_fused_output_stage_equals_the_torch_path(shape, arch, monkeypatch):
    """At inference on the CPU the lite U-Net's full-resolution output stage (x2 upsampling of
    the head, the 1x1 convolution, the sums) is one numba pass: equal to the torch expressions
    (training's path) to float rounding, at odd sizes and batch 2; with a gradient the torch path
    runs (a gradient reaches the head)."""
    from dada_ros.learned import backbones, fused_head

    if not fused_head.HAVE_NUMBA:
        pytest.skip("numba not installed: the torch path is the only one")
    net = M.GuideNet(M.GuideConfig(architecture=arch, channels=12, scale_film=True)).eval()
    for p in list(net.net.head.parameters()) + list(net.net.local.parameters()):
        torch.nn.init.normal_(p, std=0.3)
    rgb, d = _inputs(2, *shape)
    with torch.no_grad():
        fused = net(rgb, d, 4.0)
        monkeypatch.setattr(backbones, "fused_head_applies", lambda *a: False)
        ref = net(rgb, d, 4.0)
    monkeypatch.undo()
    assert fused.shape == ref.shape == (2, 12, *shape)
    assert not torch.equal(ref, net.net.local(net.network_input(rgb, d)))  # the head matters here
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)
    net.train()
    net(rgb, d, 4.0).square().mean().backward()
    assert net.net.head.weight.grad is not None and net.net.head.weight.grad.abs().sum() > 0


def test_depth_normalisation_is_scale_invariant():
    """log-mean: the network input does not change when all depths are multiplied."""
    net = M.GuideNet()
    rgb, d = _inputs(1, 16, 16)
    a, b = net.network_input(rgb, d), net.network_input(rgb, 7.5 * d)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_resnet50_unet_shape_and_torchvision_keys():
    net = M.GuideNet(M.GuideConfig(architecture="resnet50-unet", channels=64, normalisation="mean")).eval()
    keys = net.net.encoder.state_dict().keys()
    for k in ("conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer2.3.conv3.weight",
              "layer3.5.bn2.weight", "layer4.2.bn3.bias"):
        assert k in keys
    # torchvision resnet50: 25,557,032 parameters; minus fc (2048 x 1000 + 1000); plus the 4th conv1 channel.
    assert sum(p.numel() for p in net.net.encoder.parameters()) == 25_557_032 - 2_049_000 + 64 * 49
    rgb, d = _inputs(1, 24, 40)
    with torch.no_grad():
        f = net(rgb, d)
    assert f.shape == (1, 64, 24, 40)


def test_pretrained_resnet50_conv1_adapted(tmp_path):
    """An ImageNet (3-channel, torchvision keys incl. fc) state_dict loads; the depth channel of
    conv1 starts as a copy of R, all scaled 3/4."""
    src = ResNet50Encoder(in_channels=3)
    sd = dict(src.state_dict())
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    path = tmp_path / "r50.pth"
    torch.save(sd, path)
    net = M.GuideNet(M.GuideConfig(architecture="resnet50-unet", channels=64))
    assert net.load_pretrained_encoder(str(path)) == []
    w, w0 = net.net.encoder.conv1.weight, sd["conv1.weight"]
    torch.testing.assert_close(w[:, :3], w0 * 0.75)
    torch.testing.assert_close(w[:, 3], w0[:, 0] * 0.75)
    torch.testing.assert_close(net.net.encoder.layer3[2].conv2.weight, sd["layer3.2.conv2.weight"])
    bad = dict(sd, **{"layer9.weight": torch.zeros(1)})
    torch.save(bad, path)
    with pytest.raises(DadaInputError, match="unexpected key"):
        net.load_pretrained_encoder(str(path))
    with pytest.raises(DadaInputError, match="resnet50-unet"):
        M.GuideNet().load_pretrained_encoder(str(path))


def _trained_like_net(seed=0):
    torch.manual_seed(seed)
    net = M.GuideNet(M.GuideConfig(channels=8))
    for p in list(net.net.head.parameters()) + list(net.net.local.parameters()):
        torch.nn.init.normal_(p, std=0.05)
    with torch.no_grad():
        net.log_kappa.fill_(np.log(0.05))
    return net.eval()


def test_checkpoint_round_trip(tmp_path):
    net = _trained_like_net()
    path = tmp_path / "m.pt"
    M.save_checkpoint(path, net, {"steps": 12})
    net2, meta, data = M.load_checkpoint(path)
    assert meta == {"steps": 12} and data["version"] == M.VERSION
    assert data["config"]["architecture"] == "lite-unet" and data["config"]["channels"] == 8
    rgb, d = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(net(rgb, d), net2(rgb, d))
    assert float(net2.kappa.detach()) == pytest.approx(0.05)
    guide = M.load_guide_model(str(path), device="cpu")
    assert guide.kappa == pytest.approx(0.05)


def _corrupt(tmp_path, name, mutate):
    data = M.checkpoint_dict(_trained_like_net())
    mutate(data)
    p = tmp_path / name
    torch.save(data, p)
    return p


@pytest.mark.parametrize("name, mutate, match", [
    ("fmt.pt", lambda d: d.update(format="something-else"), "not a dada_ros guide checkpoint"),
    ("ver.pt", lambda d: d.update(version=99), "version 99"),
    ("arch.pt", lambda d: d["config"].update(architecture="vgg"), "unknown architecture"),
    ("field.pt", lambda d: d["config"].update(colour="red"), "unknown fields"),
    ("miss.pt", lambda d: d["state_dict"].pop("log_kappa"), "missing"),
    ("chan.pt", lambda d: d["config"].update(channels=12), "does not match|shape"),
    ("shape.pt", lambda d: d["state_dict"].update(log_kappa=torch.zeros(3)), "shape"),
    ("nan.pt", lambda d: d["state_dict"]["net.head.weight"].fill_(float("nan")), "NaN"),
    ("nostate.pt", lambda d: d.pop("state_dict"), "lacks"),
])
def test_bad_checkpoint_rejected(tmp_path, name, mutate, match):
    p = _corrupt(tmp_path, name, mutate)
    with pytest.raises(DadaInputError, match=match):
        M.load_checkpoint(p)


def test_garbage_and_missing_files_rejected(tmp_path):
    with pytest.raises(DadaInputError, match="does not exist"):
        M.load_guide_model(str(tmp_path / "nope.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(DadaInputError, match="not a readable torch checkpoint"):
        M.load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(DadaInputError, match="not a dada_ros guide checkpoint"):
        M.load_checkpoint(other)
    with pytest.raises(DadaInputError, match="not a file"):
        M.load_checkpoint(tmp_path)


def test_learned_guide_in_solver_keeps_consistency(sample_x8, tmp_path):
    path = tmp_path / "m.pt"
    M.save_checkpoint(path, _trained_like_net())
    guide = M.load_guide_model(str(path), device="cpu")
    res = DadaSolver(SolverConfig(iterations=200), guide).solve(sample_x8.rgb, sample_x8.source)
    assert res.depth.shape == sample_x8.gt.shape and np.isfinite(res.depth).all()
    assert consistency_error(res.depth, sample_x8.source) < 1e-4


def test_shipped_checkpoint_loads_and_runs(sample_x8):
    if not M.SHIPPED_PATH.exists():
        pytest.skip("no shipped checkpoint in this checkout")
    guide = M.load_guide_model(None, device="cpu")
    cfg = guide.config
    assert cfg.architecture in ("lite-unet", "lite-unet-q") and cfg.normalisation in M.NORMALISATIONS
    assert M.SHIPPED_PATH.stat().st_size < 5 * 2**20
    from dada_ros.core.methods import run_method

    depth, stats = run_method("dada", sample_x8.rgb, sample_x8.source, config=SolverConfig(iterations=100))
    assert stats["method"] == "dada" and np.isfinite(depth).all()
    assert consistency_error(depth, sample_x8.source) < 1e-4


def test_free_features_constant_matches_core():
    # The lite network's base is exactly the learning-free feature map of the core.
    rgb, d = _inputs(1, 8, 8)
    assert torch.equal(coef.free_features(rgb, d)[:, 3:], d * coef.DEPTH_FEATURE_PER_METRE)


def _film_net(seed=1):
    """A scale-conditioned lite-unet with non-zero gates and FiLM (as if trained)."""
    torch.manual_seed(seed)
    net = M.GuideNet(M.GuideConfig(scale_film=True))
    with torch.no_grad():
        for m in [net.net.head, *net.net.film]:
            torch.nn.init.normal_(m.weight, std=0.3)
            torch.nn.init.normal_(m.bias, std=0.1)
    return net.eval()


def test_scale_film_starts_as_the_unconditioned_model():
    """Zero-initialised FiLM: the same weights give the same features at every ratio."""
    plain = _trained_like_net()
    film = M.GuideNet(M.GuideConfig(scale_film=True))
    film.load_state_dict(plain.state_dict(), strict=False)
    film.eval()
    rgb, d = _inputs()
    with torch.no_grad():
        for s in (4.0, 8.0, 16.0, 5.3):
            torch.testing.assert_close(film(rgb, d, s), plain(rgb, d))


def test_scale_film_features_depend_on_the_ratio_and_need_it():
    net = _film_net()
    rgb, d = _inputs()
    with torch.no_grad():
        f4, f16 = net(rgb, d, 4.0), net(rgb, d, 16.0)
        assert (f4 - f16).abs().max() > 1e-2
        torch.testing.assert_close(net(rgb, d, 16.0), f16)
    with pytest.raises(DadaInputError, match="pass scale"):
        net(rgb, d)
    for bad in (float("nan"), 0.5, float("inf")):
        with pytest.raises(DadaInputError, match="resolution ratio"):
            net(rgb, d, bad)
    with pytest.raises(DadaInputError, match="scale_film applies to the lite U-Nets"):
        M.GuideConfig(architecture="resnet50-unet", channels=64, scale_film=True).validate()
    with pytest.raises(DadaInputError, match="true or false"):
        M.GuideConfig(scale_film="yes").validate()


def test_scale_film_checkpoint_and_solver_pass_the_ratio(sample_x8, tmp_path):
    """The checkpoint keeps the flag; the solver hands the model guide/source (x8 here)."""
    path = tmp_path / "film.pt"
    M.save_checkpoint(path, _film_net())
    guide = M.load_guide_model(str(path), device="cpu")
    assert guide.config.scale_film
    seen = []
    original = guide.net.forward
    guide.net.forward = lambda rgb, d, scale=None: seen.append(scale) or original(rgb, d, scale)
    from_inputs = guide.coefficients_from_inputs  # the CPU's path (no feature tensor)
    guide.coefficients_from_inputs = lambda rgb, d, dev, scale=None: seen.append(scale) or from_inputs(rgb, d, dev, scale)
    res = DadaSolver(SolverConfig(iterations=50), guide).solve(sample_x8.rgb, sample_x8.source)
    assert seen == [pytest.approx(8.0)] and np.isfinite(res.depth).all()
    assert consistency_error(res.depth, sample_x8.source) < 1e-4
    seen.clear()
    DadaSolver(SolverConfig(iterations=50, coarse_to_fine=True), guide).solve(sample_x8.rgb, sample_x8.source)
    assert seen and all(s == pytest.approx(8.0) for s in seen)  # the torch path (features) too


def _perturbed(seed, **config):
    torch.manual_seed(seed)
    net = M.GuideNet(M.GuideConfig(**config))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net.eval()


def test_average_checkpoints_is_the_weighted_mean_and_cli_writes_it(tmp_path, capsys):
    from dada_ros.cli import average as average_cli

    a, b = _perturbed(1), _perturbed(2)
    M.save_checkpoint(tmp_path / "a.pt", a)
    M.save_checkpoint(tmp_path / "b.pt", b)
    net, meta = M.average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"], [3, 1])
    assert meta["average_weights"] == [0.75, 0.25]
    sa, sb, sm = a.state_dict(), b.state_dict(), net.state_dict()
    for k, v in sm.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.75 * sa[k] + 0.25 * sb[k])
    assert average_cli.main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "m.pt")]) == 0
    assert "mean of 2 checkpoints" in capsys.readouterr().out
    m, m_meta, _ = M.load_checkpoint(tmp_path / "m.pt")
    torch.testing.assert_close(m.log_kappa, (a.log_kappa + b.log_kappa) / 2)
    assert m_meta["averaged_from"] == [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]


def test_average_checkpoints_refuses_mixed_configs_and_bad_weights(tmp_path, monkeypatch):
    from dada_ros.cli import average as average_cli

    M.save_checkpoint(tmp_path / "a.pt", _perturbed(1))
    M.save_checkpoint(tmp_path / "film.pt", _perturbed(2, scale_film=True))
    with pytest.raises(DadaInputError, match="another configuration.*scale_film"):
        M.average_checkpoints([tmp_path / "a.pt", tmp_path / "film.pt"])
    with pytest.raises(DadaInputError, match="at least two"):
        M.average_checkpoints([tmp_path / "a.pt"])
    with pytest.raises(DadaInputError, match="> 0"):
        M.average_checkpoints([tmp_path / "a.pt", tmp_path / "a.pt"], [1, -1])
    with pytest.raises(DadaInputError, match="2 weights for 3"):
        M.average_checkpoints([tmp_path / "a.pt"] * 3, [1, 1])
    monkeypatch.setattr("sys.argv", ["dada-average", str(tmp_path / "a.pt"), str(tmp_path / "nope.pt"),
                                     "--out", str(tmp_path / "o.pt")])
    with pytest.raises(SystemExit) as exc:
        average_cli.entry()
    assert exc.value.code == 2 and not (tmp_path / "o.pt").exists()


def test_quarter_resolution_trunk_starts_from_a_half_resolution_checkpoint(tmp_path):
    """lite-unet-q has lite-unet's layers: a lite-unet checkpoint initialises it (dada-train
    --init-from), and both see the same input, the trunk at a quarter of the resolution instead of
    a half, so their features differ once the head is trained; another channel count does not fit."""
    from dada_ros.learned.train import init_from_checkpoint

    half = M.GuideNet(M.GuideConfig(channels=8, scale_film=True))
    for p in half.net.head.parameters():
        torch.nn.init.normal_(p, std=0.3)
    M.save_checkpoint(tmp_path / "half.pt", half)
    quarter = M.GuideNet(M.GuideConfig(architecture="lite-unet-q", channels=8, scale_film=True))
    assert init_from_checkpoint(quarter, str(tmp_path / "half.pt")) == []
    torch.testing.assert_close(quarter.net.head.weight, half.net.head.weight)
    assert quarter.net.input_pool == 4 and quarter.net.stride == 64
    rgb, d = _inputs(1, 70, 90)
    with torch.no_grad():
        a, b = half.eval()(rgb, d, 8.0), quarter.eval()(rgb, d, 8.0)
    assert a.shape == b.shape == (1, 8, 70, 90) and not torch.allclose(a, b)
    with pytest.raises(DadaInputError):
        init_from_checkpoint(M.GuideNet(M.GuideConfig(architecture="lite-unet-q", channels=12)), str(tmp_path / "half.pt"))
