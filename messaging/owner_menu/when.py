"""Natural times for reminders, in Hebrew, English and Arabic.

`when_parse(text, now=..., tz=...)` understands what owners write:

- relative: "in 2 hours", "in 30 min", "in an hour and a half"... "בעוד שעתיים",
  "בעוד 10 דקות", "בעוד חצי שעה"; "بعد ساعتين", "بعد 5 دقائق", "خلال ساعة";
- a day and a time: "tomorrow 9:00", "today at 18:30", "tomorrow 9pm", "מחר ב-9",
  "היום ב18:30", "מחרתיים בשעה 8 בבוקר", "غدا 9", "غدًا الساعة 9 مساء", "اليوم 18:00";
- a date and a time: "25/12 9:00", "25.12.2026 18:30", "2026-12-25 09:00";
- a time alone: "21:30", "at 7pm", "ב-21:00" (today, or tomorrow when it has passed).

Digits may be Arabic-Indic. The result is timezone-aware (in `tz`), or None when the
text is not a time. Whether it is in the future is the caller's question.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
# Arabic short vowels and tanween ("غدًا"), and the tatweel.
_ARABIC_MARKS = re.compile("[\u064b-\u065f\u0670\u0640]")

_SECOND, _MINUTE, _HOUR, _DAY = 1, 60, 3600, 86400

# Units, by the words for them (longest alternatives first in the regex below).
_UNITS = {
    _SECOND: ["seconds", "second", "secs", "sec", "s", "שניות", "שנייה", "שניה", "ثواني",
              "ثوان", "ثانية", "ثوانٍ"],
    _MINUTE: ["minutes", "minute", "mins", "min", "m", "דקות", "דקה", "دقائق", "دقيقة",
              "دقايق"],
    _HOUR: ["hours", "hour", "hrs", "hr", "h", "שעות", "שעה", "ساعات", "ساعة", "ساعه"],
    _DAY: ["days", "day", "d", "ימים", "יום", "أيام", "ايام", "يوم"],
}  # fmt: skip
_UNIT_OF = {word: seconds for seconds, words in _UNITS.items() for word in words}
_UNIT_RE = "|".join(sorted(map(re.escape, _UNIT_OF), key=len, reverse=True))

# Whole amounts said in one word.
_WORDS = {
    "an hour": _HOUR, "a hour": _HOUR, "one hour": _HOUR, "half an hour": 30 * _MINUTE,
    "half hour": 30 * _MINUTE, "quarter of an hour": 15 * _MINUTE,
    "a quarter hour": 15 * _MINUTE, "a minute": _MINUTE, "a day": _DAY, "a second": _SECOND,
    "an hour and a half": 90 * _MINUTE, "two hours": 2 * _HOUR, "a couple of hours": 2 * _HOUR,
    "שעה": _HOUR, "שעתיים": 2 * _HOUR, "חצי שעה": 30 * _MINUTE, "רבע שעה": 15 * _MINUTE,
    "שעה וחצי": 90 * _MINUTE, "דקה": _MINUTE, "דקותיים": 2 * _MINUTE, "יום": _DAY,
    "יומיים": 2 * _DAY, "שנייה": _SECOND,
    "ساعة": _HOUR, "ساعه": _HOUR, "ساعتين": 2 * _HOUR, "ساعتان": 2 * _HOUR,
    "نصف ساعة": 30 * _MINUTE, "نص ساعة": 30 * _MINUTE, "ربع ساعة": 15 * _MINUTE,
    "ساعة ونصف": 90 * _MINUTE, "دقيقة": _MINUTE, "دقيقتين": 2 * _MINUTE,
    "دقيقتان": 2 * _MINUTE, "يوم": _DAY, "يومين": 2 * _DAY, "يومان": 2 * _DAY,
    "ثانية": _SECOND,
}  # fmt: skip

_RELATIVE_PREFIX = re.compile(r"^(?:in|after|within|בעוד|עוד|תוך|بعد|خلال|كمان)\s+")
_AMOUNT = re.compile(rf"^(\d+(?:[.,]\d+)?)\s*(?:-\s*)?({_UNIT_RE})$")
_JOINER = re.compile(r"\s+(?:and\s+|ו-?|و\s*)")  # noqa: RUF001

_TODAY = ("today", "tonight", "היום", "הערב", "اليوم", "الليلة")
_TOMORROW = ("tomorrow", "tmrw", "מחר", "غدا", "غداً", "بكرة", "بكره", "بكرا")
_AFTER_TOMORROW = ("the day after tomorrow", "day after tomorrow", "מחרתיים", "بعد غد",
                   "بعد بكرة", "بعد بكره")  # fmt: skip
# Words between a day and its time ("at", "ב-", "בשעה", "الساعة", "في").
_AT = re.compile(r"^(?:at\s+|@\s*|בשעה\s+|ב-?\s*|ال?ساعة\s+|في\s+|على\s+)")

_MORNING = ("am", "a.m.", "in the morning", "morning", "בבוקר", "صباحا", "صباح", "الصبح")
_EVENING = ("pm", "p.m.", "in the evening", "evening", "tonight", "בערב", "אחר הצהריים",
            "אחה\"צ", "בלילה", "مساء", "مساءا", "المساء", "بالليل", "ظهرا", "العصر")  # fmt: skip
_TIME = re.compile(r"^(\d{1,2})(?:[:.](\d{2}))?$")
_DATE = re.compile(r"^(\d{1,2})[/.](\d{1,2})(?:[/.](\d{2}|\d{4}))?$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")


def _normalised(text: str) -> str:
    text = _ARABIC_MARKS.sub("", text.translate(_DIGITS)).casefold().strip()
    text = re.sub(r"[\u200e\u200f\u202a-\u202e]", "", text)  # direction marks
    text = re.sub(r"\s+", " ", text).strip(" .!?,")
    # "ב-9", "ב9:30" -> "ב 9", so the time is a word of its own
    return re.sub(r"(^|\s)ב-?(?=\d)", r"\1ב ", text)


def _duration(text: str) -> int | None:
    """Seconds in "2 hours", "שעתיים", "ساعة و10 دقائق"...; None when it is not one."""
    if text in _WORDS:
        return _WORDS[text]
    match = _AMOUNT.match(text)
    if match:
        amount = float(match.group(1).replace(",", "."))
        return round(amount * _UNIT_OF[match.group(2)])
    parts = _JOINER.split(text)
    if len(parts) > 1:
        total = 0
        for part in parts:
            part = part.strip()
            if part in ("half", "a half", "חצי", "نصف", "نص"):
                total += 30 * _MINUTE  # "an hour and a half"
                continue
            seconds = _duration(part)
            if seconds is None:
                return None
            total += seconds
        return total
    return None


def _clock(text: str) -> time | None:
    """ "9", "9:30", "21.15", "9pm", "8 בבוקר", "9 مساء" -> a time of day."""
    text = _AT.sub("", text).strip()
    afternoon = morning = False
    for word in sorted(_EVENING, key=len, reverse=True):
        if text.endswith(word):
            text, afternoon = text[: -len(word)].strip(), True
            break
    else:
        for word in sorted(_MORNING, key=len, reverse=True):
            if text.endswith(word):
                text, morning = text[: -len(word)].strip(), True
                break
    text = _AT.sub("", text).strip()
    match = _TIME.match(text)
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if afternoon and hour < 12:
        hour += 12
    if morning and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _at(day: date, clock: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, clock).replace(tzinfo=tz)


def _date(text: str, today: date) -> date | None:
    match = _ISO_DATE.match(text)
    if match:
        year, month, day = (int(g) for g in match.groups())
    else:
        match = _DATE.match(text)
        if not match:
            return None
        day, month = int(match.group(1)), int(match.group(2))
        year_text = match.group(3)
        if year_text is None:
            year = today.year
        else:
            year = int(year_text) + (2000 if len(year_text) == 2 else 0)
    try:
        found = date(year, month, day)
    except ValueError:
        return None
    if match.re is _DATE and match.group(3) is None and found < today:
        found = date(year + 1, month, day)  # "5/1" in December: next January
    return found


def when_parse(text: str, *, now: datetime, tz: str | ZoneInfo) -> datetime | None:
    """The moment `text` names, seen from `now` in the time zone `tz`; None if none."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    text = _normalised(text or "")
    if not text or len(text) > 80:
        return None
    local_now = now.astimezone(zone)
    today = local_now.date()

    relative = _RELATIVE_PREFIX.match(text)
    if relative:
        rest = text[relative.end() :]
        if not any(rest.startswith(word) for word in ("غد", "بكر")):  # "بعد غد" is a day
            seconds = _duration(rest)
            return None if seconds is None or seconds <= 0 else now + timedelta(seconds=seconds)

    for words, offset in ((_AFTER_TOMORROW, 2), (_TOMORROW, 1), (_TODAY, 0)):
        for word in sorted(words, key=len, reverse=True):
            if text == word or text.startswith(word + " "):
                clock = _clock(text[len(word) :].strip())
                if clock is None:
                    return None
                if word in ("tonight", "הערב", "الليلة") and clock.hour < 12:
                    clock = clock.replace(hour=clock.hour + 12)
                return _at(today + timedelta(days=offset), clock, zone)

    head, _, tail = text.partition(" ")
    day = _date(head, today)
    if day is not None:
        clock = _clock(tail) if tail else None
        return None if clock is None else _at(day, clock, zone)

    clock = _clock(text)
    if clock is not None:
        moment = _at(today, clock, zone)
        return moment if moment > local_now else _at(today + timedelta(days=1), clock, zone)
    return None
