"""One turn of the ordering bot: a customer's stored message in, replies queued out.

`bot_turn(session=, message=)` runs in the tenant's schema, in one transaction holding
the customer's BotConversation row lock (two messages of one customer never interleave):

1. the same inbound message twice (a re-run routing task) is answered once;
2. a conversation quiet for longer than the tenant's `bot_idle_minutes` starts over
   (the beat job normally told the customer already; otherwise the notice leads the reply);
3. an order waiting for a rating takes a 1-5 answer first (orders/ratings.py);
4. outside opening hours or while the bot is paused, a new order gets the hours instead;
5. otherwise the pure conversation step (orders/bot_flow.py) decides, and this module
   stores the state, sends the replies (message_send) and performs the action: confirm
   the order through order_create + order_transition, or hand the chat to a person.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from orders.bot_flow import BotInput, MenuEntry, bot_step
from orders.bot_parsing import command_of, language_of
from orders.hours import hours_lines, is_open
from orders.models import ActorKind, BotConversation, BotState, MenuItem, OrderSettings
from orders.selectors import tenant_timezone

logger = logging.getLogger(__name__)

# The last messages answered, per conversation: a message routed twice is answered once,
# and two messages handled out of order are both answered.
HANDLED_KEPT = 20


def menu_entries(language: str) -> list[MenuEntry]:
    """The available items, numbered 1.. in menu order, named in `language`."""
    items = MenuItem.objects.filter(available=True).order_by("sort_order", "category", "id")
    return [
        MenuEntry(
            number=index,
            item_id=item.pk,
            name=item.name_in(language),
            price_minor=item.price_minor,
            category=item.category,
        )
        for index, item in enumerate(items, start=1)
    ]


def hours_reply(settings: OrderSettings) -> str:
    """Why no order is taken now, and the hours (in the active language)."""
    if settings.bot_paused:
        lines = [_("We are not taking orders on WhatsApp right now.")]
    else:
        lines = [_("We are closed now.")]
    if settings.opening_hours:
        lines.append(_("Our opening hours:"))
        lines.extend(hours_lines(settings.opening_hours))
    else:
        lines.append(_("Please try again later."))
    return "\n".join(lines)


def bot_taking_orders(settings: OrderSettings, tenant=None) -> bool:
    if settings.bot_paused:
        return False
    if not settings.opening_hours:
        return True
    zone = tenant_timezone(getattr(tenant, "timezone", None))
    return is_open(settings.opening_hours, timezone.now().astimezone(zone))


def _conversation(contact, session_id: int) -> BotConversation:
    conversation = (
        BotConversation.objects.select_for_update()
        .filter(contact=contact, session_id=session_id)
        .first()
    )
    if conversation is not None:
        return conversation
    try:
        with transaction.atomic():
            BotConversation.objects.create(contact=contact, session_id=session_id)
    except IntegrityError:
        pass  # created meanwhile by a concurrent turn
    return BotConversation.objects.select_for_update().get(contact=contact, session_id=session_id)


def bot_turn(*, session, message) -> list[str]:
    """Answer one stored inbound customer message; returns the replies queued."""
    contact = message.conversation.contact
    with transaction.atomic():
        conversation = _conversation(contact, session.pk)
        handled = list(conversation.context.get("handled", []))
        if message.pk in handled:
            return []  # this message was answered already (a routing task run twice)
        language = _language(conversation, contact, session, message.text)
        with override(language):
            replies = _turn(conversation, session=session, message=message, language=language)
        conversation.context["handled"] = [*handled, message.pk][-HANDLED_KEPT:]
        conversation.language = language
        conversation.last_activity_at = timezone.now()
        conversation.save(
            update_fields=["state", "context", "language", "last_activity_at", "updated_at"]
        )
        _send(session, contact.phone, replies, key=f"bot-{message.public_id}")
    return replies


def _language(conversation, contact, session, text: str) -> str:
    detected = language_of(text)
    if detected and detected != contact.language:
        type(contact).objects.filter(pk=contact.pk).update(language=detected)
        contact.language = detected
    return detected or conversation.language or contact.language or session.tenant.language or "he"


def _expired(conversation: BotConversation, settings: OrderSettings) -> bool:
    if conversation.state == BotState.IDLE or conversation.last_activity_at is None:
        return False
    quiet = timedelta(minutes=settings.bot_idle_minutes)
    return timezone.now() - conversation.last_activity_at > quiet


def expiry_notice() -> str:
    return _("Your unfinished order has expired. Write to us any time to start again.")


def _turn(conversation, *, session, message, language: str) -> list[str]:
    from orders.ratings import rating_reply_handle

    settings = OrderSettings.current()
    replies: list[str] = []
    if _expired(conversation, settings):
        replies.append(expiry_notice())
        conversation.state, conversation.context = BotState.IDLE, {}
    text = message.text or ""
    if conversation.state == BotState.IDLE:
        rating_replies = rating_reply_handle(contact=message.conversation.contact,
                                             session=session, text=text)  # fmt: skip
        if rating_replies is not None:
            return replies + rating_replies
        taking = bot_taking_orders(settings, session.tenant)
        if not taking and command_of(text) not in ("help", "human"):
            return [*replies, hours_reply(settings)]
    menu = menu_entries(language)
    turn = bot_step(
        BotInput(
            state=conversation.state,
            context=conversation.context,
            text=text,
            menu=menu,
            currency=settings.currency,
            business_name=session.tenant.name,
            customer_name=message.conversation.contact.push_name,
        )
    )
    replies.extend(turn.replies)
    if turn.action == "confirm_order":
        if not bot_taking_orders(settings, session.tenant):
            return [*replies, hours_reply(settings)]  # state stays: confirm when open
        failure = _confirm_order(conversation, session=session, message=message)
        if failure:
            conversation.state = BotState.ITEMS
            return [*replies, failure]
    elif turn.action == "human":
        _hand_to_person(message.conversation)
    conversation.state, conversation.context = turn.state, turn.context
    return replies


def _confirm_order(conversation, *, session, message) -> str:
    """Create the order and confirm it (its confirmation message comes from the
    transition). Returns a reply when the cart cannot be ordered, else ""."""
    from orders.services import order_create, order_transition

    context = conversation.context
    try:
        with transaction.atomic():
            order = order_create(
                contact=message.conversation.contact,
                session_id=session.pk,
                lines=[
                    {"menu_item": line["item_id"], "quantity": line["quantity"]}
                    for line in context.get("cart", [])
                ],
                fulfilment=context.get("fulfilment", "pickup"),
                address=context.get("address", ""),
            )
            order_transition(
                order_id=order.pk,
                to="CONFIRMED",
                actor_kind=ActorKind.CUSTOMER,
                actor_label=message.conversation.contact.phone,
            )
    except ValidationError:
        logger.info("bot order not created: the cart no longer matches the menu")
        return _("Sorry, part of your order is no longer available. Please choose again.")
    return ""


def _hand_to_person(conversation) -> None:
    from messaging.conversations import conversation_takeover_set

    conversation_takeover_set(conversation=conversation, human=True)


def _send(session, phone: str, replies: list[str], *, key: str) -> None:
    from messaging.outbound import message_send

    for index, text in enumerate(replies):
        message_send(session=session, to=phone, text=text, idempotency_key=f"{key}-{index}")
