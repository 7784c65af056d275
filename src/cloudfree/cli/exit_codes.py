"""One table from exception class to exit code (most specific class first)."""

from __future__ import annotations

from cloudfree.errors import (
    CloudfreeError,
    GeoZarrInvalidError,
    InvalidInputError,
    NoScenesFoundError,
    OutputExistsError,
    PublishError,
    ReadError,
    RunFailedError,
    SourceError,
    StoreLockedError,
)

SUCCESS = 0
EXIT_CODES: tuple[tuple[type[BaseException], int, str], ...] = (
    (InvalidInputError, 2, "bad input"),
    (OutputExistsError, 2, "output exists"),
    (StoreLockedError, 2, "store locked"),
    (NoScenesFoundError, 3, "no scenes"),
    (SourceError, 4, "source error"),
    (ReadError, 5, "read failed"),
    (RunFailedError, 5, "run failed"),
    (PublishError, 6, "publish failed"),
    (GeoZarrInvalidError, 7, "invalid GeoZarr"),
    (CloudfreeError, 1, "error"),
)


def exit_code_for(error: BaseException) -> tuple[int, str]:
    """The exit code and a short label for an exception."""
    for cls, code, label in EXIT_CODES:
        if isinstance(error, cls):
            return code, label
    return 1, "unexpected error"
