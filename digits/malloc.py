"""glibc's malloc, tuned for a process that handles one 160 kB drawing after another.

By default glibc serves each block over 128 kB with a fresh mmap, and hands freed memory at the
top of the heap back to the kernel; the next drawing then pays page faults to get it back. On
this path that was measured at about 200 µs a prediction, more than both nets together. Keeping
such blocks in the heap costs a few MB of RSS at most.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20  # blocks below this come from the heap
TRIM_THRESHOLD = 32 << 20  # free memory kept at the heap top before it is given back


def keep_buffers() -> bool:
    """Apply the settings; False where the C library is not glibc (macOS, musl)."""
    try:
        # The running program's own symbols, libc's among them: no library search (which
        # costs a few ms, and create_app calls this every time).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    if not ok:
        log.warning("mallopt refused the settings: drawings decode slower")
    return ok
