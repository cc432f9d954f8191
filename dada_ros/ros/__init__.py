"""ROS 2 side of dada_ros: the ``upsample_node`` and the pieces it is made of.

Only this folder (and ``replay/``) knows ROS exists. ``conversions``, ``frame_checks`` (the node's
per-message and per-frame input checks), ``names`` (node and topic names), ``sync`` and
``ros_backends`` import no ROS package at module level, so they can be used (and tested) without
rclpy, as the replay tool does; ``node`` needs rclpy.
"""
