"""The owner menu's clock. Every service of the menu reads `now()` (or takes `now=`), so
tests walk through lockouts and timeouts by shifting it instead of sleeping."""

from datetime import datetime, timedelta

from django.utils import timezone

_offset = timedelta(0)


def now() -> datetime:
    return timezone.now() + _offset


def clock_shift(delta: timedelta) -> None:
    """Move this process's menu clock forward (tests only)."""
    global _offset
    _offset += delta


def clock_reset() -> None:
    global _offset
    _offset = timedelta(0)
