"""Delivery statuses reported by providers (Twilio status callbacks, WhatsApp receipts)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from messaging.events import message_event_after_commit
from messaging.models import Message

_TIMESTAMP_FIELD = {
    Message.Status.SENT: "sent_at",
    Message.Status.DELIVERED: "delivered_at",
    Message.Status.READ: "read_at",
    Message.Status.FAILED: "failed_at",
}


def message_status_record(
    *,
    session_id: int,
    provider_message_id: str,
    status: str,
    error_code: int | None = None,
    at: datetime | None = None,
) -> Message | None:
    """Move a sent message forward (queued < sent < delivered < read), never back.

    `failed` and `undelivered` mark it failed with the provider's error code, and keep
    it as a dead letter (listed by `message_dead_letters()`, sent again by
    `message_retry()`). A report older than the stored status, or about a message we
    don't know, changes nothing. Returns the message when it changed.
    """
    at = at or timezone.now()
    status = Message.Status.FAILED if status == "undelivered" else status
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(
                session_id=session_id,
                provider_message_id=provider_message_id,
                direction=Message.Direction.OUTBOUND,
            )
            .first()
        )
        if message is None or message.status in (Message.Status.FAILED, Message.Status.SUPPRESSED):
            return None
        order = Message.STATUS_ORDER
        if status == Message.Status.FAILED:
            if message.status == Message.Status.READ:
                return None  # a late failure report for a message already read
            message.last_error = f"The provider reported it undelivered (code {error_code})"
            message.error_code = str(error_code or "")
            message.dead_letter = True
        elif status not in order or order[status] <= order.get(message.status, -1):
            return None
        fields = ["status", "last_error", "error_code", "dead_letter"]
        message.status = status
        stamp = _TIMESTAMP_FIELD.get(status)
        if stamp:
            setattr(message, stamp, at)
            fields.append(stamp)
        # A read report implies delivery even when the delivered report never came.
        if status == Message.Status.READ and message.delivered_at is None:
            message.delivered_at = at
            fields.append("delivered_at")
        message.save(update_fields=fields)
        message_event_after_commit(message, "message.status")
    return message
