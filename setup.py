"""ament_python / pip build script for dada_ros.

``colcon build`` installs the ament index marker, package.xml, launch and config files under
share/dada_ros; ``pip install -e .`` installs the same Python package and console scripts into a
plain virtual environment (no ROS installation needed for the core, CLI and replay tools).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dada_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "benchmarks"]),
    package_data={PACKAGE: ["data/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools", "numpy", "opencv-contrib-python-headless", "torch", "tqdm",
                      "matplotlib", "pyyaml", "rosbags", "numba", "scipy"],
    zip_safe=True,
    maintainer="dada_ros maintainers",
    maintainer_email="dada_ros@example.com",
    description="Guided depth super-resolution by deep anisotropic diffusion for ROS 2",
    license="BSD-3-Clause",
    entry_points={
        "console_scripts": [
            "dada-upsample = dada_ros.cli.upsample:entry",
            "upsample_node = dada_ros.ros.node:main",
            "dada-replay = dada_ros.cli.replay:entry",
            "dada-train = dada_ros.cli.train:entry",
            "dada-eval = dada_ros.cli.eval:entry",
            "dada-average = dada_ros.cli.average:entry",
        ],
    },
)
