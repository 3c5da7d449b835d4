"""Where an inbound message goes: the owner menu, the customer flow, or nowhere.

- from one of the session's owner numbers -> the owner-only menu;
- from anyone else -> the customer flow for the session's customer mode:
  `silent` stores it and sends nothing at all; `ordering` hands it to the ordering bot,
  unless a person has taken the conversation over or the customer is sending too fast.
"""

from __future__ import annotations

import logging

from django.db import connection
from django.utils.translation import gettext as _
from django.utils.translation import override

from messaging.inbound_limits import inbound_customer_check
from messaging.limits import limits_burst_reset
from messaging.models import Message, MessagingSettings
from sessions_app.models import CustomerMode, WhatsAppSession

logger = logging.getLogger(__name__)


class Route:
    OWNER = "owner"
    SILENT = "silent"
    ORDERING = "ordering"
    HUMAN = "human"  # a person took the conversation over
    PAUSED = "paused"  # too many messages: stored, not answered
    IGNORED = "ignored"  # reactions, groups, blocked contacts


def inbound_message_route(*, message_id: int) -> str | None:
    """Publish `message.new` for a stored inbound message and route it -- once.

    The message's row is locked (SKIP LOCKED) while it is routed and `routed_at` is set
    in the same transaction, so a second hand-off (a redelivered task, the routing sweep
    in messaging/sweeps.py) finds it routed, or being routed, and does nothing; a routing
    that fails rolls back with everything it wrote (its replies included) and is tried
    again by the sweep. Returns the route, or None when there was nothing to do."""
    from django.db import transaction
    from django.utils import timezone

    from messaging.events import event_publish, message_as_event

    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("conversation__contact")
            .filter(pk=message_id, direction=Message.Direction.INBOUND, routed_at__isnull=True)
            .first()
        )
        if message is None:
            return None
        # They wrote: the replies to come are not "in a row" (messaging/limits.py).
        limits_burst_reset(
            schema=connection.schema_name, recipient=message.conversation.contact.phone
        )
        # Registered first, so the dashboards see the message before any reply to it; its
        # content is taken after routing: the owner menu replaces a PIN by "••••" in the
        # routing's transaction, and the PIN must never reach a dashboard or a webhook.
        schema = connection.schema_name
        event: dict = {}
        transaction.on_commit(
            lambda: event_publish(
                schema=schema, event_type="message.new", data=event["data"], key="message"
            )
        )
        route = inbound_route_message(message_id=message_id, message=message)
        if route == Route.OWNER:
            message.text = (
                Message.objects.filter(pk=message.pk).values_list("text", flat=True).first() or ""
            )
        event["data"] = message_as_event(message)
        message.routed_at = timezone.now()
        Message.objects.filter(pk=message.pk).update(routed_at=message.routed_at)
    return route


def inbound_route_message(*, message_id: int, message: Message | None = None) -> str:
    """Route one stored inbound message (in the current tenant schema). Returns the route.

    `message`: the same, already read with its conversation and contact."""
    if message is None:
        message = Message.objects.select_related("conversation__contact").get(pk=message_id)
    session = WhatsAppSession.objects.select_related("tenant").get(pk=message.session_id)
    contact = message.conversation.contact
    if contact.phone in session.owner_numbers:
        from messaging.owner_menu import owner_menu_handle

        owner_menu_handle(session=session, message=message)
        return Route.OWNER
    if contact.blocked or message.kind == "reaction" or message.direction != "in":
        return Route.IGNORED
    if session.customer_mode == CustomerMode.SILENT:
        return Route.SILENT
    if message.conversation.human_takeover:
        return Route.HUMAN
    limits = MessagingSettings.current()
    verdict = inbound_customer_check(
        schema=connection.schema_name,
        phone=contact.phone,
        per_minute=limits.inbound_per_customer_per_minute,
        pause_minutes=limits.inbound_pause_minutes,
    )
    if not verdict.answer:
        if verdict.send_notice:
            _send_pause_notice(session, contact, limits.inbound_pause_minutes)
        return Route.PAUSED
    from orders.bot import ordering_bot_handle

    ordering_bot_handle(session=session, message=message)
    return Route.ORDERING


def _send_pause_notice(session, contact, minutes: int) -> None:
    from messaging.outbound import message_send

    language = contact.language or session.tenant.language
    with override(language):
        text = _(
            "You are sending messages very quickly. I will answer again in %(minutes)d minutes."
        ) % {"minutes": minutes}
    message_send(session=session, to=contact.phone, text=text)
