"""Business-time arithmetic: when is a target due, counting only a queue's working hours.

In: timezone-aware datetimes, `timedelta` durations and a `Calendar` (working hours per
weekday, holidays, a zone). Out: aware datetimes in UTC, or durations.

Guarantees: pure (no clock, no I/O). Working hours are wall-clock times in the calendar's
zone, so an 08:00-17:00 day starts at 08:00 local time before and after a DST change;
business time is *elapsed* time inside those hours (a 24/7 day with the October change has
25 hours). A holiday closes the whole local date. `parse_hours` and `parse_duration` raise
`ValueError` with a message for an admin; `add_business_time` raises `ValueError` for a
calendar that is never open (the config refuses those).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"(\d+)\s*([dhm])")
_SLOT = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_MINUTES_PER_DAY = 24 * 60
_SEARCH_DAYS = 366 * 3        # no target is that far away; a longer search means "never open"

Slot = tuple[int, int]        # minutes after local midnight: [start, end), end up to 24:00


@dataclass(frozen=True)
class Calendar:
    """When a queue works: `week[0]` are Monday's slots; `holidays` are closed local dates."""

    zone: ZoneInfo
    week: tuple[tuple[Slot, ...], ...] = ((((0, _MINUTES_PER_DAY),),) * 7)
    holidays: frozenset[date] = field(default_factory=frozenset)

    @classmethod
    def around_the_clock(cls, zone: ZoneInfo) -> Calendar:
        """Open every minute of every day (what a queue without `hours` gets)."""
        return cls(zone)

    def open_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working intervals of one local date, in UTC."""
        if day in self.holidays:
            return []
        return [(self._instant(day, start), self._instant(day, end))
                for start, end in self.week[day.weekday()]]

    def _instant(self, day: date, minutes: int) -> datetime:
        if minutes >= _MINUTES_PER_DAY:          # 24:00 is the next day's midnight
            day, minutes = day + timedelta(days=1), minutes - _MINUTES_PER_DAY
        local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=self.zone)
        return local.astimezone(UTC)

    def intervals_from(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working intervals (UTC) that end after `start`, in order, for `_SEARCH_DAYS`."""
        first = start.astimezone(self.zone).date() - timedelta(days=1)
        for offset in range(_SEARCH_DAYS):
            for begin, end in self.open_intervals(first + timedelta(days=offset)):
                if end > start:
                    yield begin, end


def add_business_time(start: datetime, duration: timedelta, calendar: Calendar) -> datetime:
    """The moment (UTC) when `duration` of working time has passed after `start`. A start
    outside working hours begins counting at the next opening; a zero duration is `start`."""
    start = _utc(start)
    if duration <= timedelta(0):
        return start
    remaining = duration
    for begin, end in calendar.intervals_from(start):
        counted_from = max(begin, start)
        available = end - counted_from
        if remaining <= available:
            return counted_from + remaining
        remaining -= available
    raise ValueError(f"the calendar has no working hours within {_SEARCH_DAYS} days")


def business_time_between(start: datetime, end: datetime, calendar: Calendar) -> timedelta:
    """Working time inside [start, end); zero when `end` is not after `start`."""
    start, end = _utc(start), _utc(end)
    total = timedelta(0)
    if end <= start:
        return total
    for begin, finish in calendar.intervals_from(start):
        if begin >= end:
            break
        total += min(finish, end) - max(begin, start)
    return total


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("business-time arithmetic needs timezone-aware datetimes")
    return moment.astimezone(UTC)


# -- reading the configuration ------------------------------------------------------------------

def parse_duration(text: str) -> timedelta:
    """`4h`, `30m`, `1h 30m`, `3d` (a day is 24 hours of working time, not a working day)."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not cleaned or _DURATION.sub("", cleaned).strip():
        raise ValueError(f"{text!r} is not a duration; write e.g. 30m, 4h, 1h 30m or 3d")
    units = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
    total = sum((int(number) * units[unit] for number, unit in parts), timedelta(0))
    if total <= timedelta(0):
        raise ValueError(f"{text!r}: a duration must be longer than zero")
    return total


def parse_hours(text: str) -> tuple[tuple[Slot, ...], ...]:
    """`mon-fri 08:00-17:00` or `mon-fri 08:00-12:00,13:00-17:00; sat 09:00-12:00`: the
    slots of each weekday, Monday first. Days not named are closed."""
    week: list[list[Slot]] = [[] for _ in DAYS]
    groups = [g.strip() for g in text.split(";") if g.strip()]
    if not groups:
        raise ValueError("no working hours given; write e.g. \"mon-fri 08:00-17:00\"")
    for group in groups:
        days_text, _, slots_text = group.partition(" ")
        days = _parse_days(days_text)
        slots = [_parse_slot(s.strip(), group) for s in slots_text.split(",") if s.strip()]
        if not slots:
            raise ValueError(f"{group!r}: give times after the days, e.g. \"mon-fri "
                             "08:00-17:00\"")
        for day in days:
            week[day].extend(slots)
    for number, slots in enumerate(week):
        slots.sort()
        for (_, end), (start, _) in pairwise(slots):
            if start < end:
                raise ValueError(f"{text!r}: the times of {DAYS[number]} overlap")
    return tuple(tuple(slots) for slots in week)


def _parse_days(text: str) -> list[int]:
    days: list[int] = []
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"{text!r} is not a list of days; use {', '.join(DAYS)}, "
                             "a range such as mon-fri, or several with commas")
        begin, end = DAYS.index(first), DAYS.index(last or first)
        if end < begin:
            raise ValueError(f"{part!r}: a range of days runs forward within the week")
        days.extend(range(begin, end + 1))
    return days


def _parse_slot(text: str, group: str) -> Slot:
    match = _SLOT.match(text)
    if not match:
        raise ValueError(f"{group!r}: {text!r} is not a time range such as 08:00-17:00")
    start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start_h > 23 or start_m > 59 or end_m > 59 or end > _MINUTES_PER_DAY:
        raise ValueError(f"{group!r}: {text!r} is not a time of day (00:00 to 24:00)")
    if end <= start:
        raise ValueError(f"{group!r}: {text!r} ends before it starts (a range over midnight "
                         "is two ranges: 22:00-24:00 and 00:00-06:00 the next day)")
    return start, end
