"""Keep freed CPU memory in the process: glibc ``mallopt`` so large tensors stop costing page faults.

PyTorch's CPU allocator has no cache: every tensor is a fresh ``posix_memalign`` and every free
returns it. glibc serves blocks above ``M_MMAP_THRESHOLD`` (128 KiB, growing to at most 32 MiB) with
their own ``mmap`` and unmaps them on free, so each of the paper iteration's activations (up to
900×64×32×32 fp32 = 236 MB) is mapped, first-touched page by page by the kernel (zeroed, one minor
fault per 4 KiB page) and unmapped again, in every Langevin step. On this repository's 2-core AMD
EPYC that was ~7.6 million page faults and ~22 s of system time per CIFAR-10 training iteration at
one thread (docs/benchmarks-speed.md). TensorFlow's own (BFC) allocator keeps its memory; this does
the same for us: blocks come from the heap (``M_MMAP_THRESHOLD`` 1 GiB) and freed heap is kept
(``M_TRIM_THRESHOLD`` 2 GiB - 1), so the next step reuses already-mapped pages.

Where a tensor lives does not change what a kernel computes: results are byte-identical. The cost is
that the process keeps its peak heap instead of returning it between steps. Only glibc (Linux) has
``mallopt``; elsewhere, or with ``PIPELINE_MALLOC=system``, nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's <malloc.h> parameter numbers
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB from the heap (the largest paper activation is 236 MB)
TRIM_THRESHOLD = (1 << 31) - 1  # an int: keep up to 2 GiB of freed heap before returning any


def reuse_freed_memory() -> bool:
    """Tell glibc to serve large blocks from the heap and keep freed heap; True when it was applied.

    A no-op returning False off glibc or when the environment sets ``PIPELINE_MALLOC=system``.
    """
    if os.environ.get("PIPELINE_MALLOC", "reuse") == "system":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt): keep the system's policy
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting both also turns off glibc's dynamic threshold growth
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
