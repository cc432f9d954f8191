"""Start the dada_upsample node with config/upsample.yaml.

    ros2 launch dada_ros upsample.launch.py
    ros2 launch dada_ros upsample.launch.py namespace:=front device:=cuda \
        rgb_topic:=/camera/color/image_rect_color camera_info_topic:=/camera/color/camera_info \
        depth_topic:=/camera/aligned_depth_to_color/image_raw_lowres params_file:=/path/my.yaml

    ros2 launch dada_ros upsample.launch.py qos_reliability:=best_effort   # fix the input QoS

Launch arguments: namespace, params_file, device and qos_reliability (override the params file;
qos_reliability: auto follows what the publishers offer, reliable or best_effort fix it),
use_sim_time, the
three input topics and the three output topics (remappings of the node's relative names, so a
namespace applies to topic names that are not absolute).
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# The node's own (relative) topic names -> the launch argument that remaps each.
TOPIC_ARGUMENTS = (
    ("rgb/image_rect_color", "rgb_topic", "RGB guide (sensor_msgs/Image rgb8|bgr8|rgba8|bgra8|mono8)"),
    ("rgb/camera_info", "camera_info_topic", "camera_info of the RGB camera"),
    ("depth/image_rect", "depth_topic", "low-res depth registered to the RGB frame (16UC1 mm | 32FC1 m)"),
    ("depth_upsampled/image_rect", "output_depth_topic", "upsampled depth at RGB resolution"),
    ("depth_upsampled/camera_info", "output_camera_info_topic", "camera_info matching the output"),
    ("depth_upsampled/points", "output_points_topic", "PointCloud2 of the upsampled depth"),
)


def default_params_file() -> str:
    # config/ sits next to launch/ both in the source tree and in share/dada_ros of an install,
    # so this works for `ros2 launch` after colcon build and for a plain checkout alike.
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "upsample.yaml"))


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its relative topics"),
        DeclareLaunchArgument("params_file", default_value=default_params_file(),
                              description="YAML file with the node's parameters"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="torch device auto|cpu|cuda|cuda:N (overrides the params file); "
                                          "cuda without a GPU falls back to CPU"),
        DeclareLaunchArgument("qos_reliability", default_value="auto", choices=["auto", "reliable", "best_effort"],
                              description="input QoS: auto (follow the publishers: reliable when all of a "
                                          "topic's publishers are reliable, else best_effort), reliable or "
                                          "best_effort"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="use /clock (bag replay, simulation)"),
    ]
    args += [DeclareLaunchArgument(arg, default_value=topic, description=desc) for topic, arg, desc in TOPIC_ARGUMENTS]
    node = Node(
        package="dada_ros",
        executable="upsample_node",
        name="dada_upsample",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {"device": LaunchConfiguration("device"), "qos_reliability": LaunchConfiguration("qos_reliability"),
             "use_sim_time": LaunchConfiguration("use_sim_time")},
        ],
        remappings=[(topic, LaunchConfiguration(arg)) for topic, arg, _ in TOPIC_ARGUMENTS],
    )
    return LaunchDescription(args + [node])
