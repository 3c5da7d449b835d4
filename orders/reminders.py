"""Staff reminders and quiet conversations (beat jobs, per tenant).

- `late_orders_flag()`: an order CONFIRMED for longer than the tenant's
  `confirmed_too_long_minutes` without moving to PREPARING is marked `is_late` and its
  session's owners get one WhatsApp alert. The flag is set under the row lock with SKIP
  LOCKED and the alert's idempotency key is per order and owner: once, however often or
  concurrently the job runs.
- `bot_conversations_expire()`: a conversation left unfinished for the tenant's
  `bot_idle_minutes` gets a short notice and starts over.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from orders.models import BotConversation, BotState, Order, OrderSettings, OrderStatus

logger = logging.getLogger(__name__)

BATCH = 200


def late_order_alert_text(order: Order, minutes: int) -> str:
    return _(
        "Order #%(number)s has been waiting for %(minutes)s minutes without being prepared."
    ) % {"number": order.number, "minutes": minutes}


def late_orders_flag(*, now=None) -> int:
    """Flag and announce the current tenant's late orders; returns how many."""
    from orders.notify import order_updated_publish, owner_alert
    from sessions_app.models import WhatsAppSession

    now = now or timezone.now()
    settings = OrderSettings.current()
    minutes = settings.confirmed_too_long_minutes
    schema = connection.schema_name
    with transaction.atomic():
        orders = list(
            Order.objects.select_for_update(skip_locked=True)
            .filter(
                status=OrderStatus.CONFIRMED,
                is_late=False,
                confirmed_at__lte=now - timedelta(minutes=minutes),
            )
            .order_by("confirmed_at")[:BATCH]
        )
        sessions = {
            s.pk: s
            for s in WhatsAppSession.objects.select_related("tenant").filter(
                pk__in={o.session_id for o in orders}
            )
        }
        for order in orders:
            order.is_late = True
            order.save(update_fields=["is_late", "updated_at"])
            session = sessions.get(order.session_id)
            if session is not None:
                owner_alert(
                    session=session,
                    key=f"order-{order.public_id}-late",
                    text_of=lambda order=order: late_order_alert_text(order, minutes),
                )
            order_id = order.pk

            def publish(order_id=order_id) -> None:
                fresh = Order.objects.select_related("contact").get(pk=order_id)
                order_updated_publish(fresh, schema=schema)

            transaction.on_commit(publish)
    if orders:
        logger.info("%s late orders flagged in %s", len(orders), schema)
    return len(orders)


def bot_conversations_expire(*, now=None) -> int:
    """Tell customers whose unfinished order went quiet that it expired; start over."""
    from messaging.outbound import message_send
    from orders.bot_turns import expiry_notice
    from sessions_app.models import WhatsAppSession

    now = now or timezone.now()
    settings = OrderSettings.current()
    expired = 0
    with transaction.atomic():
        conversations = list(
            BotConversation.objects.select_for_update(skip_locked=True)
            .select_related("contact")
            .exclude(state=BotState.IDLE)
            .filter(last_activity_at__lt=now - timedelta(minutes=settings.bot_idle_minutes))[:BATCH]
        )
        sessions = {
            s.pk: s
            for s in WhatsAppSession.objects.select_related("tenant").filter(
                pk__in={c.session_id for c in conversations}
            )
        }
        for conversation in conversations:
            session = sessions.get(conversation.session_id)
            handled = conversation.context.get("handled", [])
            last = max(handled, default=0)
            conversation.state = BotState.IDLE
            conversation.context = {"handled": handled}
            conversation.save(update_fields=["state", "context", "updated_at"])
            expired += 1
            if session is None:
                continue
            language = conversation.language or session.tenant.language or "he"
            with override(language):
                text = expiry_notice()
            message_send(
                session=session,
                to=conversation.contact.phone,
                text=text,
                idempotency_key=f"bot-expired-{conversation.pk}-{last}",
            )
    return expired
