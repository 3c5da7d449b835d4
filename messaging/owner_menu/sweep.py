"""The owner menu's beat job: in every tenant schema, expire steps and deliver due
reminders. One broken schema never stops the others."""

from __future__ import annotations

import logging

from django_tenants.utils import get_public_schema_name, get_tenant_model, schema_context

from messaging.owner_menu.reminders import reminders_due_run
from messaging.owner_menu.timeouts import owner_states_expire

logger = logging.getLogger(__name__)


def owner_menu_sweep() -> dict[str, int]:
    """Returns how many steps expired and how many reminders were delivered, in all."""
    schemas = (
        get_tenant_model()
        .objects.exclude(schema_name=get_public_schema_name())
        .filter(is_active=True)
        .order_by("pk")
        .values_list("schema_name", flat=True)
    )
    totals = {"expired": 0, "reminders": 0}
    for schema in list(schemas):
        try:
            with schema_context(schema):
                totals["expired"] += owner_states_expire()
                totals["reminders"] += reminders_due_run()
        except Exception:
            logger.exception("owner menu sweep failed in schema %s", schema)
    return totals
