"""Celery tasks of the orders app. Each loads what it needs and calls a service.

`orders.orders_sweep` (beat, every ORDERS_SWEEP_SECONDS) queues one
`orders.orders_tenant_sweep` per active tenant, with the tenant's schema in its headers
(tenant-schemas-celery). Both are safe to run twice, or twice at once: every piece of
work claims its rows with SKIP LOCKED and sends with a per-row idempotency key.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django_tenants.utils import get_public_schema_name

logger = logging.getLogger(__name__)


@shared_task(name="orders.orders_sweep")
def orders_sweep() -> int:
    from tenants.models import Tenant

    schemas = list(
        Tenant.objects.filter(is_active=True)
        .exclude(schema_name=get_public_schema_name())
        .values_list("schema_name", flat=True)
    )
    for schema in schemas:
        orders_tenant_sweep.apply_async(
            headers={"_schema_name": schema},
            expires=settings.ORDERS_SWEEP_SECONDS * 10,
        )
    return len(schemas)


@shared_task(name="orders.orders_tenant_sweep")
def orders_tenant_sweep() -> dict:
    """Rating prompts due, prompts to close, late orders, quiet conversations."""
    from orders.ratings import rating_prompts_expire, rating_prompts_send
    from orders.reminders import bot_conversations_expire, late_orders_flag

    done = {}
    for name, job in (
        ("prompted", rating_prompts_send),
        ("prompts_closed", rating_prompts_expire),
        ("late", late_orders_flag),
        ("conversations_expired", bot_conversations_expire),
    ):
        try:
            done[name] = job()
        except Exception:  # one failing job does not hold up the others
            logger.exception("orders sweep: %s failed", name)
    return done
