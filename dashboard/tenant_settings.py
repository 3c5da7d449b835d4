"""Writes behind the settings page that no other app offers a service for: the ordering
settings (OrderSettings) and the messaging limits (MessagingSettings), both in the
current tenant schema. Bot pause, sessions, webhooks and API keys use their apps' own
services."""

from __future__ import annotations

import logging
import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from messaging.models import MessagingSettings
from orders.models import OrderSettings

logger = logging.getLogger(__name__)

WEEKDAYS = ("0", "1", "2", "3", "4", "5", "6")  # Monday .. Sunday, as OrderSettings keeps them
_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-3]):([0-5]\d)$")

# The ordering settings the page edits as plain fields; opening_hours has a field a day.
ORDER_PLAIN_FIELDS = (
    "rating_delay_minutes",
    "confirmed_too_long_minutes",
    "promo_text",
    "apology_text",
    "support_contact",
)
ORDER_SETTINGS_FIELDS = ("opening_hours", *ORDER_PLAIN_FIELDS)
LIMIT_FIELDS = (
    "limits_enabled",
    "outbound_per_tenant_per_minute",
    "outbound_per_recipient_per_minute",
    "outbound_burst",
    "outbound_burst_cooldown_seconds",
    "outbound_daily_per_session",
    "duplicate_window_seconds",
    "inbound_per_customer_per_minute",
    "inbound_pause_minutes",
    "inbound_per_tenant_per_minute",
)
# A limit of 0 would stop every message: these must be at least 1.
_AT_LEAST_ONE = frozenset(LIMIT_FIELDS) - {"limits_enabled", "duplicate_window_seconds"}


def opening_hours_parse(texts: dict[str, str]) -> dict[str, list[list[str]]]:
    """{"0": "09:00-14:00, 18:00-23:00", ...} -> {"0": [["09:00", "14:00"], ...]}.

    Every day empty means always open; otherwise an empty day is closed. Errors by day."""
    hours: dict[str, list[list[str]]] = {}
    errors: dict[str, list[str]] = {}
    for day in WEEKDAYS:
        ranges = []
        for part in (texts.get(day) or "").split(","):
            part = part.strip()
            if not part:
                continue
            match = _RANGE.match(part)
            if not match:
                errors.setdefault(f"hours_{day}", []).append(
                    _("%(value)s is not a range like 09:00-14:00.") % {"value": part}
                )
                continue
            start, end = f"{match[1]}:{match[2]}", f"{match[3]}:{match[4]}"
            ranges.append([start, end])
        hours[day] = ranges
    if errors:
        raise ValidationError(errors)
    return hours if any(hours.values()) else {}


def order_settings_update(*, values: dict) -> OrderSettings:
    """Change the ordering settings given (see ORDER_SETTINGS_FIELDS); errors by field."""
    unknown = sorted(set(values) - set(ORDER_SETTINGS_FIELDS))
    if unknown:
        raise ValidationError({name: [_("This field cannot be changed.")] for name in unknown})
    errors: dict[str, list[str]] = {}
    for name in ("rating_delay_minutes", "confirmed_too_long_minutes"):
        if name in values and not (isinstance(values[name], int) and 0 <= values[name] <= 10080):
            errors[name] = [_("Give a number of minutes between 0 and 10080 (a week).")]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        settings = OrderSettings.current()
        settings = OrderSettings.objects.select_for_update().get(pk=settings.pk)
        for name, value in values.items():
            setattr(settings, name, value)
        settings.full_clean()
        settings.save(update_fields=[*values, "updated_at"])
    logger.info("order settings updated: %s", ", ".join(sorted(values)))
    return settings


def messaging_limits_update(*, values: dict) -> MessagingSettings:
    """Change the tenant's messaging limits given (see LIMIT_FIELDS); errors by field."""
    unknown = sorted(set(values) - set(LIMIT_FIELDS))
    if unknown:
        raise ValidationError({name: [_("This field cannot be changed.")] for name in unknown})
    errors = {
        name: [_("Use at least 1.")]
        for name in _AT_LEAST_ONE
        if name in values and not (isinstance(values[name], int) and values[name] >= 1)
    }
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        settings = MessagingSettings.current()
        settings = MessagingSettings.objects.select_for_update().get(pk=settings.pk)
        for name, value in values.items():
            setattr(settings, name, value)
        settings.full_clean()
        settings.save(update_fields=[*values, "updated_at"])
    logger.info("messaging limits updated: %s", ", ".join(sorted(values)))
    return settings
