"""Configuration of reads: GDAL options, retries, threads, from ``CLOUDFREE_*`` variables.

Every default is documented here. Credentials and provider endpoint overrides are the other
environment reads, kept where they are used at read time: :mod:`cloudfree.access` (object-store
variables named per store) and :mod:`cloudfree.sources.providers` (the registry, the one place
provider endpoints are written down).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from cloudfree.errors import InvalidInputError

#: GDAL options cloudfree sets for every read, each with the reason.
GDAL_DEFAULTS: Mapping[str, str | int] = {
    # Opening a COG over HTTP/S3 must not list its "directory" to look for sidecar files:
    # listing a bucket prefix is slow and often forbidden. COGs carry everything inline.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # Only these extensions may be fetched over /vsicurl; stops GDAL probing for .aux.xml/.ovr.
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2,.xml,.json",
    # Merge adjacent byte ranges into one request: COG tiles of one window are contiguous.
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    # HTTP/2 multiplexing lets many range requests share one connection.
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    # Transient HTTP errors (429/5xx) are retried by GDAL itself before we see a failure.
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # No cache per open file: datasets stay open across tiles
    # (readers/datasets.py), and a per-handle cache would grow with every tile read through
    # it. /vsicurl/ and /vsis3/ keep one bounded process-wide cache of file regions instead.
    "VSI_CACHE": "FALSE",
    # Decoded blocks of the reads, in bytes: rasterio hands an integer to GDALSetCacheMax64, so
    # a bare 256 would be 256 bytes (no cache at all). Tiles and strips read whole blocks once;
    # only padded (warped) windows share edge blocks with the next tile, and a strip of all
    # the days' files passes through more blocks (a thousand of 128 KB in the benchmark) than
    # a cache of tens of megabytes keeps: 8 MB measured as fast as 32 MB, with a peak 50 MB
    # lower. The COG's final copy has its own (store/cog.py). CLOUDFREE_GDAL_GDAL_CACHEMAX
    # takes GDAL's units.
    "GDAL_CACHEMAX": 8 * 2**20,
    # Warping reads exactly the source window odc-geo computed; one thread per read because
    # cloudfree parallelises over tiles and scenes itself.
    "GDAL_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class ReadSettings:
    """How pixels are read from scenes."""

    retries: int = 3
    """Attempts per band read before it is recorded as failed (rule 5: no silent nodata)."""
    retry_backoff: float = 0.5
    """Seconds before the first retry; doubled at each further attempt."""
    gdal_options: Mapping[str, str | int] = field(default_factory=lambda: dict(GDAL_DEFAULTS))
    """GDAL configuration used for every read (``GDAL_DEFAULTS`` plus ``CLOUDFREE_GDAL_*``)."""
    concurrency: int = 4
    """Solar days of one tile read at the same time. Object stores answer each request after a
    round trip (milliseconds on a LAN, tens of them from S3), so a tile's hundred or so windows
    read one after the other spend much of their time waiting; the memory a tile needs is the
    same (the stack is allocated once)."""
    stack_bytes: int = 192 * 2**20
    """Largest stack one unit holds at once. A tile whose days, bands and mask arrays need more
    is composited in row strips that each fit (:func:`cloudfree.budget.strip_rows`): the memory
    of a unit stays bounded however many days a period has."""


def read_settings(environ: Mapping[str, str] | None = None) -> ReadSettings:
    """Build read settings from the environment.

    ``CLOUDFREE_READ_RETRIES`` overrides the retry count, ``CLOUDFREE_READ_CONCURRENCY`` the
    days of a tile read at once, ``CLOUDFREE_STACK_MEMORY`` the largest stack a unit holds
    (``192MiB``, ``1GB``, bytes); any ``CLOUDFREE_GDAL_<OPTION>`` variable sets GDAL option
    ``<OPTION>`` (e.g. ``CLOUDFREE_GDAL_GDAL_HTTP_TIMEOUT=30``).
    """
    env = os.environ if environ is None else environ
    options: dict[str, str | int] = dict(GDAL_DEFAULTS)
    prefix = "CLOUDFREE_GDAL_"
    for key, value in env.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            options[key[len(prefix) :]] = value
    options["GDAL_CACHEMAX"] = cache_bytes(options["GDAL_CACHEMAX"])
    retries = int(env.get("CLOUDFREE_READ_RETRIES", "3"))
    concurrency = int(env.get("CLOUDFREE_READ_CONCURRENCY", str(ReadSettings.concurrency)))
    stack = env.get("CLOUDFREE_STACK_MEMORY")
    return ReadSettings(
        retries=max(retries, 1),
        gdal_options=options,
        concurrency=max(concurrency, 1),
        stack_bytes=_stack_bytes(stack) if stack else ReadSettings.stack_bytes,
    )


def _stack_bytes(text: str) -> int:
    from dask.utils import parse_bytes

    try:
        value = int(parse_bytes(text))
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidInputError(
            f"CLOUDFREE_STACK_MEMORY {text!r} is not a size; give bytes or a size such as "
            "192MiB or 1GB."
        )
    return value


def cache_bytes(value: str | int) -> int:
    """GDAL's block cache size in bytes, from a value in GDAL's units.

    An integer is bytes (what rasterio passes to ``GDALSetCacheMax64``); a string is read as
    GDAL reads ``GDAL_CACHEMAX``: a number below 100000 is megabytes, above it bytes, and
    ``N%`` is a share of this machine's memory.
    """
    if isinstance(value, int):
        return value
    text = value.strip()
    try:
        if text.endswith("%"):
            import psutil

            return int(float(text[:-1]) / 100 * psutil.virtual_memory().total)
        number = float(text.removesuffix("MB"))
    except ValueError:
        raise InvalidInputError(
            f"GDAL_CACHEMAX {value!r} is not a size; give megabytes (512), bytes "
            "(536870912) or a share of memory (5%)."
        ) from None
    if text.endswith("MB") or number < 100_000:
        return int(number * 2**20)
    return int(number)


MMAP_THRESHOLD = 16 * 2**20
"""Bytes from which glibc's malloc maps memory of its own (returned to the system when freed)."""
TRIM_THRESHOLD = 64 * 2**20
"""Free bytes at the top of a glibc heap kept for the next allocations, not returned."""


