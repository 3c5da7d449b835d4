"""The inbound service, used by every provider: store once, then route.

`inbound_receive` runs wherever the provider's message arrives (the Twilio webhook in a
web process, a neonize or sandbox connection in a runner). It only writes rows and
returns; media downloads and routing to the owner menu or the customer flow run after
commit in a Celery worker, so the webhook answers fast and a runner's control loop never
waits for a bot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django_tenants.utils import schema_context

from messaging.events import message_event_after_commit
from messaging.models import Contact, Conversation, Message
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


def inbound_receive(*, session: WhatsAppSession, inbound: InboundMessage) -> InboundResult:
    """Store one inbound message in the session's tenant schema, exactly once.

    Upserts the contact and the conversation, counts it unread, applies STOP/START, and
    after commit publishes `message.new`, queues outgoing webhooks and hands the message
    to routing (and media download) in a worker. A repeat of a stored provider message
    id returns the stored message and changes nothing.
    """
    with schema_context(session.tenant.schema_name):
        existing = Message.objects.filter(
            session_id=session.pk, provider_message_id=inbound.provider_message_id
        ).first()
        if existing is not None:
            return InboundResult(message=existing, created=False)
        try:
            with transaction.atomic():
                return InboundResult(message=_store(session, inbound), created=True)
        except IntegrityError:
            # Stored meanwhile by a concurrent delivery of the same message.
            message = Message.objects.get(
                session_id=session.pk, provider_message_id=inbound.provider_message_id
            )
            return InboundResult(message=message, created=False)


def _store(session: WhatsAppSession, inbound: InboundMessage) -> Message:
    contact, created = Contact.objects.get_or_create(
        phone=inbound.sender, defaults={"push_name": inbound.push_name[:120]}
    )
    if not created and inbound.push_name and contact.push_name != inbound.push_name:
        contact.push_name = inbound.push_name[:120]
        contact.save(update_fields=["push_name", "updated_at"])
    conversation, _ = Conversation.objects.get_or_create(contact=contact, session_id=session.pk)
    reply_to = None
    if inbound.reply_to_id:
        reply_to = Message.objects.filter(
            session_id=session.pk, provider_message_id=inbound.reply_to_id
        ).first()
    media = inbound.media
    message = Message.objects.create(
        conversation=conversation,
        session_id=session.pk,
        direction=Message.Direction.INBOUND,
        kind=str(inbound.kind),
        text=(media.caption if media and not inbound.text else inbound.text)[:10000],
        media_url=(media.url if media else "")[:1000],
        media_mime_type=(media.mime_type if media else "")[:100],
        payload=_payload(inbound),
        provider_message_id=inbound.provider_message_id,
        reply_to=reply_to,
        reply_to_provider_id=inbound.reply_to_id,
        status=Message.Status.RECEIVED,
        created_at=inbound.timestamp,
    )
    Conversation.objects.filter(pk=conversation.pk).update(
        unread_count=F("unread_count") + 1, last_message_at=inbound.timestamp
    )
    if inbound.kind == MessageKind.TEXT:
        keyword = _opt_keyword(inbound.text)
        if keyword == "out" and not contact.opted_out:
            Contact.objects.filter(pk=contact.pk).update(
                opted_out=True, opted_out_at=timezone.now()
            )
        elif keyword == "in" and contact.opted_out:
            Contact.objects.filter(pk=contact.pk).update(opted_out=False, opted_out_at=None)
    message_event_after_commit(message, "message.new")
    _after_commit_route(message, media_downloader=media.download if media else None)
    return message


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
