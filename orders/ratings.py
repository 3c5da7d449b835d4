"""Rating prompts and answers.

- `rating_prompts_send()` (the beat job, per tenant): every DELIVERED order whose
  tenant's delay has passed and that was never prompted gets one prompt -- never within
  `DELIVERED_MESSAGE_FIRST` of delivery, even with a delay of 0 minutes, so the
  "delivered" message (queued right after the transition commits) goes out first. Rows
  are claimed with a row lock (SKIP LOCKED) and marked in the same transaction as the
  send, whose idempotency key is per order: running the job twice, or twice at once,
  prompts once.
  A Twilio session outside WhatsApp's 24-hour window (no customer message for 24 hours)
  sends the tenant's content template, or marks the prompt `skipped` without one.
- `rating_prompts_expire()`: a prompt unanswered for 24 hours is `expired`, never repeated.
- `rating_reply_handle()` (the bot, before anything else): "1"-"5", Arabic-Indic digits or
  stars rate the order (order_rate: promo or apology + owner alert, RATED); anything else
  gets one reminder of the expected answer, then the bot carries on as usual.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from orders.bot_parsing import command_of, rating_of
from orders.models import Order, OrderSettings, OrderStatus, RatingPrompt

logger = logging.getLogger(__name__)

ANSWER_WINDOW = timedelta(hours=24)
WHATSAPP_WINDOW = timedelta(hours=24)
BATCH = 200
DELIVERED_MESSAGE_FIRST = timedelta(seconds=10)


def rating_prompt_text(order: Order) -> str:
    return _("How was order #%(number)s? Reply with a number from 1 (bad) to 5 (excellent).") % {
        "number": order.number
    }


def rating_reminder_text() -> str:
    return _("Please reply with just a number from 1 to 5 to rate your order.")


def _awaiting(contact, session_id: int):
    return (
        Order.objects.select_for_update()
        .filter(
            contact=contact,
            session_id=session_id,
            status=OrderStatus.DELIVERED,
            rating_prompt__in=[RatingPrompt.SENT, RatingPrompt.REMINDED],
            rating_prompted_at__gte=timezone.now() - ANSWER_WINDOW,
        )
        .order_by("-rating_prompted_at")
        .first()
    )


def rating_reply_handle(*, contact, session, text: str) -> list[str] | None:
    """The bot's replies when this message answers (or fails to answer) a rating prompt;
    None when no prompt is waiting, or it was reminded once already."""
    from orders.services import order_rate

    order = _awaiting(contact, session.pk)
    if order is None:
        return None
    parsed = rating_of(text)
    if parsed is not None:
        rating, comment = parsed
        order_rate(order_id=order.pk, rating=rating, comment=comment, actor_label=contact.phone)
        return []  # the thank-you or the apology comes with the transition
    if order.rating_prompt == RatingPrompt.SENT and command_of(text) is None:
        order.rating_prompt = RatingPrompt.REMINDED
        order.save(update_fields=["rating_prompt", "updated_at"])
        return [rating_reminder_text()]
    return None


def rating_prompts_send(*, now=None) -> int:
    """Prompt every due order of the current tenant once. Returns how many were handled."""
    from sessions_app.models import WhatsAppSession

    now = now or timezone.now()
    settings = OrderSettings.current()
    delay = max(timedelta(minutes=settings.rating_delay_minutes), DELIVERED_MESSAGE_FIRST)
    due_before = now - delay
    handled = 0
    with transaction.atomic():
        orders = list(
            Order.objects.select_for_update(skip_locked=True)
            .select_related("contact")
            .filter(
                status=OrderStatus.DELIVERED,
                rating_prompt=RatingPrompt.NONE,
                delivered_at__lte=due_before,
                delivered_at__gte=now - ANSWER_WINDOW,
            )
            .order_by("delivered_at")[:BATCH]
        )
        sessions = {
            s.pk: s
            for s in WhatsAppSession.objects.select_related("tenant").filter(
                pk__in={o.session_id for o in orders}
            )
        }
        for order in orders:
            session = sessions.get(order.session_id)
            order.rating_prompt = _prompt(order, session, settings, now)
            order.rating_prompted_at = now
            order.save(update_fields=["rating_prompt", "rating_prompted_at", "updated_at"])
            handled += 1
    return handled


def _prompt(order: Order, session, settings: OrderSettings, now) -> str:
    from messaging.outbound import message_send
    from sessions_app.models import Provider

    if session is None:
        logger.warning("order %s: its session is gone, no rating prompt", order.pk)
        return RatingPrompt.SKIPPED
    from orders.notify import customer_language

    key = f"rating-prompt-{order.public_id}"
    with override(customer_language(order.contact, session)):
        text = rating_prompt_text(order)
    if session.provider == Provider.TWILIO and not _inside_window(order, now):
        if not settings.rating_template_sid:
            logger.info("order %s: outside the 24-hour window, no template: skipped", order.pk)
            return RatingPrompt.SKIPPED
        message_send(
            session=session,
            to=order.contact.phone,
            template_sid=settings.rating_template_sid,
            template_variables={"1": str(order.number)},
            idempotency_key=key,
        )
        return RatingPrompt.SENT
    message_send(session=session, to=order.contact.phone, text=text, idempotency_key=key)
    return RatingPrompt.SENT


def _inside_window(order: Order, now) -> bool:
    """The customer wrote to this session within the last 24 hours."""
    from messaging.models import Message

    return Message.objects.filter(
        conversation__contact_id=order.contact_id,
        session_id=order.session_id,
        direction=Message.Direction.INBOUND,
        created_at__gte=now - WHATSAPP_WINDOW,
    ).exists()


def rating_prompts_expire(*, now=None) -> int:
    """Prompts unanswered for 24 hours are closed: nobody is asked twice."""
    now = now or timezone.now()
    return Order.objects.filter(
        status=OrderStatus.DELIVERED,
        rating_prompt__in=[RatingPrompt.SENT, RatingPrompt.REMINDED],
        rating_prompted_at__lt=now - ANSWER_WINDOW,
    ).update(rating_prompt=RatingPrompt.EXPIRED, updated_at=now)