def tune_allocator() -> None:
    """Tune glibc's malloc for tiles read, reduced and freed by a few threads (Linux only).

    - ``M_MMAP_THRESHOLD`` fixed at :data:`MMAP_THRESHOLD`. Below it, a strip's masks, verdicts
      and presence arrays (12 MB for 1024 x 512 pixels of 24 days) come from the heaps and are
      reused warm by the next strip; mapped, each is zeroed page by page again (numpy asks for
      huge pages: 1 s of the benchmark's CPU at 4 MB, half of its page faults). Fixed rather
      than glibc's own rising threshold, which goes up to the largest block freed (32 MB) and
      let a stack's band arrays pile up in the heaps too.
    - ``M_ARENA_MAX`` at the number of usable cores (at least 2), not glibc's eight per core:
      each of a dozen reader, worker and writer threads otherwise fills a heap of its own with
      GDAL's blocks and buffers, whose free pieces no other thread reuses (about 40 MB of the
      benchmark's peak).
    - ``M_TRIM_THRESHOLD`` at :data:`TRIM_THRESHOLD`: the default 128 KB hands the top of a heap
      back to the system as soon as it is free, and the next tile's reads fault the pages in
      again (half of a run's page faults).

    Called when a run starts; a setting the process gave in the environment
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``, ``MALLOC_TRIM_THRESHOLD_``) is left alone.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...)
        return
    cores = len(os.sched_getaffinity(0))
    for variable, option, value in (
        ("MALLOC_MMAP_THRESHOLD_", -3, MMAP_THRESHOLD),  # M_MMAP_THRESHOLD
        ("MALLOC_ARENA_MAX", -8, max(cores, 2)),  # M_ARENA_MAX
        ("MALLOC_TRIM_THRESHOLD_", -1, TRIM_THRESHOLD),  # M_TRIM_THRESHOLD
    ):
        if variable not in os.environ:
            libc.mallopt(option, value)


#: Prefixes of the variables that configure reads and writes in any process: cloudfree's own,
#: GDAL's (``GDAL_*``, ``CPL_*``, ``VSI_*``), the AWS SDKs' and GDAL's S3 access (``AWS_*``),
#: Azure, Google Cloud, and the Planetary Computer subscription key. Dask workers get them from
#: the engine's worker plugin, since environment variables do not travel with tasks.
FORWARDED_PREFIXES = (
    "CLOUDFREE_",
    "GDAL_",
    "CPL_",
    "VSI_",
    "AWS_",
    "AZURE_",
    "GS_",
    "GOOGLE_",
    "PC_SDK_",
)


def forwarded_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables (see :data:`FORWARDED_PREFIXES`) a worker process must share with this one."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith(FORWARDED_PREFIXES)}


def default_threads(environ: Mapping[str, str] | None = None) -> int:
    """Worker threads for in-process runs: ``CLOUDFREE_THREADS`` or the CPU count."""
    env = os.environ if environ is None else environ
    value = env.get("CLOUDFREE_THREADS")
    if value:
        return max(int(value), 1)
    return max(os.cpu_count() or 1, 1)


#: The environment variable holding the STAC API token for ``cloudfree publish`` (``--auth-env``).
STAC_API_TOKEN_VARIABLE = "CLOUDFREE_STAC_API_TOKEN"


@dataclass(frozen=True)
class PublishSettings:
    """How ``cloudfree publish`` talks to a STAC API."""

    retries: int = 4
    """Further attempts of a request that failed in a way worth retrying (connection error,
    429, 502, 503, 504); ``CLOUDFREE_PUBLISH_RETRIES``."""
    backoff: float = 0.5
    """Seconds before the first retry, doubled at each further one, unless the API sends
    ``Retry-After``."""
    max_wait: float = 30.0
    """Longest wait between two attempts, whatever ``Retry-After`` says."""
    timeout: float = 60.0
    """Seconds to wait for a response (``CLOUDFREE_PUBLISH_TIMEOUT``)."""


def publish_settings(environ: Mapping[str, str] | None = None) -> PublishSettings:
    """Publish settings; ``CLOUDFREE_PUBLISH_RETRIES``/``_TIMEOUT`` override the defaults."""
    env = os.environ if environ is None else environ
    retries = int(env.get("CLOUDFREE_PUBLISH_RETRIES", "4"))
    timeout = float(env.get("CLOUDFREE_PUBLISH_TIMEOUT", "60"))
    return PublishSettings(retries=max(retries, 0), timeout=max(timeout, 1.0))


def secret_from_environment(variable: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``variable`` (a token or password), or ``None`` when it is unset or empty.

    The caller must never log, print or put the value into a message.
    """
    env = os.environ if environ is None else environ
    value = env.get(variable, "").strip()
    return value or None
