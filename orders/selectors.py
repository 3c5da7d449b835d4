"""Reads of a tenant's orders. Call them in the tenant's schema."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import Avg, Count, Q, QuerySet, Sum
from django.utils import timezone

from orders.models import Order, OrderSettings, OrderStatus

S = OrderStatus
# Orders that count for the day's figures: placed, and not cancelled.
_COUNTED = [S.CONFIRMED, S.PREPARING, S.OUT_FOR_DELIVERY, S.DELIVERED, S.RATED]


def tenant_timezone(name: str | None = None) -> zoneinfo.ZoneInfo:
    """The current tenant's time zone (its Tenant row, public schema), or `name`'s."""
    from tenants.models import Tenant

    name = name or getattr(getattr(connection, "tenant", None), "timezone", None)
    if not name:
        name = (
            Tenant.objects.filter(schema_name=connection.schema_name)
            .values_list("timezone", flat=True)
            .first()
        )
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def tenant_today() -> date:
    return timezone.now().astimezone(tenant_timezone()).date()


def _day_bounds(day: date | None) -> tuple[datetime, datetime]:
    zone = tenant_timezone()
    day = day or timezone.now().astimezone(zone).date()
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


def orders_of_day(*, day: date | None = None, status: str | None = None) -> QuerySet[Order]:
    """Orders placed on `day` (the tenant's local day; today by default), newest first,
    drafts left out; `status` narrows to one status."""
    start, end = _day_bounds(day)
    orders = (
        Order.objects.select_related("contact")
        .prefetch_related("lines")
        .filter(created_at__gte=start, created_at__lt=end)
        .exclude(status=S.DRAFT)
    )
    if status:
        orders = orders.filter(status=status)
    return orders.order_by("-created_at", "-id")


def orders_summary(*, day: date | None = None) -> dict:
    """The day's figures: orders placed (not cancelled), revenue in minor units, the
    average rating (None without ratings), and how many wait for the kitchen (CONFIRMED)."""
    start, end = _day_bounds(day)
    figures = Order.objects.filter(created_at__gte=start, created_at__lt=end).aggregate(
        count=Count("id", filter=Q(status__in=_COUNTED)),
        revenue=Sum("total_minor", filter=Q(status__in=_COUNTED)),
        rating=Avg("rating", filter=Q(rating__isnull=False)),
        waiting=Count("id", filter=Q(status=S.CONFIRMED)),
        cancelled=Count("id", filter=Q(status=S.CANCELLED)),
    )
    average = figures["rating"]
    return {
        "count": figures["count"],
        "revenue_minor": int(figures["revenue"] or 0),
        "currency": OrderSettings.current().currency,
        "average_rating": round(float(average), 2) if average is not None else None,
        "waiting": figures["waiting"],
        "cancelled": figures["cancelled"],
    }
