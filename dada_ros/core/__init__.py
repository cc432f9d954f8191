"""The DADA core: guided depth super-resolution on torch + numpy + OpenCV, with no ROS import.

Everything the node, the CLI, the replay tool and the benchmarks compute for one frame lives here,
usable from plain Python without rclpy (``test/test_package.py`` checks that no ROS module gets
imported). Optional accelerators: numba (``fused_cpu``, the fused CPU loop) and triton
(``triton_loop``, the CUDA loop); both are probed at run time.

Modules:
    solver        numpy guide + low-res depth in, full-resolution depth + stats out
    loop          the diffusion-adjustment iteration on torch tensors
    schedule      iteration schedule: weights, budget and stop rule
    coefficients  diffusion coefficients on the 4-neighbourhood
    resample      down/up operators between the guide and the source grids
    fused_cpu     numba kernel of the loop (one memory pass per iteration)
    triton_loop   triton kernels of the loop on CUDA tensors
    methods       one entry point for every upsampling method
    baselines     classical upsamplers (bicubic, joint bilateral, guided, FGS, ...)
    pipeline      per-frame video pipeline: warm-start policy + solver
    warm_start    motion-compensated warm start (previous output warped onto the current frame)
    warm_accept   per-pixel acceptance of the warped previous output
    output_range  detect and clamp outputs far outside the local source range
    inputs        validation of input arrays, with user-facing messages
    image_io      reading guides and depth maps from files
    metrics       accuracy metrics and the consistency error
    scenes        procedural RGB-D scenes
    sequences     synthetic RGB-D sequences with a ToF-like sensor
    device        device selection
    errors        the exception type for bad user input
    atomic_file   atomic file replacement

This file must exist: without it ``find_packages()`` skips the folder and an installed (non
editable) dada_ros has no ``core`` (``test/packaging/`` builds and installs a wheel to check).
"""
