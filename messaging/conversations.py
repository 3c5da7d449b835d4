"""Reading conversations and message history (selectors), and the two things a person
does to a conversation: mark it read, and take it over from the bot (or hand it back).

History pages by keyset on (created_at, id), newest first, never by offset: a page's
`next_cursor` is an opaque string naming the last row shown; pass it as `before` for the
next (older) page. A cursor that is not one we made raises ValidationError.

All of it works in the current tenant schema.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q, QuerySet

from messaging.models import Conversation, Message

logger = logging.getLogger(__name__)

MAX_PAGE = 200
CONVERSATION_UPDATED = "conversation.updated"


# --- cursors --------------------------------------------------------------------------


def cursor_encode(created_at: datetime, row_id: int) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, int]:
    """(created_at, id) of a cursor made by `cursor_encode`; ValidationError otherwise."""
    problem = ValidationError({"before": ["This is not a valid page cursor."]})
    if not isinstance(cursor, str) or not cursor or len(cursor) > 200:
        raise problem
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|")
        created_at = datetime.fromisoformat(stamp)
        row = int(row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise problem from None
    if created_at.tzinfo is None or row < 1:
        raise problem
    return created_at, row


def _limit(limit) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValidationError({"limit": [f"A page holds 1 to {MAX_PAGE} rows."]})
    return limit


def _page(
    rows: QuerySet[Message], *, before: str | None, limit
) -> tuple[list[Message], str | None]:
    limit = _limit(limit)
    if before is not None:
        created_at, row_id = cursor_decode(before)
        rows = rows.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=row_id))
    page = list(rows.order_by("-created_at", "-id")[: limit + 1])
    if len(page) <= limit:
        return page, None
    page = page[:limit]
    return page, cursor_encode(page[-1].created_at, page[-1].pk)


# --- selectors ------------------------------------------------------------------------


def conversations_list(
    *,
    session_id: int | None = None,
    unread: bool | None = None,
    taken_over: bool | None = None,
    search: str = "",
) -> QuerySet[Conversation]:
    """The tenant's conversations, newest message first, with their contacts; filtered by
    session, by having unread messages (or none), by a person having taken over (or not),
    by `search` (part of the contact's name, or digits of the number: "050 555" finds
    +972505551234 too). Slice it, or page it by keyset on (last_message_at, id)."""
    rows = Conversation.objects.select_related("contact")
    search = search.strip()
    if search:
        match = Q(contact__push_name__icontains=search)
        digits = re.sub(r"\D", "", search)
        if digits:
            match |= Q(contact__phone__contains=digits)
            if digits.startswith("0") and len(digits) > 1:  # dialled at home: 050 is +97250
                match |= Q(contact__phone__contains=digits[1:])
        rows = rows.filter(match)
    if session_id is not None:
        rows = rows.filter(session_id=session_id)
    if unread is not None:
        rows = rows.filter(unread_count__gt=0) if unread else rows.filter(unread_count=0)
    if taken_over is not None:
        rows = rows.filter(human_takeover=bool(taken_over))
    return rows.order_by("-last_message_at", "-id")


def conversation_messages_page(
    *, conversation: Conversation, before: str | None = None, limit: int = 50
) -> tuple[list[Message], str | None]:
    """One page of a conversation's messages, newest first, and the cursor of the next
    (older) page, or None when this is the last."""
    rows = Message.objects.filter(conversation=conversation).select_related("conversation__contact")
    return _page(rows, before=before, limit=limit)


def messages_page(
    *,
    session_id: int | None = None,
    direction: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> tuple[list[Message], str | None]:
    """One page of all the tenant's messages (the live log), newest first, optionally of
    one session and one direction ("in" or "out"), and the next page's cursor."""
    rows = Message.objects.select_related("conversation__contact")
    if session_id is not None:
        rows = rows.filter(session_id=session_id)
    if direction is not None:
        if direction not in Message.Direction.values:
            raise ValidationError({"direction": ['Use "in" or "out".']})
        rows = rows.filter(direction=direction)
    return _page(rows, before=before, limit=limit)


def conversation_as_event(conversation: Conversation) -> dict:
    """The JSON shape of a conversation in dashboard events."""
    contact = conversation.contact
    return {
        "id": conversation.pk,
        "session_id": conversation.session_id,
        "contact": {"phone": contact.phone, "name": contact.push_name},
        "unread_count": conversation.unread_count,
        "human_takeover": conversation.human_takeover,
        "last_message_at": (
            conversation.last_message_at.isoformat() if conversation.last_message_at else None
        ),
    }


# --- services -------------------------------------------------------------------------


def _publish_after_commit(conversation: Conversation) -> None:
    from dashboard.realtime import tenant_event_publish

    schema = connection.schema_name
    event = {"type": CONVERSATION_UPDATED, "conversation": conversation_as_event(conversation)}

    def publish() -> None:
        try:
            tenant_event_publish(schema_name=schema, event=event)
        except Exception:
            logger.warning("could not publish %s", CONVERSATION_UPDATED, exc_info=True)

    transaction.on_commit(publish)


def _locked(conversation: Conversation) -> Conversation:
    return (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("contact")
        .get(pk=conversation.pk)
    )


def conversation_mark_read(*, conversation: Conversation) -> Conversation:
    """No unread messages any more (a person read them); its inbound messages get a read
    time. Publishes `conversation.updated` after commit when something changed."""
    from django.utils import timezone

    with transaction.atomic():
        locked = _locked(conversation)
        if locked.unread_count:
            locked.unread_count = 0
            locked.save(update_fields=["unread_count"])
            Message.objects.filter(
                conversation=locked, direction=Message.Direction.INBOUND, read_at__isnull=True
            ).update(read_at=timezone.now())
            _publish_after_commit(locked)
    conversation.unread_count = locked.unread_count
    return locked


def conversation_takeover_set(*, conversation: Conversation, human: bool) -> Conversation:
    """A person takes the conversation over (`human=True`: the bot stays quiet) or hands
    it back to the bot. Publishes `conversation.updated` after commit when it changed."""
    if not isinstance(human, bool):
        raise ValidationError({"human": ["Say true (a person answers) or false (the bot)."]})
    with transaction.atomic():
        locked = _locked(conversation)
        if locked.human_takeover != human:
            locked.human_takeover = human
            locked.save(update_fields=["human_takeover"])
            logger.info("conversation %s %s", locked.pk, "taken over" if human else "handed back")
            _publish_after_commit(locked)
    conversation.human_takeover = locked.human_takeover
    return locked
