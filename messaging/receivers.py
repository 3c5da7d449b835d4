"""The outbound path's side of the session runner's signals (sessions_app/signals.py),
all run in the runner process:

- `send_checking`, from the sender thread before each send: opt-out, limits and the
  humanisation steps (messaging.outbound.outbound_live_check);
- `send_finished`, from the sender thread after a send: sent, or failed for good;
- `receipt_received`, from the main thread: delivered and read receipts.

Sends carry `ref={"schema": ..., "message_id": ...}` (messaging.outbound puts it there);
anything else in the outbox (e.g. `manage.py sessions send`) is not ours and is left
alone.
"""

from __future__ import annotations

import logging

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_tenants.utils import schema_context

from messaging.models import WebhookEndpoint
from messaging.outbound import (
    message_failed_record,
    message_sent_record,
    outbound_live_check,
)
from sessions_app.providers.base import ReceiptKind
from sessions_app.signals import receipt_received, send_checking, send_finished

logger = logging.getLogger(__name__)

_RECEIPT_STATUS = {
    ReceiptKind.DELIVERED: "delivered",
    ReceiptKind.READ: "read",
    ReceiptKind.PLAYED: "read",  # a voice note listened to
}


def _ours(ref) -> tuple[str, int] | None:
    if not isinstance(ref, dict):
        return None
    schema, message_id = ref.get("schema"), ref.get("message_id")
    if not isinstance(schema, str) or not schema or not isinstance(message_id, int):
        return None
    return schema, message_id


@receiver(send_checking, dispatch_uid="messaging.outbound_check")
def check_outbound(sender, *, session_id, ref, attempts, **kwargs):
    """Errors propagate: the runner then tries the send again a little later."""
    found = _ours(ref)
    if found is None:
        return None
    schema, message_id = found
    hand = ref.get("hand")
    with schema_context(schema):
        return outbound_live_check(
            session_id=session_id,
            message_id=message_id,
            attempts=attempts,
            hand=hand if isinstance(hand, int) else None,
        )


@receiver(send_finished, dispatch_uid="messaging.outbound_finished")
def record_finished(sender, *, ref, provider_message_id, error, attempts, **kwargs):
    found = _ours(ref)
    if found is None:
        return
    schema, message_id = found
    try:
        with schema_context(schema):
            if provider_message_id:
                message_sent_record(
                    message_id=message_id,
                    provider_message_id=provider_message_id,
                    attempts=attempts,
                )
            else:
                message_failed_record(
                    message_id=message_id, error=error or "Failed", attempts=attempts
                )
    except Exception:  # the send itself is done: log, never make the runner resend it
        logger.exception("message %s in %s: recording the send failed", message_id, schema)


@receiver(receipt_received, dispatch_uid="messaging.outbound_receipts")
def record_receipt(sender, *, session, receipt, **kwargs):
    from messaging.status import message_status_record

    status = _RECEIPT_STATUS.get(receipt.kind)
    if status is None:
        return
    with schema_context(session.tenant.schema_name):
        for provider_message_id in receipt.provider_message_ids:
            try:
                message_status_record(
                    session_id=session.pk,
                    provider_message_id=provider_message_id,
                    status=status,
                    at=receipt.timestamp,
                )
            except Exception:
                logger.exception(
                    "session %s: receipt for %s not recorded", session.pk, provider_message_id
                )


# --- this process's cache of webhook endpoints (messaging/webhooks.py) -----------------


def _endpoints_changed(sender, **kwargs):
    from django.db import connection, transaction

    from messaging.webhooks import webhook_endpoints_forget

    schema = connection.schema_name
    webhook_endpoints_forget(schema)
    transaction.on_commit(lambda: webhook_endpoints_forget(schema))


post_save.connect(
    _endpoints_changed, sender=WebhookEndpoint, dispatch_uid="webhook_endpoints_saved"
)
post_delete.connect(
    _endpoints_changed, sender=WebhookEndpoint, dispatch_uid="webhook_endpoints_deleted"
)
