"""What leaves the database about messages: dashboard events and outgoing webhooks.

Always after commit: a rolled-back change tells nobody anything.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django_tenants.utils import schema_context

from dashboard.realtime import tenant_event_publish

logger = logging.getLogger(__name__)


def message_as_event(message) -> dict:
    """The JSON shape of a message in dashboard events and webhook payloads."""
    contact = message.conversation.contact
    return {
        "id": str(message.public_id),
        "conversation": message.conversation_id,
        "session_id": message.session_id,
        "direction": message.direction,
        "kind": message.kind,
        "text": message.text,
        "status": message.status,
        "contact": {"phone": contact.phone, "name": contact.push_name},
        "provider_message_id": message.provider_message_id,
        "reply_to_provider_id": message.reply_to_provider_id,
        "payload": message.payload,
        "media": bool(message.media_file or message.media_url),
        "error": message.last_error,
        "created_at": message.created_at.isoformat() if message.created_at else None,
    }


def event_publish(*, schema: str, event_type: str, data: dict, key: str) -> None:
    """Publish `{"type": event_type, key: data}` to a tenant's dashboards and queue it for
    the tenant's webhook endpoints, now."""
    try:
        tenant_event_publish(schema_name=schema, event={"type": event_type, key: data})
    except Exception:
        logger.warning("could not publish %s to the dashboards", event_type, exc_info=True)
    try:
        from messaging.webhooks import webhook_event_emit

        if connection.schema_name == schema:
            # Entering schema_context would make django-tenants send `SET search_path`
            # again on the next query, for nothing.
            webhook_event_emit(event_type=event_type, payload=data)
        else:
            with schema_context(schema):
                webhook_event_emit(event_type=event_type, payload=data)
    except Exception:
        logger.exception("could not queue the %s webhooks", event_type)


def event_publish_after_commit(*, event_type: str, data: dict, key: str) -> None:
    """`event_publish` in the current tenant schema, once the transaction commits."""
    schema = connection.schema_name
    transaction.on_commit(
        lambda: event_publish(schema=schema, event_type=event_type, data=data, key=key)
    )


def message_event_after_commit(message, event_type: str) -> None:
    """`message.new` or `message.status` for this message."""
    event_publish_after_commit(event_type=event_type, data=message_as_event(message), key="message")


def message_event_publish(message, event_type: str) -> None:
    """The same, now, in the current tenant schema (a worker, after the commit that stored
    the message): the inbound path publishes `message.new` from its routing task."""
    event_publish(
        schema=connection.schema_name,
        event_type=event_type,
        data=message_as_event(message),
        key="message",
    )
