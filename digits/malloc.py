"""glibc's malloc, tuned for each process: the web's drawings, the trainer's TensorFlow.

By default glibc serves each block over 128 kB with a fresh mmap, and hands freed memory at the
top of the heap back to the kernel; the next drawing then pays page faults to get it back. On
this path that was measured at about 200 µs a prediction, more than both nets together. Keeping
such blocks in the heap costs a few MB of RSS at most.

The trainer is the other way round: TensorFlow's threads each get an arena of their own, and
its tensors of a few MB, kept in those heaps, leave them fragmented. One pass over 40
corrections peaked about 200 MB lower with two arenas and glibc's own thresholds (measured with
bench/trainer_memory.py), for a few seconds more of system time.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 4 << 20  # blocks below this come from the heap
TRIM_THRESHOLD = 32 << 20  # free memory kept at the heap top before it is given back
GLIBC_THRESHOLD = 128 << 10  # glibc's default for both
TRAINER_ARENAS = 2


def keep_buffers() -> bool:
    """Apply the web's settings; False where the C library is not glibc (macOS, musl)."""
    ok = _set({M_MMAP_THRESHOLD: MMAP_THRESHOLD, M_TRIM_THRESHOLD: TRIM_THRESHOLD})
    if not ok:
        log.warning("mallopt refused the settings: drawings decode slower")
    return ok


def for_training() -> bool:
    """Apply the trainer's settings, before TensorFlow starts its threads; False off glibc."""
    return _set(
        {
            M_ARENA_MAX: TRAINER_ARENAS,
            M_MMAP_THRESHOLD: GLIBC_THRESHOLD,
            M_TRIM_THRESHOLD: GLIBC_THRESHOLD,
        }
    )


def _set(options: dict[int, int]) -> bool:
    try:
        # The running program's own symbols, libc's among them: no library search (which
        # costs a few ms, and create_app calls this every time).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    results = [mallopt(option, value) == 1 for option, value in options.items()]
    return all(results)
