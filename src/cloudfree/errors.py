"""Every error cloudfree raises derives from :class:`CloudfreeError`.

Messages say what went wrong, where, and how to fix it. The CLI maps each class to an exit code
in one table (``cloudfree.cli.exit_codes``); library code never exits or prints.
"""

from __future__ import annotations


class CloudfreeError(Exception):
    """Base class of every error raised by cloudfree."""


class InvalidInputError(CloudfreeError, ValueError):
    """A request argument is malformed or out of range (bbox, date, CRS, band, option)."""


class NoScenesFoundError(CloudfreeError):
    """A search matched no scenes; the message states what was searched."""


class SourceError(CloudfreeError):
    """A catalog or archive could not be opened or read."""


class OutputExistsError(CloudfreeError):
    """The output location already holds data and ``overwrite`` was not given."""


class StoreLockedError(CloudfreeError):
    """Another live run is writing the output store."""


class ReadError(CloudfreeError):
    """Pixels of a scene could not be read after retries."""


class RunFailedError(CloudfreeError):
    """One or more work units failed; nothing was reported as a success."""

    unit_key: str | None = None
    """The work unit that failed first, where one did."""


class MemoryLimitError(InvalidInputError):
    """A work unit would need more memory than a worker may use; refused before any read."""


class EngineError(CloudfreeError):
    """The Dask cluster could not be started or reached."""


class PublishError(CloudfreeError):
    """Publishing to a STAC API failed: unreachable, refused, or an object was rejected.

    ``report`` (a :class:`cloudfree.catalog.publish.PublishReport`, when publishing had begun)
    says which objects were published and which were not.
    """

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class GeoZarrInvalidError(CloudfreeError):
    """A store does not follow the GeoZarr conventions; the message lists every reason."""


class CloudfreeWarning(UserWarning):
    """Base class of warnings users can filter."""


class RadiometryWarning(CloudfreeWarning):
    """A scene's scale/offset had to be inferred and may deserve a look."""
