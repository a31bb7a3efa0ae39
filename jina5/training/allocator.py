"""glibc's allocator set to keep the training step's large blocks for reuse (Linux with glibc only).

By default glibc serves every request of 32 MiB or more (``M_MMAP_THRESHOLD``'s ceiling) with a
fresh ``mmap`` and unmaps it on ``free``, and returns the top of its heap to the system once more than
the trim threshold of it is free. A training step allocates and frees the same large tensors every
step (the dense 30522 x 384 word-embedding gradient of the embedded default student is 47 MB;
activations and their gradients), so each step pays for new pages: 45-50k minor page faults and
their zeroing, about a tenth of a CPU step. :func:`keep_freed_memory` sets, with ``mallopt``:

    M_MMAP_MAX = 0                     no request is served by mmap: every block comes from the heap
    M_TRIM_THRESHOLD = TRIM_THRESHOLD  free memory at the heap's top is kept up to this size
    M_TOP_PAD = TOP_PAD                the heap grows by this much more than a request needs

so that a freed block is reused by the next step's request. The cost: the process keeps up to
``TRIM_THRESHOLD`` of freed memory instead of returning it. Nothing computed changes (only where
memory comes from). The settings stay for the rest of the process (``mallopt`` has no undo: setting
any of them also ends glibc's dynamic mmap threshold). Elsewhere (macOS, Windows, musl) it is a no-op.
``module.keep_freed_memory: false`` leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's malloc.h
TRIM_THRESHOLD = 1 << 30  # 1 GiB: more than a CPU training step frees at once
TOP_PAD = 64 << 20  # 64 MiB


def is_glibc() -> bool:
    """Whether this process runs on Linux with glibc's malloc (``mallopt`` with glibc's parameters)."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Set glibc's allocator to keep freed blocks for reuse (see the module doc); whether it was set
    (False off Linux-glibc, or where ``mallopt`` refuses a setting)."""
    if not is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: TRIM_THRESHOLD, M_TOP_PAD: TOP_PAD}
    ok = all(mallopt(param, value) == 1 for param, value in settings.items())  # 1: accepted
    log.info("glibc malloc: freed blocks kept for reuse (no mmap, trim above %d MiB)", TRIM_THRESHOLD >> 20)
    return ok
