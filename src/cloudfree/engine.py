"""Running work units: in-process threads (GDAL reads and numpy sorts release the GIL).

Units are independent; a failure stops new units from starting, lets running ones finish, and
is raised as :class:`~cloudfree.errors.RunFailedError` naming the unit, so a failed run never
reports success.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from cloudfree.errors import CloudfreeError, RunFailedError

log = logging.getLogger(__name__)

U = TypeVar("U")
ProgressCallback = Callable[[int, int], None]
"""Called with (finished units, total units) after each unit."""


def run_units(
    units: Sequence[U],
    run_unit: Callable[[U], None],
    *,
    threads: int,
    key: Callable[[U], str],
    progress: ProgressCallback | None = None,
) -> None:
    """Run ``run_unit`` on every unit with at most ``threads`` in flight."""
    total = len(units)
    done = 0
    if progress:
        progress(0, total)
    pending = iter(units)
    running: dict[Future[None], U] = {}
    failure: tuple[U, BaseException] | None = None
    with ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="cloudfree") as pool:

        def submit_next() -> None:
            unit = next(pending, None)
            if unit is not None:
                running[pool.submit(run_unit, unit)] = unit

        for _ in range(max(threads, 1) * 2):
            submit_next()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                unit = running.pop(future)
                error = future.exception()
                if error is not None:
                    if failure is None:
                        failure = (unit, error)
                    log.error("work unit %s failed: %s", key(unit), error)
                    continue
                done += 1
                if progress:
                    progress(done, total)
                if failure is None:
                    submit_next()
    if failure is not None:
        unit, error = failure
        message = f"Work unit {key(unit)} failed: {error}"
        if isinstance(error, CloudfreeError):
            raise RunFailedError(message) from error
        raise RunFailedError(message + " (an unexpected error; please report it)") from error
