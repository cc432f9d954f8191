"""Method specs and topic maps: parsing, remaps and the errors a user sees."""

import pytest

from dada_ros.core.pipeline import resolve_warm_schedule
from dada_ros.core.errors import DadaInputError
from dada_ros.replay.bag import TopicInfo
from dada_ros.replay.methods import parse_method, parse_methods
from dada_ros.replay.topics import TopicMap
from dada_ros.ros.parameters import NodeSettings


def test_method_specs():
    s = parse_method("dada-free")  # the node's default warm_start (off)
    assert (s.key, s.mode, s.iterations, s.stateless) == ("dada-free", "cold", None, True)
    s = parse_method("dada-free:flow")
    assert (s.key, s.mode, s.iterations, s.stateless) == ("dada-free:flow", "flow", None, False)
    s = parse_method("dada-free:cold")
    assert s.equilibrium_cold and s.stateless
    s = parse_method("dada-free:off:100")
    assert (s.key, s.mode, s.iterations, s.equilibrium_cold) == ("dada-free:cold:100", "cold", 100, False)
    assert parse_method("jbf").stateless and not parse_method("jbf").is_dada
    assert [x.key for x in parse_methods("dada-free, bicubic,dada:naive")] == ["dada-free", "bicubic", "dada:naive"]


def test_a_warm_method_runs_the_nodes_budgets_or_the_count_it_names():
    node = NodeSettings.defaults()
    flow = parse_method("dada-free:flow")
    cfg = flow.warm_config(node)
    # the node's 0 = the warm schedule's own budget (None in WarmConfig)
    assert (cfg.mode, cfg.warm_iterations, cfg.slow_motion_px) == ("flow", None, None)
    assert cfg.slow_motion_iterations is None and node.warm_iterations == node.warm_slow_iterations == 0
    _, fast, slow = resolve_warm_schedule(cfg, True)
    assert f"{slow} it/warm frame when the view moved <= 5 px, else {fast} (chebyshev)" in flow.label(node)
    fixed = parse_method("dada-free:flow:60")
    cfg = fixed.warm_config(node)
    assert (cfg.warm_iterations, cfg.slow_motion_px) == (60, 0.0) and "60 it/warm frame" in fixed.label(node)
    assert "75 it/warm frame (plain)" in parse_method("dada:flow").label(node)  # a learned guide: one budget
    assert parse_method("dada-free:naive").warm_config(node).mode == "naive"


@pytest.mark.parametrize("text, msg", [
    ("magic", "unknown method"), ("bicubic:cold", "takes no warm-start mode"), ("dada-free:warp", "unknown warm-start"),
    ("dada-free:flow:0", ">= 1"), ("dada-free,dada-free:cold", "listed twice"), ("", "no method"),
])
def test_method_spec_errors(text, msg):
    with pytest.raises(DadaInputError, match=msg):
        parse_methods(text)


def _topics(**kw):
    return {n: TopicInfo(n, t, 3) for n, t in kw.items()}


def test_topic_map_remaps_and_missing_topics():
    tm = TopicMap().with_remaps("rgb=camera/color/image_raw,gt=none")
    assert tm.rgb == "/camera/color/image_raw" and tm.gt is None
    with pytest.raises(DadaInputError, match="bad topic remap"):
        TopicMap().with_remaps("colour=/x")
    bag = _topics(**{"/rgb/image_rect_color": "sensor_msgs/msg/Image", "/imu": "sensor_msgs/msg/Imu"})
    with pytest.raises(DadaInputError) as exc:
        TopicMap().resolve(bag)
    text = str(exc.value)
    assert "/depth/image_rect" in text and "/imu" in text and "\n" not in text  # lists what the bag has


def test_topic_map_types_and_missing_ground_truth():
    ok = {"/rgb/image_rect_color": "sensor_msgs/msg/Image", "/rgb/camera_info": "sensor_msgs/msg/CameraInfo",
          "/depth/image_rect": "sensor_msgs/msg/Image"}
    resolved = TopicMap().resolve(_topics(**ok))
    assert resolved.gt is None and any("no ground truth" in n for n in resolved.notes)
    bad = dict(ok, **{"/rgb/image_rect_color": "sensor_msgs/msg/CompressedImage"})
    with pytest.raises(DadaInputError, match="unsupported message type.*CompressedImage.*republish"):
        TopicMap().resolve(_topics(**bad))


def test_node_params_use_the_node_table():
    from dada_ros.cli.replay import node_settings, parse_node_params

    p = parse_node_params("max_iterations:=4000, points_rgb:=true,slop:=0.02,warm_start:=naive")
    assert p == {"max_iterations": 4000, "points_rgb": True, "slop": 0.02, "warm_start": "naive"}
    assert node_settings(p).max_iterations == 4000
    for bad, msg in (("nope:=1", "unknown node parameter"), ("slop=1", "NAME:=VALUE"),
                     ("points_rgb:=maybe", "needs a bool")):
        with pytest.raises(DadaInputError, match=msg):
            parse_node_params(bad)
    with pytest.raises(DadaInputError, match="lambda"):
        node_settings({"lambda": 0.3})
