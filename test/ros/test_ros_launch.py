"""launch/upsample.launch.py: executed with `launch` when launch + launch_ros + an installed
dada_ros are available; otherwise imported with minimal stand-ins for launch / launch_ros, its
actions checked, and the node command line it describes RUN as a subprocess that must answer a
triple on the remapped topics. One of the two always runs; neither path is a silent skip."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "upsample.launch.py"
INPUTS = ("rgb/image_rect_color", "rgb/camera_info", "depth/image_rect")
OUTPUTS = ("depth_upsampled/image_rect", "depth_upsampled/camera_info", "depth_upsampled/points")


def real_launch_available() -> bool:
    try:
        import launch  # noqa: F401
        import launch_ros  # noqa: F401
        from ament_index_python.packages import get_package_prefix

        get_package_prefix("dada_ros")
    except Exception:  # noqa: BLE001 - any missing piece means: use the stand-in path
        return False
    return True


# ------------------------------------------------------------------------------------ stand-ins
class LaunchConfiguration:
    def __init__(self, name: str, default=None):
        self.name = name


class DeclareLaunchArgument:
    def __init__(self, name: str, default_value=None, description: str = "", choices=None):
        self.name, self.default_value, self.description, self.choices = name, default_value, description, choices


class Node:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class LaunchDescription:
    def __init__(self, entities=()):
        self.entities = list(entities)


def load_with_standins(monkeypatch: pytest.MonkeyPatch) -> LaunchDescription:
    mods = {name: types.ModuleType(name) for name in
            ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions")}
    mods["launch"].LaunchDescription = LaunchDescription
    mods["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch_ros.actions"].Node = Node
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("upsample_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def node_command(desc: LaunchDescription, launch_args: dict[str, str]) -> list[str]:
    """The command line launch_ros would run for the Node action, with ``launch_args`` applied."""
    declared = {e.name: e.default_value for e in desc.entities if isinstance(e, DeclareLaunchArgument)}
    unknown = set(launch_args) - set(declared)
    assert not unknown, f"not declared by the launch file: {unknown}"
    values = {**declared, **launch_args}

    def resolve(v):
        return values[v.name] if isinstance(v, LaunchConfiguration) else v

    (node,) = [e for e in desc.entities if isinstance(e, Node)]
    kw = node.kwargs
    script = Path(sys.executable).parent / kw["executable"]
    exe = [str(script)] if script.exists() else [sys.executable, "-c",
                                                 "import sys; from dada_ros.ros.node import main; sys.exit(main())"]
    cmd = exe + ["--ros-args", "-r", f"__node:={kw['name']}"]
    ns = resolve(kw.get("namespace", ""))
    if ns:
        cmd += ["-r", f"__ns:={ns if ns.startswith('/') else '/' + ns}"]
    for p in kw["parameters"]:
        if isinstance(p, dict):
            cmd += [a for k, v in p.items() for a in ("-p", f"{k}:={resolve(v)}")]
        else:
            cmd += ["--params-file", str(resolve(p))]
    cmd += [a for src, dst in kw["remappings"] for a in ("-r", f"{src}:={resolve(dst)}")]
    return cmd


# ------------------------------------------------------------------------------------ the test
def test_launch_file(monkeypatch: pytest.MonkeyPatch, ros_context) -> None:
    if real_launch_available():
        run_with_real_launch(ros_context)
        print("\nlaunch file executed with launch/launch_ros")
        return
    desc = load_with_standins(monkeypatch)
    check_declared_actions(desc)
    run_described_node(desc, ros_context)
    print("\nlaunch file inspected with stand-ins and its node command run as a subprocess")


def check_declared_actions(desc: LaunchDescription) -> None:
    args = {e.name: e for e in desc.entities if isinstance(e, DeclareLaunchArgument)}
    for name in ("namespace", "params_file", "device", "rgb_topic", "camera_info_topic", "depth_topic",
                 "output_depth_topic", "output_camera_info_topic", "output_points_topic"):
        assert name in args and args[name].description, name
    params_file = Path(args["params_file"].default_value)
    assert params_file.resolve() == (REPO / "config" / "upsample.yaml").resolve() and params_file.is_file()
    nodes = [e for e in desc.entities if isinstance(e, Node)]
    assert len(nodes) == 1
    kw = nodes[0].kwargs
    assert (kw["package"], kw["executable"], kw["name"]) == ("dada_ros", "upsample_node", "dada_upsample")
    assert "upsample_node = dada_ros.ros.node:main" in (REPO / "setup.py").read_text()
    assert isinstance(kw["namespace"], LaunchConfiguration) and kw["namespace"].name == "namespace"
    assert isinstance(kw["parameters"][0], LaunchConfiguration) and kw["parameters"][0].name == "params_file"
    assert kw["parameters"][1]["device"].name == "device"
    assert kw["parameters"][1]["qos_reliability"].name == "qos_reliability"
    assert args["qos_reliability"].default_value == "auto"
    assert set(args["qos_reliability"].choices) == {"auto", "reliable", "best_effort"}
    remaps = {src: dst.name for src, dst in kw["remappings"]}
    assert set(remaps) == set(INPUTS + OUTPUTS)
    assert all(dst in args for dst in remaps.values())
    # identity by default: the node's own relative names, so a namespace applies
    assert [args[remaps[t]].default_value for t in INPUTS + OUTPUTS] == list(INPUTS + OUTPUTS)


def exchange(ctx, ns: str, extra_nodes=(), timeout: float = 150.0) -> tuple[bool, bool]:
    """A tester node in ``ctx`` feeds triples to the node under test on the remapped topics until
    all three outputs come back. Returns (connected, answered)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from ros_harness import GUIDE, RELIABLE, make_frames, triple

    node = rclpy.create_node("launch_tester", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    for n in (node, *extra_nodes):
        ex.add_node(n)
    connected = answered = False
    try:
        pubs = [node.create_publisher(Image, "/cam/color", RELIABLE),
                node.create_publisher(CameraInfo, f"/{ns}/rgb/camera_info", RELIABLE),
                node.create_publisher(Image, f"/{ns}/depth/image_rect", RELIABLE)]
        got: dict[str, list] = {"depth": [], "info": [], "points": []}
        node.create_subscription(Image, "/out/depth", got["depth"].append, qos_profile_sensor_data)
        node.create_subscription(CameraInfo, f"/{ns}/depth_upsampled/camera_info", got["info"].append, qos_profile_sensor_data)
        node.create_subscription(PointCloud2, f"/{ns}/depth_upsampled/points", got["points"].append, qos_profile_sensor_data)
        frames = make_frames(1, seed=9)
        start = time.monotonic()
        next_send, stamp_s = 0.0, 1_700_000_500
        while time.monotonic() < start + timeout and not answered:
            connected = connected or (all(p.get_subscription_count() >= 1 for p in pubs)
                                      and node.count_publishers("/out/depth") >= 1)
            if not connected and time.monotonic() > start + 30:
                break  # nobody there after 30 s: discovery does not work, waiting longer won't help
            if connected and time.monotonic() >= next_send:
                # Discovery is not symmetric: our publishers can see the node's subscriptions a
                # moment before the node's readers have matched them, and the default sensor-data
                # QoS is best effort, so one triple may be lost. Resend (newer stamp) until
                # answered, as a camera driver would.
                time.sleep(0.3)
                for p, m in zip(pubs, triple(frames[0], stamp_s * 10**9)):
                    p.publish(m)
                next_send, stamp_s = time.monotonic() + 5.0, stamp_s + 1
            ex.spin_once(timeout_sec=0.05)
            answered = bool(got["depth"] and got["info"] and got["points"])
        if answered:
            d = got["depth"][0]
            assert (d.height, d.width) == GUIDE and d.encoding == "32FC1"
    finally:
        # Detach and destroy before shutting the executor down: destroying a node attached to a
        # shut-down executor pokes its dead guard condition.
        for n in extra_nodes:
            ex.remove_node(n)
        node.destroy_node()
        ex.shutdown()
    return connected, answered


def run_described_node(desc: LaunchDescription, ctx) -> None:
    """Start the node exactly as the launch description says (with some launch arguments set)
    and check it answers a triple on the remapped topics.

    The node runs as its own process, as launch would run it. Some sandboxes (CI containers) let
    a process talk DDS only to itself; there the same command line's ROS arguments (namespace,
    params file, remappings, parameters) are applied to the node in this process instead, so the
    launch description is still exercised end to end, and the subprocess must still start and
    report ready."""
    from ros_harness import DOMAIN_ID

    ns = "launch_test_" + str(os.getpid())
    cmd = node_command(desc, {"namespace": ns, "device": "cpu", "rgb_topic": "/cam/color",
                              "output_depth_topic": "/out/depth"})
    cmd += ["-p", "torch_threads:=1", "-p", "max_iterations:=500"]  # test-only: keep the shared CPU usable
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        connected, answered = exchange(ctx, ns)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert alive, f"node exited with {proc.returncode}:\n{out}"
    assert "ready: method dada-free on cpu" in out, out
    if answered:
        return
    assert not connected, "the launched node was discovered but never answered; its log:\n" + out
    print("\ncross-process DDS discovery unavailable here: running the launch command's ROS "
          "arguments in this process")
    run_in_process(cmd[cmd.index("--ros-args"):], ns)


def run_in_process(ros_args: list[str], ns: str) -> None:
    """The node built from ``ros_args`` exactly as rclpy parses a command line (global remaps,
    namespace, params file, -p), in a fresh context shared with the tester (one participant)."""
    import rclpy
    from rclpy.context import Context

    from ros_harness import DOMAIN_ID
    from dada_ros.ros.node import UpsampleNode

    ctx = Context()
    rclpy.init(args=["upsample_node", *ros_args], context=ctx, domain_id=DOMAIN_ID)
    try:
        node = UpsampleNode(context=ctx)
        try:
            assert node.get_fully_qualified_name() == f"/{ns}/dada_upsample"
            assert node.get_parameter("device").value == "cpu"
            connected, answered = exchange(ctx, ns, extra_nodes=(node,))
            assert connected and answered, "the node built from the launch command did not answer"
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def run_with_real_launch(ctx) -> None:  # pragma: no cover - needs a ROS install with launch_ros
    """Execute the launch file with launch's LaunchService and wait for the node's output."""
    import threading

    import rclpy
    from launch import LaunchDescription as RealLaunchDescription
    from launch import LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from ros_harness import DOMAIN_ID, RELIABLE, make_frames, triple

    os.environ["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
    ns = "launch_test_" + str(os.getpid())
    ls = LaunchService()
    ls.include_launch_description(RealLaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)), launch_arguments={"namespace": ns, "device": "cpu"}.items())]))
    thread = threading.Thread(target=ls.run, daemon=True)
    thread.start()
    node = rclpy.create_node("launch_tester", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    try:
        pubs = [node.create_publisher(Image, f"/{ns}/rgb/image_rect_color", RELIABLE),
                node.create_publisher(CameraInfo, f"/{ns}/rgb/camera_info", RELIABLE),
                node.create_publisher(Image, f"/{ns}/depth/image_rect", RELIABLE)]
        got: list = []
        node.create_subscription(Image, f"/{ns}/depth_upsampled/image_rect", got.append, qos_profile_sensor_data)
        frames = make_frames(1, seed=9)
        end = time.monotonic() + 90
        sent = False
        while time.monotonic() < end and not got:
            if not sent and all(p.get_subscription_count() >= 1 for p in pubs):
                time.sleep(0.3)
                for p, m in zip(pubs, triple(frames[0], 1_700_000_600 * 10**9)):
                    p.publish(m)
                sent = True
            ex.spin_once(timeout_sec=0.05)
        assert got, "no output from the launched node"
    finally:
        ex.shutdown()
        node.destroy_node()
        ls.shutdown()
        thread.join(timeout=20)
