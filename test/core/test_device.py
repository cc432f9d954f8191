import torch

from dada_ros.core.device import set_cpu_threads
from dada_ros.core.fused_cpu import HAVE_NUMBA, numba_threads, set_numba_threads


def test_set_cpu_threads_sets_torch_and_numba_and_ignores_zero():
    before = (torch.get_num_threads(), numba_threads())
    try:
        set_cpu_threads(1)
        assert torch.get_num_threads() == 1
        assert numba_threads() == (1 if HAVE_NUMBA else 0)
        set_cpu_threads(0)  # "leave the defaults": nothing changes
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before[0])
        set_numba_threads(before[1])
