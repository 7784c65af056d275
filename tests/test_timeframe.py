from datetime import UTC, date, datetime

import pytest

from cloudfree.errors import InvalidInputError
from cloudfree.timeframe import parse_date, parse_period, time_range


def test_end_before_start_is_refused():
    with pytest.raises(InvalidInputError, match="before start date"):
        time_range("2022-02-01", "2022-01-01")


@pytest.mark.parametrize("text", ["2022-13-01", "yesterday", "2022/01/01", ""])
def test_bad_dates_say_the_format(text):
    with pytest.raises(InvalidInputError, match="YYYY-MM-DD"):
        parse_date(text)


def test_range_is_inclusive_of_the_end_day():
    tr = time_range("2022-01-01", "2022-01-31")
    assert tr.contains(datetime(2022, 1, 31, 23, 59, tzinfo=UTC))
    assert not tr.contains(datetime(2022, 2, 1, 0, 0, 1, tzinfo=UTC))


def test_month_periods_cover_the_range():
    periods = parse_period("month").split(time_range("2021-11-15", "2022-02-03"))
    assert [p.label for p in periods] == ["2021-11-01", "2021-12-01", "2022-01-01", "2022-02-01"]
    assert periods[-1].end == date(2022, 3, 1)


def test_quarters_are_calendar_quarters():
    periods = parse_period("quarter").split(time_range("2021-11-15", "2022-04-30"))
    assert [p.label for p in periods] == ["2021-10-01", "2022-01-01", "2022-04-01"]


def test_n_months_and_all():
    periods = parse_period("2months").split(time_range("2021-11-03", "2022-04-17"))
    assert [p.label for p in periods] == ["2021-11-01", "2022-01-01", "2022-03-01"]
    (whole,) = parse_period("all").split(time_range("2021-11-03", "2022-04-17"))
    assert whole.start == date(2021, 11, 3) and whole.end == date(2022, 4, 18)


@pytest.mark.parametrize("text", ["weekly", "0months", "months"])
def test_unknown_period(text):
    with pytest.raises(InvalidInputError, match="Unknown period"):
        parse_period(text)
