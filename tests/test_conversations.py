"""Conversations and history (messaging/conversations.py) against real PostgreSQL and a
real channels-redis layer: keyset pages, filters, mark read, take over / hand back."""

import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_tenants.utils import schema_context

from messaging.conversations import (
    conversation_mark_read,
    conversation_messages_page,
    conversation_takeover_set,
    conversations_list,
    cursor_encode,
    messages_page,
)
from messaging.models import Contact, Conversation, Message
from tests.test_outbound import GroupListener


def _conversation(session_id: int, phone: str, **fields) -> Conversation:
    contact, _ = Contact.objects.get_or_create(phone=phone)
    return Conversation.objects.create(contact=contact, session_id=session_id, **fields)


def _messages(conversation: Conversation, count: int, *, at=None, direction="in") -> list:
    """`count` messages; all with the same created_at when `at` is given (keyset ties)."""
    rows = []
    base = timezone.now() - timedelta(hours=1)
    for index in range(count):
        rows.append(
            Message.objects.create(
                conversation=conversation,
                session_id=conversation.session_id,
                direction=direction,
                text=f"m{index}",
                status="received" if direction == "in" else "sent",
            )
        )
        created = at or base + timedelta(seconds=index)
        Message.objects.filter(pk=rows[-1].pk).update(created_at=created)
    return [Message.objects.get(pk=row.pk) for row in rows]


@pytest.fixture
def schema(make_tenant):
    tenant = make_tenant()
    with schema_context(tenant.schema_name):
        yield tenant


def test_conversation_pages_walk_every_message_once_newest_first(schema):
    # Given 7 messages, 4 of them with the very same created_at (a keyset tie)
    conversation = _conversation(1, "+972501111111")
    older = _messages(conversation, 3)
    tied = _messages(conversation, 4, at=timezone.now())

    # When paging by 3
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = conversation_messages_page(conversation=conversation, before=cursor, limit=3)
        seen += page
        pages += 1
        if cursor is None:
            break

    # Then every message came once, newest first (ties by id), in 3 pages
    expected = sorted(older + tied, key=lambda m: (m.created_at, m.pk), reverse=True)
    assert [m.pk for m in seen] == [m.pk for m in expected]
    assert pages == 3


def test_a_conversation_page_holds_only_its_own_messages(schema):
    mine = _conversation(1, "+972501111111")
    other = _conversation(1, "+972502222222")
    _messages(mine, 2)
    _messages(other, 2)

    page, cursor = conversation_messages_page(conversation=mine)

    assert {m.conversation_id for m in page} == {mine.pk} and len(page) == 2
    assert cursor is None


def test_messages_page_filters_by_session_and_direction(schema):
    first = _conversation(1, "+972501111111")
    second = _conversation(2, "+972501111111")
    _messages(first, 2, direction="in")
    _messages(first, 1, direction="out")
    _messages(second, 3, direction="in")

    inbound_of_one, _ = messages_page(session_id=1, direction="in")
    everything, _ = messages_page()

    assert len(inbound_of_one) == 2
    assert {(m.session_id, m.direction) for m in inbound_of_one} == {(1, "in")}
    assert len(everything) == 6
    with pytest.raises(ValidationError):
        messages_page(direction="sideways")


@pytest.mark.parametrize(
    "cursor",
    ["", "not-a-cursor", "%%%", cursor_encode(timezone.now(), 1)[:-3], "x" * 500],
)
def test_a_bad_cursor_is_a_validation_error(schema, cursor):
    conversation = _conversation(1, "+972501111111")
    with pytest.raises(ValidationError):
        conversation_messages_page(conversation=conversation, before=cursor)
    with pytest.raises(ValidationError):
        messages_page(before=cursor)


@pytest.mark.parametrize("limit", [0, 201, "10", True])
def test_a_page_size_out_of_range_is_a_validation_error(schema, limit):
    with pytest.raises(ValidationError):
        messages_page(limit=limit)


def test_conversations_list_newest_first_with_filters(schema):
    now = timezone.now()
    old = _conversation(1, "+972501111111", last_message_at=now - timedelta(hours=2))
    new = _conversation(1, "+972502222222", last_message_at=now, unread_count=3)
    taken = _conversation(2, "+972503333333", last_message_at=now - timedelta(hours=1))
    taken.human_takeover = True
    taken.save()

    assert list(conversations_list()) == [new, taken, old]
    assert list(conversations_list(session_id=1)) == [new, old]
    assert list(conversations_list(unread=True)) == [new]
    assert list(conversations_list(unread=False)) == [taken, old]
    assert list(conversations_list(taken_over=True)) == [taken]
    assert list(conversations_list(taken_over=False, session_id=1, unread=False)) == [old]


def test_tenants_never_see_each_others_conversations(make_tenant):
    first, second = make_tenant(), make_tenant()
    with schema_context(first.schema_name):
        _conversation(1, "+972501111111")
    with schema_context(second.schema_name):
        assert not conversations_list().exists()
        assert messages_page() == ([], None)


def test_mark_read_clears_unread_and_publishes_after_commit(make_tenant):
    tenant = make_tenant()
    listener = GroupListener(tenant)
    with schema_context(tenant.schema_name):
        conversation = _conversation(1, "+972501111111", unread_count=2)
        _messages(conversation, 2)

        updated = conversation_mark_read(conversation=conversation)
        again = conversation_mark_read(conversation=conversation)

        assert updated.unread_count == 0 and conversation.unread_count == 0
        assert again.unread_count == 0
        assert not Message.objects.filter(read_at__isnull=True).exists()
    events = [e for e in listener.drain() if e["type"] == "conversation.updated"]
    # once: marking an already read conversation changes (and publishes) nothing
    assert [e["conversation"]["unread_count"] for e in events] == [0]
    assert events[0]["conversation"]["id"] == conversation.pk


def test_takeover_and_hand_back_publish_each_change(make_tenant):
    tenant = make_tenant()
    listener = GroupListener(tenant)
    with schema_context(tenant.schema_name):
        conversation = _conversation(1, f"+97250{uuid.uuid4().int % 10**7:07d}")

        taken = conversation_takeover_set(conversation=conversation, human=True)
        conversation_takeover_set(conversation=conversation, human=True)  # no change
        back = conversation_takeover_set(conversation=conversation, human=False)

        assert taken.human_takeover is True and back.human_takeover is False
        assert Conversation.objects.get(pk=conversation.pk).human_takeover is False
        with pytest.raises(ValidationError):
            conversation_takeover_set(conversation=conversation, human="yes")
    events = [e for e in listener.drain() if e["type"] == "conversation.updated"]
    assert [e["conversation"]["human_takeover"] for e in events] == [True, False]
