"""The one lock around cloudfree's parallel numba kernels.

Each parallel kernel already runs on all of numba's threads. Tiles are processed from several
Python threads, and concurrent launches would oversubscribe the CPUs (OpenMP) or abort the process
(numba's ``workqueue`` threading layer, used where neither TBB nor OpenMP is available, does not
allow them). So every launch of a ``parallel=True`` kernel from code that tiles may run
concurrently holds :data:`KERNEL_LOCK`; the rest of a tile's work (reading, decoding, writing)
still overlaps. The GIL does not keep launches apart: numba releases it for a parallel region.
"""

from __future__ import annotations

import threading

KERNEL_LOCK = threading.RLock()
"""Held while a parallel numba kernel runs (re-entrant: a method may call several kernels)."""
