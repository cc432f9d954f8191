"""dada_ros: guided depth super-resolution by deep anisotropic diffusion (DADA) for ROS 2.

The ``core`` subpackage is free of ROS imports (torch + numpy + OpenCV) and can be used from
plain Python; ``ros`` holds the rclpy node and ``cli`` the command-line entry points.
"""

__version__ = "0.1.0"
