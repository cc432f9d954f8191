"""ROS 2 side of dada_ros: the ``upsample_node`` and the pieces it is made of.

Only this folder (and ``replay/``) knows ROS exists. ``conversions`` and ``sync`` import no
ROS package, so they can be used (and tested) without rclpy; ``node`` needs rclpy.
"""
