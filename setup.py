"""ament_python / pip build script for dada_ros.

``colcon build`` installs the ament index marker, package.xml, launch and config files under
share/dada_ros; ``pip install -e .`` installs the same Python package and console scripts into a
plain virtual environment (no ROS installation needed for the core, CLI and replay tools).

Every folder under dada_ros/ that holds a .py file must be a package (have an ``__init__.py``):
``find_packages()`` silently skips one that is not, and an installed (non-editable) dada_ros would
then lack it while an editable install still finds the source tree. ``checked_packages`` makes that
a build error; test/packaging/ builds and installs wheels to check the installed file set.
"""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dada_ros"
HERE = os.path.dirname(os.path.abspath(__file__))


def checked_packages() -> list[str]:
    """find_packages() for dada_ros, refusing to build when a source folder is not a package."""
    packages = find_packages(where=HERE, include=[PACKAGE, f"{PACKAGE}.*"])
    missing = []
    for folder, dirs, files in os.walk(os.path.join(HERE, PACKAGE)):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        name = os.path.relpath(folder, HERE).replace(os.sep, ".")
        if any(f.endswith(".py") for f in files) and name not in packages:
            missing.append(os.path.relpath(folder, HERE))
    if missing:
        raise SystemExit(f"setup.py: {', '.join(sorted(missing))} hold(s) .py files but no __init__.py; "
                         "an installed dada_ros would lack them (add an __init__.py)")
    return packages


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=checked_packages(),
    package_data={PACKAGE: ["data/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        # the Fast DDS profile a best-effort camera driver should use too (see the file)
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + [f"{PACKAGE}/data/fastdds_large_data.xml"]),
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
