"""The inbound service, used by every provider: store once, then route.

`inbound_receive` runs wherever the provider's message arrives (the Twilio webhook in a
web process, a neonize or sandbox connection in a runner). It only writes rows and
returns; publishing `message.new` (dashboards, outgoing webhooks), media downloads and
routing to the owner menu or the customer flow run after commit in a Celery worker, so
the webhook answers fast and a runner's control loop never waits for a bot.

Storing is ONE SQL statement (`inbound_store_statement`), shared with the Twilio fast
path (messaging/twilio_fast.py), which runs it on its own async connections: upsert the
contact, upsert the conversation, insert the message unless the provider already
delivered it (INSERT ... ON CONFLICT DO NOTHING on the unique (session, provider message
id)), then count it unread and apply STOP/START. Every table name carries its schema, so
the statement never depends on a connection's search_path.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from messaging.metrics import received_count
from messaging.models import Message
from sessions_app.models import WhatsAppSession
from sessions_app.providers.base import MEDIA_KINDS, InboundMessage, MessageKind

logger = logging.getLogger(__name__)

# Words that opt a contact out of (or back into) every message from the business.
OPT_OUT_WORDS = frozenset(
    {
        "stop",
        "stopall",
        "unsubscribe",
        "cancel",
        "end",
        "quit",
        "הסר",
        "הסרה",
        "עצור",
        "הפסק",
        "די",
        "إيقاف",
        "ايقاف",
        "توقف",
        "الغاء",
        "إلغاء",
    }
)
OPT_IN_WORDS = frozenset({"start", "unstop", "התחל", "הרשמה", "ابدأ", "ابدا", "بدء"})


@dataclass(frozen=True)
class InboundResult:
    message: Message
    created: bool  # False: a duplicate of a message stored before


def _payload(inbound: InboundMessage) -> dict:
    if inbound.location:
        loc = inbound.location
        return {
            "latitude": loc.latitude,
            "longitude": loc.longitude,
            "name": loc.name,
            "address": loc.address,
        }
    if inbound.contact:
        return {"display_name": inbound.contact.display_name, "vcard": inbound.contact.vcard}
    if inbound.reaction:
        return {"target_id": inbound.reaction.target_id, "emoji": inbound.reaction.emoji}
    if inbound.media:
        return {"filename": inbound.media.filename, "size": inbound.media.size}
    return {}


def _opt_keyword(text: str) -> str | None:
    word = text.strip().strip(".!").casefold()
    if word in OPT_OUT_WORDS:
        return "out"
    if word in OPT_IN_WORDS:
        return "in"
    return None


# Concurrent first messages of a new contact (or conversation) race on its insert: the
# loser's statement sees no row (its snapshot predates the winner's commit) and changes
# nothing; run again, it finds the row.
STORE_ATTEMPTS = 3

_STORE_SQL = """
WITH found_contact AS (
    SELECT id FROM {contact} WHERE phone = %(phone)s
), new_contact AS (
    INSERT INTO {contact}
        (phone, push_name, language, opted_out, opted_out_at, blocked, created_at, updated_at)
    SELECT %(phone)s, %(push_name)s, '', %(opt)s = 'out',
           CASE WHEN %(opt)s = 'out' THEN %(now)s::timestamptz END, false,
           %(now)s::timestamptz, %(now)s::timestamptz
    WHERE NOT EXISTS (SELECT 1 FROM found_contact)
    ON CONFLICT (phone) DO NOTHING
    RETURNING id
), contact AS (
    SELECT id, false AS created FROM found_contact
    UNION ALL
    SELECT id, true FROM new_contact
), found_conversation AS (
    SELECT v.id FROM {conversation} v JOIN contact ON v.contact_id = contact.id
    WHERE v.session_id = %(session_id)s::bigint
), new_conversation AS (
    INSERT INTO {conversation}
        (contact_id, session_id, last_message_at, unread_count, human_takeover, created_at)
    SELECT id, %(session_id)s::bigint, %(at)s::timestamptz, 1, false, %(now)s::timestamptz
    FROM contact
    WHERE NOT EXISTS (SELECT 1 FROM found_conversation)
    ON CONFLICT (contact_id, session_id) DO NOTHING
    RETURNING id
), conversation AS (
    SELECT id, false AS created FROM found_conversation
    UNION ALL
    SELECT id, true FROM new_conversation
), message AS (
    INSERT INTO {message}
        (public_id, conversation_id, session_id, direction, kind, text, media_url, media_file,
         media_mime_type, payload, provider_message_id, reply_to_id, reply_to_provider_id,
         status, attempts, last_error, error_code, dead_letter, hand_offs, created_at)
    SELECT %(public_id)s::uuid, conversation.id, %(session_id)s::bigint, 'in', %(kind)s,
           %(text)s, %(media_url)s, '', %(mime_type)s, %(payload)s::jsonb,
           %(provider_message_id)s,
           (SELECT r.id FROM {message} r
            WHERE r.session_id = %(session_id)s::bigint AND %(reply_to)s <> ''
              AND r.provider_message_id = %(reply_to)s LIMIT 1),
           %(reply_to)s, 'received', 0, '', '', false, 0, %(at)s::timestamptz
    FROM conversation
    ON CONFLICT DO NOTHING
    RETURNING id, conversation_id
), counted AS (
    UPDATE {conversation} SET unread_count = unread_count + 1, last_message_at = %(at)s
    WHERE id = (SELECT conversation_id FROM message)
      AND NOT (SELECT created FROM conversation)
), contact_changed AS (
    UPDATE {contact} SET
        push_name = CASE WHEN %(push_name)s <> '' THEN %(push_name)s ELSE push_name END,
        opted_out = CASE %(opt)s WHEN 'out' THEN true WHEN 'in' THEN false ELSE opted_out END,
        opted_out_at = CASE
            WHEN %(opt)s = 'out' AND NOT opted_out THEN %(now)s::timestamptz
            WHEN %(opt)s = 'in' THEN NULL
            ELSE opted_out_at END,
        updated_at = %(now)s
    WHERE id = (SELECT id FROM contact) AND NOT (SELECT created FROM contact)
      AND EXISTS (SELECT 1 FROM message)
      AND ((%(push_name)s <> '' AND push_name <> %(push_name)s)
           OR (%(opt)s = 'out' AND NOT opted_out) OR (%(opt)s = 'in' AND opted_out))
)
SELECT (SELECT id FROM conversation), (SELECT id FROM message)
"""


@dataclass(frozen=True)
class InboundRow:
    """What `inbound_store_statement` sets on the message row, for a Message built back."""

    public_id: uuid.UUID
    kind: str
    text: str
    media_url: str
    mime_type: str
    payload: dict
    at: datetime


@functools.cache
def _store_sql(schema: str) -> str:
    quoted = '"' + schema.replace('"', '""') + '"'
    return _STORE_SQL.format(
        **{name: f'{quoted}."messaging_{name}"' for name in ("contact", "conversation", "message")}
    )


def inbound_store_statement(
    *, schema: str, session_id: int, inbound: InboundMessage
) -> tuple[str, dict, InboundRow]:
    """The statement that stores `inbound` in `schema`, its parameters, and the row.

    It returns one row: (conversation id, message id). The message id is NULL for a
    message stored before (a duplicate: nothing changed); the conversation id is NULL
    when a concurrent first message of the same contact won a race: nothing changed,
    run it again."""
    media = inbound.media
    row = InboundRow(
        public_id=uuid.uuid4(),
        kind=str(inbound.kind),
        text=(media.caption if media and not inbound.text else inbound.text)[:10000],
        media_url=(media.url if media else "")[:1000],
        mime_type=(media.mime_type if media else "")[:100],
        payload=_payload(inbound),
        at=inbound.timestamp,
    )
    keyword = _opt_keyword(inbound.text) if inbound.kind == MessageKind.TEXT else None
    params = {
        "phone": inbound.sender,
        "push_name": inbound.push_name[:120],
        "opt": keyword or "",
        "now": timezone.now(),
        "session_id": session_id,
        "public_id": row.public_id,
        "kind": row.kind,
        "text": row.text,
        "media_url": row.media_url,
        "mime_type": row.mime_type,
        "payload": json.dumps(row.payload),
        "provider_message_id": inbound.provider_message_id,
        "reply_to": inbound.reply_to_id,
        "at": row.at,
    }
    return _store_sql(schema), params, row


def inbound_message_built(
    *, session_id: int, inbound: InboundMessage, row: InboundRow, ids: tuple[int, int]
) -> Message:
    """The Message the statement stored, without reading it back."""
    conversation_id, message_id = ids
    message = Message(
        id=message_id,
        public_id=row.public_id,
        conversation_id=conversation_id,
        session_id=session_id,
        direction=Message.Direction.INBOUND,
        kind=row.kind,
        text=row.text,
        media_url=row.media_url,
        media_mime_type=row.mime_type,
        payload=row.payload,
        provider_message_id=inbound.provider_message_id,
        reply_to_provider_id=inbound.reply_to_id,
        status=Message.Status.RECEIVED,
        created_at=row.at,
    )
    message._state.adding = False
    message._state.db = "default"
    return message


def inbound_receive(*, session: WhatsAppSession, inbound: InboundMessage) -> InboundResult:
    """Store one inbound message in the session's tenant schema, exactly once.

    Upserts the contact and the conversation, counts it unread, applies STOP/START, and
    after commit hands the message to a worker (publishing `message.new`, media, routing).
    A repeat of a stored provider message id returns the stored message and changes
    nothing.
    """
    schema = session.tenant.schema_name
    statement, params, row = inbound_store_statement(
        schema=schema, session_id=session.pk, inbound=inbound
    )
    with schema_context(schema):
        for _ in range(STORE_ATTEMPTS):
            # One statement: atomic on its own, no BEGIN/COMMIT round trips.
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                conversation_id, message_id = cursor.fetchone()
            if conversation_id is None:
                continue  # lost a race with a concurrent first message: again
            if message_id is None:
                existing = Message.objects.get(
                    session_id=session.pk, provider_message_id=inbound.provider_message_id
                )
                return InboundResult(message=existing, created=False)
            message = inbound_message_built(
                session_id=session.pk, inbound=inbound, row=row, ids=(conversation_id, message_id)
            )
            received_count(session.provider)
            media = inbound.media
            _after_commit_route(message, media_downloader=media.download if media else None)
            return InboundResult(message=message, created=True)
    raise RuntimeError(f"inbound message {inbound.provider_message_id!r} could not be stored")


def _after_commit_route(message: Message, *, media_downloader) -> None:
    from messaging.inbound_tasks import inbound_media_fetch, inbound_route

    schema = connection.schema_name
    message_id = message.pk
    needs_media = message.kind in MEDIA_KINDS

    def hand_off() -> None:
        if needs_media and media_downloader is not None and not message.media_url:
            # neonize and sandbox: the bytes come through the live connection, which
            # only this process holds; store them here.
            try:
                with schema_context(schema):
                    inbound_media_store(message_id=message_id, download=media_downloader)
            except Exception:  # kept on the message as last_error; the text still counts
                logger.warning("message %s stored without its media", message_id)
        with schema_context(schema):
            if needs_media and message.media_url:
                inbound_media_fetch.delay(message_id)  # Twilio: fetched with its credentials
            inbound_route.delay(message_id)

    transaction.on_commit(hand_off)


def inbound_media_store(*, message_id: int, download) -> str:
    """Download a received media file and keep it in the default storage."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    message = Message.objects.get(pk=message_id)
    if message.media_file:
        return message.media_file
    try:
        data = download()
    except Exception as error:
        logger.warning("message %s: media download failed: %s", message_id, error)
        Message.objects.filter(pk=message_id).update(last_error=f"Media: {error}"[:500])
        raise
    extension = (message.media_mime_type.split("/")[-1].split(";")[0] or "bin")[:10]
    name = f"{connection.schema_name}/{message.public_id}.{extension}"
    path = default_storage.save(name, ContentFile(data))
    Message.objects.filter(pk=message_id).update(media_file=path)
    return path
