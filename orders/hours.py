"""Opening hours: is the business open now, and how to say its hours. Pure functions.

`hours` maps a weekday ("0" Monday .. "6" Sunday, in the tenant's time zone) to a list
of ["HH:MM", "HH:MM"] ranges. A range whose end is at or before its start runs past
midnight into the next day ("18:00"-"02:00"). An empty mapping: always open.
"""

from __future__ import annotations

import re
from datetime import datetime, time

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _time(value: str) -> time:
    match = _HHMM.match(str(value))
    if not match:
        raise ValueError(value)
    return time(int(match.group(1)), int(match.group(2)))


def opening_hours_validate(hours) -> dict:
    """The hours, checked; ValidationError naming the bad day."""
    if not isinstance(hours, dict):
        raise ValidationError({"opening_hours": "Opening hours map weekdays 0-6 to ranges."})
    for day, ranges in hours.items():
        if str(day) not in {str(n) for n in range(7)}:
            raise ValidationError({"opening_hours": f"{day!r} is not a weekday (0-6)."})
        if not isinstance(ranges, list):
            raise ValidationError({"opening_hours": f"Day {day}: a list of [from, to]."})
        for pair in ranges:
            try:
                start, end = pair
                _time(start), _time(end)
            except (TypeError, ValueError):
                raise ValidationError(
                    {"opening_hours": f'Day {day}: {pair!r} is not ["HH:MM", "HH:MM"].'}
                ) from None
    return hours


def is_open(hours: dict, now: datetime) -> bool:
    """Open at `now` (a local, aware or naive, datetime)?"""
    if not hours:
        return True
    moment = now.time().replace(second=0, microsecond=0)
    today = now.weekday()
    yesterday = (today - 1) % 7
    for start, end in hours.get(str(today), []):
        start_t, end_t = _time(start), _time(end)
        if start_t < end_t:
            if start_t <= moment < end_t:
                return True
        elif moment >= start_t:  # past midnight: the evening part
            return True
    for start, end in hours.get(str(yesterday), []):
        start_t, end_t = _time(start), _time(end)
        if end_t <= start_t and moment < end_t:  # yesterday's range, after midnight
            return True
    return False


def _day_names() -> list[str]:
    return [
        _("Monday"),
        _("Tuesday"),
        _("Wednesday"),
        _("Thursday"),
        _("Friday"),
        _("Saturday"),
        _("Sunday"),
    ]


def hours_lines(hours: dict, *, first_day: int = 6) -> list[str]:
    """One line per day in the active language, the week starting on `first_day`
    (Sunday): "Sunday: 11:00-23:00", "Saturday: closed"."""
    names = _day_names()
    lines = []
    for offset in range(7):
        day = (first_day + offset) % 7
        ranges = hours.get(str(day), [])
        text = (
            ", ".join(f"{start}-{end}" for start, end in ranges)
            if ranges
            else pgettext("opening hours", "closed")
        )
        lines.append(f"{names[day]}: {text}")
    return lines
