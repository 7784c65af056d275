"""Time ranges and compositing periods.

A :class:`TimeRange` is inclusive of both dates (whole UTC days). A period spec splits it into
consecutive :class:`Period` values; each composite is labelled by its period's start date.

Period specs:

- ``all``: one period, the whole range (starting at the range start);
- ``month``: calendar months;
- ``quarter``: calendar quarters (Jan-Mar, Apr-Jun, Jul-Sep, Oct-Dec);
- ``<N>months`` (e.g. ``2months``, ``6months``): N-month windows starting on the first day of the
  range's first month.

Calendar periods start on the first of their month even when the range starts later; only
scenes inside the range are ever used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from cloudfree.errors import InvalidInputError

_N_MONTHS = re.compile(r"^(\d+)\s*months?$")


def parse_date(value: str | date, *, name: str = "date") -> date:
    """Parse ``YYYY-MM-DD`` (a full ISO datetime is accepted and truncated to its UTC day)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"{name} {value!r} is not a valid date; use YYYY-MM-DD, e.g. 2022-01-31."
        ) from None
    return parsed.astimezone(UTC).date() if parsed.tzinfo else parsed.date()


@dataclass(frozen=True)
class TimeRange:
    """An inclusive range of whole UTC days."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidInputError(
                f"End date {self.end} is before start date {self.start}; swap them."
            )

    @property
    def start_datetime(self) -> datetime:
        """First instant of the range (UTC)."""
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def end_datetime(self) -> datetime:
        """Last instant of the range (UTC, end of the end day)."""
        return datetime.combine(self.end, time.max, tzinfo=UTC)

    def contains(self, when: datetime) -> bool:
        """Whether an instant lies inside the range."""
        return self.start_datetime <= when <= self.end_datetime

    def as_interval(self) -> str:
        """The range as a STAC API ``datetime`` interval."""
        return (
            f"{self.start_datetime.isoformat().replace('+00:00', 'Z')}/"
            f"{self.end_datetime.isoformat().replace('+00:00', 'Z')}"
        )


def time_range(start: str | date, end: str | date) -> TimeRange:
    """Parse and validate a start and end date."""
    return TimeRange(parse_date(start, name="start date"), parse_date(end, name="end date"))


@dataclass(frozen=True)
class Period:
    """One compositing period: ``[start, end)`` in whole UTC days."""

    start: date
    end: date

    @property
    def label(self) -> str:
        """The period's name in outputs: its start date, ``YYYY-MM-DD``."""
        return self.start.isoformat()

    def contains(self, when: datetime) -> bool:
        """Whether an instant lies in this period."""
        day = when.astimezone(UTC).date() if when.tzinfo else when.date()
        return self.start <= day < self.end


@dataclass(frozen=True)
class PeriodSpec:
    """How a time range is split: ``months`` per period, or 0 for the whole range."""

    months: int
    text: str
    calendar: bool = False
    """Periods start on calendar boundaries (quarters: Jan, Apr, Jul, Oct) rather than at the
    range's first month."""

    def split(self, timerange: TimeRange) -> tuple[Period, ...]:
        """The periods covering ``timerange``, in time order."""
        if self.months == 0:
            return (Period(timerange.start, timerange.end + timedelta(days=1)),)
        periods = []
        start = timerange.start
        month = start.month
        if self.calendar:
            month -= (month - 1) % self.months
        current = date(start.year, month, 1)
        while current <= timerange.end:
            nxt = _add_months(current, self.months)
            periods.append(Period(current, nxt))
            current = nxt
        return tuple(periods)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def parse_period(text: str) -> PeriodSpec:
    """Parse ``all``, ``month``, ``quarter`` or ``<N>months``."""
    key = text.strip().lower()
    if key == "all":
        return PeriodSpec(0, key)
    if key == "month":
        return PeriodSpec(1, key)
    if key == "quarter":
        return PeriodSpec(3, key, calendar=True)
    match = _N_MONTHS.match(key)
    if match and int(match.group(1)) > 0:
        return PeriodSpec(int(match.group(1)), key)
    raise InvalidInputError(
        f"Unknown period {text!r}; use all, month, quarter or <N>months (e.g. 2months)."
    )
