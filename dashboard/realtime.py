"""Live events for a tenant's dashboards: one Channels group per tenant schema.

Events are small JSON objects with a `type` (`session.status`, `message.new`, ...).
Services publish them after commit, never inside a transaction that may roll back.
"""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

GROUP_PREFIX = "tenant."


def tenant_group(schema_name: str) -> str:
    return f"{GROUP_PREFIX}{schema_name}"


def tenant_event_publish(*, schema_name: str, event: dict) -> None:
    """Send one event to every dashboard socket of one tenant (callable from sync code)."""
    if "type" not in event:
        raise ValueError("A dashboard event needs a type.")
    async_to_sync(get_channel_layer().group_send)(
        tenant_group(schema_name), {"type": "dashboard.event", "event": event}
    )
