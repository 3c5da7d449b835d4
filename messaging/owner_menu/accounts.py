"""Owners' accounts: PINs (hashed by Django's password hashers), logins, lockouts, and
the audit trail the dashboard shows (`owner_audit_entries`, `owner_lockouts_active`)."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta

from django.contrib.auth.hashers import check_password, make_password
from django.db.models import QuerySet

from messaging.owner_menu import clock
from messaging.owner_models import OwnerAccount, OwnerAuditEntry

LOGIN_LIFETIME = timedelta(days=30)  # a login ends after this long without activity
MAX_WRONG_PINS = 3
LOCKOUT = timedelta(minutes=5)
PIN_PATTERN = re.compile(r"^\d{4,6}$")
REDACTED = "••••"

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
# PINs anyone would try first, besides repeated digits and runs (see pin_is_trivial).
_COMMON_PINS = frozenset(
    {"1212", "2580", "1122", "1313", "2000", "2001", "1010", "6969", "4545", "0852",
     "5683", "1004", "7777", "121212", "112233", "123123", "654321", "159753", "147258"}
)  # fmt: skip


def digits_normalised(text: str) -> str:
    """Arabic-Indic digits as ASCII, spaces and dashes between digits dropped."""
    text = (text or "").translate(_DIGITS).strip()
    return re.sub(r"(?<=\d)[\s-]+(?=\d)", "", text)


def looks_like_pin(text: str) -> bool:
    return bool(PIN_PATTERN.match(digits_normalised(text)))


def pin_is_trivial(pin: str) -> bool:
    """Repeated digits (0000), runs up or down (1234, 9876, 0123), repeated pairs or
    triples (1212, 123123) and a few other favourites."""
    if len(set(pin)) == 1 or pin in _COMMON_PINS:
        return True
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    if steps in ({1}, {9}):
        return True
    return any(len(pin) % n == 0 and pin == pin[:n] * (len(pin) // n) for n in (2, 3))


def pin_hash(pin: str) -> str:
    return make_password(pin)


def pin_matches(pin: str, hashed: str) -> bool:
    return bool(hashed) and check_password(pin, hashed)


def owner_logged_in(account: OwnerAccount, *, now: datetime) -> bool:
    """Logged in: registered, not logged out, active within LOGIN_LIFETIME."""
    return bool(
        account.pin_hash
        and account.logged_in
        and account.last_active_at
        and now - account.last_active_at < LOGIN_LIFETIME
    )


def owner_locked_for(account: OwnerAccount, *, now: datetime) -> timedelta | None:
    """How long the owner stays locked out, or None."""
    if account.locked_until and account.locked_until > now:
        return account.locked_until - now
    return None


def owner_audit_record(
    *, account: OwnerAccount | None, phone: str, action: str, now: datetime, **detail
) -> OwnerAuditEntry:
    """One audit row. Callers never put a PIN (or its hash) in `detail`."""
    return OwnerAuditEntry.objects.create(
        owner=account, phone=phone, action=action, detail=detail, created_at=now
    )


# --- for the dashboard ----------------------------------------------------------------


def owner_audit_entries(*, limit: int = 100) -> list[OwnerAuditEntry]:
    """The newest owner actions of the current tenant, newest first."""
    limit = max(1, min(int(limit), 1000))
    entries = OwnerAuditEntry.objects.select_related("owner").order_by("-created_at", "-id")
    return list(entries[:limit])


def owner_lockouts_active(*, now: datetime | None = None) -> QuerySet[OwnerAccount]:
    """Owners locked out right now (wrong PINs), the one whose lockout ends first first."""
    now = now or clock.now()
    return OwnerAccount.objects.filter(locked_until__gt=now).order_by("locked_until")
