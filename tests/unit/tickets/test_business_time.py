"""Business-time arithmetic (gateway/tickets/business_time.py): working hours, weekends,
holidays, starts outside hours, DST changes in both directions, multi-day targets."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.tickets.business_time import (
    Calendar,
    add_business_time,
    business_time_between,
    parse_duration,
    parse_hours,
)

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = Calendar(BERLIN, parse_hours("mon-fri 08:00-17:00"))


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def test_within_one_working_day() -> None:
    # Monday 7 December 2026, 09:00 + 4h = 13:00 the same day
    assert add_business_time(local("2026-12-07T09:00"), timedelta(hours=4), OFFICE) \
        == local("2026-12-07T13:00")


def test_the_rest_carries_over_to_the_next_morning() -> None:
    # 15:00 + 4h: 2h on Monday, 2h from Tuesday 08:00
    assert add_business_time(local("2026-12-07T15:00"), timedelta(hours=4), OFFICE) \
        == local("2026-12-08T10:00")


def test_a_start_outside_hours_counts_from_the_next_opening() -> None:
    assert add_business_time(local("2026-12-07T06:30"), timedelta(hours=1), OFFICE) \
        == local("2026-12-07T09:00")
    assert add_business_time(local("2026-12-07T19:00"), timedelta(hours=1), OFFICE) \
        == local("2026-12-08T09:00")


def test_the_weekend_is_skipped() -> None:
    # Friday 11 December 16:00 + 2h: 1h on Friday, 1h on Monday
    assert add_business_time(local("2026-12-11T16:00"), timedelta(hours=2), OFFICE) \
        == local("2026-12-14T09:00")
    # a mail on Saturday is due Monday
    assert add_business_time(local("2026-12-12T11:00"), timedelta(minutes=30), OFFICE) \
        == local("2026-12-14T08:30")


def test_holidays_are_closed_all_day() -> None:
    holidays = frozenset({date(2026, 12, 24), date(2026, 12, 25)})
    calendar = Calendar(BERLIN, parse_hours("mon-fri 08:00-17:00"), holidays)
    # Wednesday 23 December 16:00 + 2h: 1h Wednesday, Thu 24 and Fri 25 closed, 1h Monday 28
    assert add_business_time(local("2026-12-23T16:00"), timedelta(hours=2), calendar) \
        == local("2026-12-28T09:00")
    assert business_time_between(local("2026-12-23T00:00"), local("2026-12-29T00:00"),
                                 calendar) == timedelta(hours=18)


def test_multi_day_target_and_split_days() -> None:
    calendar = Calendar(BERLIN, parse_hours("mon-fri 08:00-12:00,13:00-17:00"))
    # 3 x 24h = 72 working hours of 8 a day: 9 working days from Monday 08:00
    assert add_business_time(local("2026-12-07T08:00"), parse_duration("3d"), calendar) \
        == local("2026-12-17T17:00")
    # the lunch break does not count
    assert add_business_time(local("2026-12-07T11:30"), timedelta(hours=1), calendar) \
        == local("2026-12-07T13:30")


def test_a_target_over_the_end_of_october_keeps_local_working_hours() -> None:
    # DST ends on Sunday 25 October 2026 (03:00 CEST -> 02:00 CET). Friday 16:00 CEST + 3h:
    # 1h on Friday, then Monday 08:00 CET (= 07:00 UTC, an hour later in UTC than in summer)
    due = add_business_time(local("2026-10-23T16:00"), timedelta(hours=3), OFFICE)
    assert due == local("2026-10-26T10:00")
    assert due.astimezone(UTC) == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    assert business_time_between(local("2026-10-23T16:00"), due, OFFICE) == timedelta(hours=3)


def test_around_the_clock_counts_the_extra_hour_of_the_october_change() -> None:
    always = Calendar.around_the_clock(BERLIN)
    start = local("2026-10-25T00:00")
    # that local day has 25 hours: 24h of working time end at 23:00 local
    assert add_business_time(start, timedelta(hours=24), always) == local("2026-10-25T23:00")
    assert business_time_between(start, local("2026-10-26T00:00"), always) \
        == timedelta(hours=25)


def test_spring_change_day_has_23_hours() -> None:
    always = Calendar.around_the_clock(BERLIN)
    assert business_time_between(local("2026-03-29T00:00"), local("2026-03-30T00:00"),
                                 always) == timedelta(hours=23)


def test_business_time_between_counts_only_open_hours() -> None:
    assert business_time_between(local("2026-12-11T16:00"), local("2026-12-14T09:30"),
                                 OFFICE) == timedelta(hours=2, minutes=30)
    assert business_time_between(local("2026-12-12T10:00"), local("2026-12-13T10:00"),
                                 OFFICE) == timedelta(0)
    assert business_time_between(local("2026-12-14T10:00"), local("2026-12-14T09:00"),
                                 OFFICE) == timedelta(0)


def test_add_then_between_round_trip() -> None:
    start = local("2026-12-09T13:17")
    for hours in (1, 5, 9, 20, 47):
        due = add_business_time(start, timedelta(hours=hours), OFFICE)
        assert business_time_between(start, due, OFFICE) == timedelta(hours=hours)


def test_24_00_and_several_groups() -> None:
    week = parse_hours("mon-fri 08:00-17:00; sat 22:00-24:00")
    assert week[0] == ((480, 1020),) and week[5] == ((1320, 1440),) and week[6] == ()
    calendar = Calendar(BERLIN, week)
    assert add_business_time(local("2026-12-12T23:00"), timedelta(hours=2), calendar) \
        == local("2026-12-14T09:00")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_business_time(datetime(2026, 12, 7, 9), timedelta(hours=1), OFFICE)


def test_a_calendar_that_never_opens_is_an_error_not_a_loop() -> None:
    closed = Calendar(BERLIN, ((),) * 7)
    with pytest.raises(ValueError, match="no working hours"):
        add_business_time(local("2026-12-07T09:00"), timedelta(hours=1), closed)


@pytest.mark.parametrize(("text", "expected"), [
    ("4h", timedelta(hours=4)), ("30m", timedelta(minutes=30)),
    ("1h 30m", timedelta(minutes=90)), ("3d", timedelta(days=3)), (" 2H ", timedelta(hours=2)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "4", "4x", "h", "0h", "-1h", "4h and more"])
def test_wrong_durations_say_how_to_write_them(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "message"), [
    ("", "no working hours"), ("mon-fri", "give times"), ("monday 08:00-17:00", "not a list"),
    ("fri-mon 08:00-17:00", "runs forward"), ("mon 8-17", "not a time range"),
    ("mon 17:00-08:00", "ends before it starts"), ("mon 08:00-25:00", "not a time of day"),
    ("mon 08:00-12:00,11:00-17:00", "overlap"),
])
def test_wrong_hours_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hours(text)
