"""The outbound path: every message a tenant sends, whatever the provider.

`message_send(...)` validates, upserts the contact and the conversation, and stores the
message `queued` -- or `suppressed`, with the reason, when the contact opted out or got
the same text within the tenant's duplicate window. After commit it hands the message
to the sender of its session's provider:

- Twilio: the Celery task `messaging.message_deliver` (messaging/tasks.py), which calls
  `message_deliver()`: opt-out and limits, then one request to Twilio, all under the
  message's row lock; an in-flight mark written before the request lets a later
  delivery ask Twilio whether an attempt nobody heard the answer to was accepted, so a
  worker killed mid-send never makes a second copy (messaging/send_marks.py);
- neonize and sandbox: the outbox of the runner that holds the session
  (sessions_app/outbox.py). Before each send the runner asks `outbound_live_check()`
  (opt-out, limits, humanisation steps), and reports the outcome through `send_finished`
  (messaging/receivers.py -> `message_sent_record` / `message_failed_record`).

A limited send waits -- a Celery countdown, or the outbox's delayed set -- without it
counting as an attempt: it is never dropped. A failure that allows a retry is retried
after settings.OUTBOUND_RETRY_DELAYS (5, 10, 20, 40, 80 s; a provider's Retry-After wins);
after the last retry, or at once for a failure no retry can fix, the message is `failed`
and kept as a dead letter (`message_dead_letters()`, `message_retry()`).

Every status change is published as `message.status` after commit (messaging/events.py).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from messaging import metrics
from messaging.events import message_event_after_commit
from messaging.humanize import humanize_plan, profile_for
from messaging.limits import OutboundLimits, limits_reserve
from messaging.models import Contact, Conversation, Message, MessagingSettings
from messaging.send_marks import (
    CLOCK_MARGIN_SECONDS,
    in_flight_clear,
    in_flight_get,
    in_flight_set,
)
from sessions_app.models import Provider, WhatsAppSession
from sessions_app.outbox import SendCheck, outbox_enqueue, retry_delays
from sessions_app.phone_numbers import to_e164
from sessions_app.providers.base import (
    MEDIA_KINDS,
    ContactCard,
    Location,
    MessageKind,
    NeverRetry,
    OutboundMessage,
    ProviderError,
    Reaction,
    RetryLater,
)

logger = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 4096  # WhatsApp's limit for a text message
# A limit's wait is re-checked at least this often (the limits may have changed), and a
# Celery countdown stays well within the broker's visibility timeout.
MAX_WAIT_SECONDS = 300.0
MAX_RETRY_AFTER_SECONDS = 900.0
UNREAD_TO_MARK_READ = 20
# A tenant's MessagingSettings are read at most this often per process: a change of
# limits takes effect within seconds, and a busy worker does not ask for every message.
SETTINGS_TTL_SECONDS = 5.0

SENDABLE_KINDS = tuple(kind.value for kind in MessageKind if kind != MessageKind.UNSUPPORTED)
TWILIO_KINDS = frozenset({MessageKind.TEXT, MessageKind.LOCATION, *MEDIA_KINDS})
OPTED_OUT = "opted out"
BLOCKED = "blocked"

_Status = Message.Status


# --- sending --------------------------------------------------------------------------


def message_send(
    *,
    session: WhatsAppSession,
    to: str,
    kind: str = "text",
    text: str = "",
    media_url: str = "",
    location: Location | dict | None = None,
    contact: ContactCard | dict | None = None,
    reaction: Reaction | dict | None = None,
    reply_to: Message | None = None,
    idempotency_key: str | None = None,
    template_sid: str = "",
    template_variables: dict | None = None,
    bulk_send=None,
) -> Message:
    """Send a message from `session` to the phone number `to`; call it in the tenant's
    schema (the session must be one of the tenant's).

    Guarantees: a ValidationError, by field, before anything is written; the same
    `idempotency_key` always returns the first message and sends once, even when called
    concurrently; the message is stored `queued` and handed to its session's sender after
    commit -- or stored `suppressed` with the reason in `last_error`, and never sent, when
    the contact opted out (or is blocked) or got the same text within the tenant's
    duplicate window. `message.new` is published after commit. `bulk_send`: the
    BulkSend job it belongs to (messaging/bulk.py).
    """
    schema = connection.schema_name
    fields = _validated(
        session=session,
        to=to,
        kind=kind,
        text=text,
        media_url=media_url,
        location=location,
        contact=contact,
        reaction=reaction,
        reply_to=reply_to,
        idempotency_key=idempotency_key,
        template_sid=template_sid,
        template_variables=template_variables,
        schema=schema,
    )
    if idempotency_key:
        existing = _by_key(idempotency_key)
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            return _create(session=session, schema=schema, bulk_send=bulk_send, **fields)
    except IntegrityError:
        # The same key, committed meanwhile by a concurrent call: that one is the message.
        if idempotency_key:
            existing = _by_key(idempotency_key)
            if existing is not None:
                return existing
        raise


def _by_key(key: str) -> Message | None:
    return (
        Message.objects.select_related("conversation__contact")
        .filter(idempotency_key=key, direction=Message.Direction.OUTBOUND)
        .first()
    )


def _create(
    *, session: WhatsAppSession, schema: str, phone: str, key: str | None, bulk_send, **fields
):
    # Sends to one recipient are serialised on the contact's row, so the duplicate and
    # idempotency checks below cannot both pass for two concurrent calls.
    conversation = _conversation_locking_contact(phone, session_id=session.pk)
    if conversation is None:  # a first message to this number, or on this session
        contact = Contact.objects.select_for_update().filter(phone=phone).first()
        if contact is None:
            contact, _ = Contact.objects.get_or_create(phone=phone)
            contact = Contact.objects.select_for_update().get(pk=contact.pk)
        conversation, _ = Conversation.objects.get_or_create(contact=contact, session_id=session.pk)
        conversation.contact = contact
    contact = conversation.contact
    if key:
        existing = _by_key(key)
        if existing is not None:
            return existing
    reason = _not_to_be_messaged(contact) or _duplicate(conversation, fields)
    message = Message.objects.create(
        conversation=conversation,
        session_id=session.pk,
        direction=Message.Direction.OUTBOUND,
        status=_Status.SUPPRESSED if reason else _Status.QUEUED,
        last_error=reason,
        idempotency_key=key or f"msg-{uuid.uuid4().hex}",
        next_attempt_at=None if reason else timezone.now(),
        hand_offs=0 if reason else 1,
        bulk_send=bulk_send,
        **fields,
    )
    Conversation.objects.filter(pk=conversation.pk).update(last_message_at=message.created_at)
    if reason:
        logger.info("message %s to a contact not sent: %s", message.pk, reason)
        _count_after_commit(metrics.suppressed_count, session.provider)
    else:
        # Registered before the event: a failing dashboard publish cannot hold back a send.
        _hand_off_after_commit(message, session=session, schema=schema)
    message_event_after_commit(message, "message.new")
    return message


def _conversation_locking_contact(phone: str, *, session_id: int) -> Conversation | None:
    """The conversation with `phone` on the session, with its contact's row locked: the
    usual case in one query instead of two."""
    rows = (
        Conversation.objects.select_related("contact")
        .select_for_update(of=("contact",))
        .filter(contact__phone=phone, session_id=session_id)
        .order_by()[:1]
    )
    return next(iter(rows), None)


def _not_to_be_messaged(contact: Contact) -> str:
    if contact.opted_out:
        return OPTED_OUT
    if contact.blocked:
        return BLOCKED
    return ""


def _duplicate(conversation: Conversation, fields: dict) -> str:
    """The same text to the same recipient within the tenant's window, with nothing from
    them since: the reason, or "". A recipient who wrote after the earlier copy gets it
    again (a customer asking for the menu twice gets it twice)."""
    text = fields["text"]
    if fields["kind"] != MessageKind.TEXT or not text.strip() or fields["payload"]:
        return ""
    window = tenant_messaging_settings().duplicate_window_seconds
    if not window:
        return ""
    since = timezone.now() - timedelta(seconds=window)
    earlier = (
        Message.objects.filter(
            conversation__contact_id=conversation.contact_id,
            direction=Message.Direction.OUTBOUND,
            kind=MessageKind.TEXT,
            text=text,
            created_at__gte=since,
        )
        .exclude(status__in=[_Status.FAILED, _Status.SUPPRESSED])
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if earlier is None:
        return ""
    answered = Message.objects.filter(
        conversation__contact_id=conversation.contact_id,
        direction=Message.Direction.INBOUND,
        created_at__gt=earlier,
    ).exists()
    if answered:
        return ""
    return f"duplicate: the same text went to this contact within {window} seconds"


_settings_cache: dict[str, tuple[float, MessagingSettings]] = {}


def tenant_messaging_settings() -> MessagingSettings:
    """The current tenant's MessagingSettings, at most SETTINGS_TTL_SECONDS old."""
    schema = connection.schema_name
    now = time.monotonic()
    cached = _settings_cache.get(schema)
    if cached is not None and now - cached[0] < SETTINGS_TTL_SECONDS:
        return cached[1]
    current = MessagingSettings.current()
    _settings_cache[schema] = (now, current)
    return current


def _hand_off_after_commit(message: Message, *, session: WhatsAppSession, schema: str) -> None:
    """After commit, give the message to its session's sender: a Celery task for Twilio,
    the owning runner's outbox for neonize and sandbox."""
    message_id = message.pk
    if session.provider == Provider.TWILIO:

        def hand_off() -> None:
            from messaging.tasks import message_deliver

            # The schema travels in the task's headers (tenant-schemas-celery); given
            # explicitly, in case the caller leaves the tenant's schema before commit.
            message_deliver.apply_async(args=[message_id], headers={"_schema_name": schema})

    else:
        outbound = outbound_message_for(message)
        session_id = session.pk

        # The hand-off's number: an outbox entry of an older hand-off is skipped.
        ref = {"schema": schema, "message_id": message_id, "hand": message.hand_offs}

        def hand_off() -> None:
            outbox_enqueue(session_id=session_id, message=outbound, ref=ref)

    transaction.on_commit(hand_off)


def outbound_message_for(message: Message) -> OutboundMessage:
    """What the provider is given for a stored outbound message."""
    payload = message.payload or {}
    kind = MessageKind(message.kind)
    extra: dict = {}
    if kind == MessageKind.LOCATION:
        extra["location"] = Location(
            latitude=payload["latitude"],
            longitude=payload["longitude"],
            name=payload.get("name", ""),
            address=payload.get("address", ""),
        )
    elif kind == MessageKind.CONTACT:
        extra["contact"] = ContactCard(
            display_name=payload["display_name"], vcard=payload.get("vcard", "")
        )
    elif kind == MessageKind.REACTION:
        extra["reaction"] = Reaction(target_id=payload["target_id"], emoji=payload["emoji"])
    return OutboundMessage(
        to=message.conversation.contact.phone,
        kind=kind,
        text=message.text,
        media_url=message.media_url,
        reply_to_id=message.reply_to_provider_id,
        template_sid=payload.get("template_sid", ""),
        template_variables=dict(payload.get("template_variables") or {}),
        idempotency_key=message.idempotency_key or "",
        **extra,
    )


# --- validation -----------------------------------------------------------------------


def _validated(
    *,
    session,
    to,
    kind,
    text,
    media_url,
    location,
    contact,
    reaction,
    reply_to,
    idempotency_key,
    template_sid,
    template_variables,
    schema: str,
) -> dict:
    """The message's fields, normalised; ValidationError with every problem by field."""
    errors: dict[str, list[str]] = {}

    def problem(field: str, text: str) -> None:
        errors.setdefault(field, []).append(text)

    provider = ""
    if not isinstance(session, WhatsAppSession) or session.pk is None:
        problem("session", "A saved WhatsApp session is required.")
    elif session.tenant.schema_name != schema:
        problem("session", "This session belongs to another tenant.")
    else:
        provider = session.provider

    phone = ""
    try:
        phone = to_e164(str(to or ""))
    except ValidationError:
        problem("to", f"{to!r} is not a phone number (E.164, like +972501234567).")

    kind = str(kind or "")
    text = text if isinstance(text, str) else ""
    media_url = (media_url or "").strip() if isinstance(media_url, str) else ""
    payload: dict = {}
    if kind not in SENDABLE_KINDS:
        problem("kind", f"Unknown message kind {kind!r}: use one of {', '.join(SENDABLE_KINDS)}.")
    if len(text) > MAX_TEXT_LENGTH:
        problem("text", f"A message has at most {MAX_TEXT_LENGTH} characters.")

    if template_sid:
        if provider and provider != Provider.TWILIO:
            problem("template_sid", "Only Twilio sessions send content templates.")
        if kind != MessageKind.TEXT:
            problem("template_sid", "A content template is sent as kind 'text'.")
        variables = template_variables or {}
        if not isinstance(variables, dict):
            problem("template_variables", "Template variables are a mapping of name to text.")
            variables = {}
        payload = {
            "template_sid": str(template_sid).strip(),
            "template_variables": {str(k): str(v) for k, v in variables.items()},
        }
    elif template_variables:
        problem("template_variables", "Template variables need a template_sid.")
    elif kind == MessageKind.TEXT and not text.strip():
        problem("text", "A text message needs some text.")

    if kind in MEDIA_KINDS:
        if not media_url:
            problem("media_url", f"A {kind} message needs a media_url.")
        else:
            try:
                URLValidator(schemes=["http", "https"])(media_url)
            except ValidationError:
                problem("media_url", "The media URL must be an absolute http(s) URL.")
    elif media_url:
        problem("media_url", "Only media messages (image, video, audio...) take a media_url.")

    if kind == MessageKind.LOCATION:
        payload = _location_payload(location)
        if not payload:
            problem("location", "A location needs a latitude (-90..90) and longitude (-180..180).")
    elif location is not None:
        problem("location", "Only location messages take a location.")
    if kind == MessageKind.CONTACT:
        payload = _contact_payload(contact)
        if not payload:
            problem("contact", "A contact message needs a contact with a display_name.")
    elif contact is not None:
        problem("contact", "Only contact messages take a contact.")
    if kind == MessageKind.REACTION:
        payload = _reaction_payload(reaction, reply_to)
        if not payload:
            problem("reaction", "A reaction needs an emoji and the message it reacts to.")
    elif reaction is not None:
        problem("reaction", "Only reaction messages take a reaction.")

    if provider == Provider.TWILIO and kind in SENDABLE_KINDS and kind not in TWILIO_KINDS:
        problem("kind", f"Twilio sessions cannot send {kind} messages on WhatsApp.")

    reply_to_provider_id = ""
    if reply_to is not None:
        if not isinstance(reply_to, Message) or reply_to.pk is None:
            problem("reply_to", "reply_to must be a stored message.")
        elif isinstance(session, WhatsAppSession) and reply_to.session_id != session.pk:
            problem("reply_to", "A reply quotes a message of the same session.")
        else:
            reply_to_provider_id = reply_to.provider_message_id

    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 100
    ):
        problem("idempotency_key", "An idempotency key is a text of 1 to 100 characters.")

    if errors:
        raise ValidationError(errors)
    return {
        "phone": phone,
        "key": idempotency_key,
        "kind": kind,
        "text": text,
        "media_url": media_url,
        "payload": payload,
        "reply_to": reply_to,
        "reply_to_provider_id": reply_to_provider_id,
    }


def _as_dict(value) -> dict | None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value if isinstance(value, dict) else None


def _location_payload(value) -> dict:
    data = _as_dict(value)
    if data is None:
        return {}
    try:
        latitude, longitude = float(data["latitude"]), float(data["longitude"])
    except (KeyError, TypeError, ValueError):
        return {}
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):  # also refuses NaN
        return {}
    return {
        "latitude": latitude,
        "longitude": longitude,
        "name": str(data.get("name") or ""),
        "address": str(data.get("address") or ""),
    }


def _contact_payload(value) -> dict:
    data = _as_dict(value)
    if data is None or not str(data.get("display_name") or "").strip():
        return {}
    return {"display_name": str(data["display_name"]), "vcard": str(data.get("vcard") or "")}


def _reaction_payload(value, reply_to) -> dict:
    data = _as_dict(value)
    if data is None:
        return {}
    target = str(data.get("target_id") or "")
    if not target and isinstance(reply_to, Message):
        target = reply_to.provider_message_id
    emoji = data.get("emoji")
    if not target or not isinstance(emoji, str):
        return {}
    return {"target_id": target, "emoji": emoji}  # "" removes a reaction


# --- before each send: opt-out and limits ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Clearance:
    go: bool
    wait_seconds: float = 0.0  # when not go: > 0 to wait, 0 when it must not be sent


def _clearance(message: Message, *, session: WhatsAppSession) -> _Clearance:
    """May this queued message (row locked by the caller) go now? Suppresses it (and
    says so) when its contact must not be messaged; reserves its place in every limit
    when it may go."""
    reason = _not_to_be_messaged(message.conversation.contact)
    if reason:
        _suppress(message, reason)
        return _Clearance(go=False)
    decision = limits_reserve(
        schema=connection.schema_name,
        session_id=session.pk,
        recipient=message.conversation.contact.phone,
        limits=OutboundLimits.of(tenant_messaging_settings()),
    )
    if not decision.allowed:
        wait = min(MAX_WAIT_SECONDS, max(0.05, decision.wait_seconds))
        metrics.limit_wait_count(decision.limit)
        logger.info("message %s waits %.1f s (%s limit)", message.pk, wait, decision.limit)
        return _Clearance(go=False, wait_seconds=wait)
    return _Clearance(go=True)


def _locked_queued(message_id: int, *, skip_locked: bool = False) -> Message | None:
    rows = (
        Message.objects.select_for_update(of=("self",), skip_locked=skip_locked)
        .select_related("conversation__contact")
        .filter(pk=message_id, direction=Message.Direction.OUTBOUND, status=_Status.QUEUED)
        .order_by()
    )
    return next(iter(rows), None)


def _session(session_id: int) -> WhatsAppSession | None:
    return next(iter(WhatsAppSession.objects.filter(pk=session_id).order_by()), None)


# A worker sending many messages of one session reads the session (and decrypts its
# credentials) at most this often: a change of credentials, or a deleted session, takes
# effect within seconds.
SESSION_TTL_SECONDS = 2.0
_sessions_cache: dict[int, tuple[float, WhatsAppSession | None]] = {}


def _session_recent(session_id: int) -> WhatsAppSession | None:
    now = time.monotonic()
    cached = _sessions_cache.get(session_id)
    if cached is not None and now - cached[0] < SESSION_TTL_SECONDS:
        return cached[1]
    session = _session(session_id)
    _sessions_cache[session_id] = (now, session)
    return session


# --- Twilio: the Celery task's service ------------------------------------------------


def message_deliver(*, message_id: int) -> float | None:
    """Send one queued message of a Twilio session, if its limits allow it now; in the
    message's tenant schema.

    Returns None when the message is done with -- sent, failed, suppressed, or not queued
    (any more) -- else the seconds after which to call again: a limit's wait (which is
    not an attempt) or a retry's backoff. The row stays locked from the checks to the
    recorded outcome, so two deliveries of one message never both send it.
    """
    with transaction.atomic():
        message = _locked_queued(message_id, skip_locked=True)
        if message is None:
            return None  # done with, or another worker is sending it right now
        session = _session_recent(message.session_id)
        if session is None:
            _failed(message, error="Its session no longer exists.")
            return None
        schema = connection.schema_name
        mark = in_flight_get(schema=schema, message_id=message.pk)
        since = time.time()
        if mark is not None and mark.attempt > message.attempts:
            # An earlier attempt's outcome was never recorded: did Twilio accept it?
            try:
                sid = _accepted_earlier(message, session=session, since=mark.since)
            except NeverRetry as error:  # e.g. its credentials no longer work
                _failed(message, error=str(error), code=getattr(error, "code", None))
                return None
            except ProviderError as error:
                delay = _retry_delay(message, error)
                logger.info(
                    "message %s: Twilio not asked (%s); again in %.1fs", message.pk, error, delay
                )
                _due_in(message, delay)
                return delay
            if sid:
                logger.info(
                    "message %s: attempt %s was accepted as %s", message.pk, mark.attempt, sid
                )
                message.attempts = mark.attempt
                _sent(message, provider_message_id=sid)
                _clear_mark_after_commit(schema, message.pk)
                return None
            since = mark.since
        clearance = _clearance(message, session=session)
        if not clearance.go:
            if clearance.wait_seconds:
                _due_in(message, clearance.wait_seconds)
            return clearance.wait_seconds or None
        message.attempts += 1
        # Before the request, and fails (the task is retried) when it cannot be written.
        in_flight_set(schema=schema, message_id=message.pk, attempt=message.attempts, since=since)
        try:
            result = _twilio_provider(session).send(outbound_message_for(message))
        except NeverRetry as error:
            _failed(message, error=str(error), code=getattr(error, "code", None))
            _clear_mark_after_commit(schema, message.pk)
            return None
        except RetryLater as error:
            again_in = _retry_or_fail(message, error)
        except Exception as error:  # a bug: retried like a passing failure, never lost
            logger.exception("message %s: Twilio send crashed", message.pk)
            crash = ProviderError(f"Unexpected error: {type(error).__name__}")
            again_in = _retry_or_fail(message, crash)
        else:
            _sent(message, provider_message_id=result.provider_message_id)
            _clear_mark_after_commit(schema, message.pk)
            return None
        if again_in is None:  # a dead letter now
            _clear_mark_after_commit(schema, message.pk)
        return again_in


def _accepted_earlier(message: Message, *, session: WhatsAppSession, since: float) -> str:
    """The SID of a message Twilio accepted for `message` since `since` (epoch seconds)
    that no other message of the tenant has recorded, or "" (messaging/send_marks.py)."""
    start = datetime.fromtimestamp(since - CLOCK_MARGIN_SECONDS, tz=UTC).replace(microsecond=0)
    candidates = _twilio_provider(session).sent_matching(outbound_message_for(message), since=start)
    if not candidates:
        return ""
    known = set(
        Message.objects.filter(provider_message_id__in=candidates).values_list(
            "provider_message_id", flat=True
        )
    )
    return next((sid for sid in candidates if sid not in known), "")


def _clear_mark_after_commit(schema: str, message_id: int) -> None:
    transaction.on_commit(lambda: in_flight_clear(schema=schema, message_id=message_id))


_providers = threading.local()


def _twilio_provider(session: WhatsAppSession):
    """The session's TwilioProvider, kept per thread while its credentials and the API's
    address stay the same: its HTTP connection to Twilio is reused (keep-alive), not
    opened -- with a TLS handshake -- for every message."""
    from sessions_app.providers.twilio_provider import TwilioProvider

    cache = getattr(_providers, "by_session", None)
    if cache is None:
        cache = _providers.by_session = {}
    key = (
        session.twilio_account_sid,
        str(session.twilio_auth_token or ""),
        session.twilio_from_number,
        session.twilio_messaging_service_sid,
        getattr(settings, "TWILIO_API_BASE_URL", ""),
    )
    cached = cache.get(session.pk)
    if cached is None or cached[0] != key:
        cached = cache[session.pk] = (key, TwilioProvider(session))
    return cached[1]


def _retry_or_fail(message: Message, error: ProviderError) -> float | None:
    """After a failed attempt that may be retried: the delay until the next, or, when the
    retries are used up, the message becomes a dead letter (None)."""
    delays = retry_delays()
    code = getattr(error, "code", None)
    if message.attempts > len(delays):
        _failed(message, error=f"Gave up after {message.attempts} attempts: {error}", code=code)
        return None
    delay = _retry_delay(message, error)
    message.last_error = str(error)[:500]
    message.error_code = str(code or "")
    message.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    message.save(update_fields=["attempts", "last_error", "error_code", "next_attempt_at"])
    _count_after_commit(metrics.retry_count, _provider_of(message))
    logger.info("message %s: attempt %s failed; next in %.1fs", message.pk, message.attempts, delay)
    return delay


def _retry_delay(message: Message, error: ProviderError) -> float:
    """The wait before trying again after `message.attempts` attempts: the provider's
    Retry-After, else settings.OUTBOUND_RETRY_DELAYS."""
    delays = retry_delays()
    retry_after = getattr(error, "retry_after", None)
    if retry_after is None:
        delay = delays[min(max(message.attempts, 1), len(delays)) - 1] if delays else 5.0
    else:
        delay = retry_after
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, float(delay)))


# --- live sessions: what the runner asks and reports ------------------------------------


def outbound_live_check(
    *, session_id: int, message_id: int, attempts: int, hand: int | None = None
) -> SendCheck:
    """Before a runner sends message `message_id` (in the current tenant schema), after
    `attempts` attempts: skip it when it is not queued any more, when the outbox entry
    is of an older hand-off (`hand`: the sweep handed it again), or when its contact must
    not be messaged (recorded as suppressed); wait when a limit says so; else clear it,
    with the steps of the session's humanisation profile on the first attempt."""
    with transaction.atomic():
        message = _locked_queued(message_id)
        if message is None:
            return SendCheck(skip=True)
        if hand is not None and hand != message.hand_offs:
            logger.info("message %s: outbox entry of hand-off %s skipped", message.pk, hand)
            return SendCheck(skip=True)
        session = _session(session_id)
        if session is None or session.pk != message.session_id:
            return SendCheck(skip=True)
        if attempts > message.attempts:  # retries in the runner show on the message too
            message.attempts = attempts
            message.save(update_fields=["attempts"])
        clearance = _clearance(message, session=session)
        if not clearance.go:
            if clearance.wait_seconds:
                _due_in(message, clearance.wait_seconds)
            return SendCheck(wait_seconds=clearance.wait_seconds, skip=not clearance.wait_seconds)
        if attempts or profile_for(session.humanization_profile) is None:
            _due_in(message, 0)
            return SendCheck()
        check = _humanised(message, profile=session.humanization_profile)
        _due_in(message, check.steps[-1][0] if check.steps else 0)
        return check


def _due_in(message: Message, seconds: float) -> None:
    """Its sender looks at it again in `seconds` (the caller holds the row lock): until
    then, and a grace period after, the re-hand sweep leaves it alone."""
    message.next_attempt_at = timezone.now() + timedelta(seconds=seconds)
    message.save(update_fields=["next_attempt_at"])


def _humanised(message: Message, *, profile: str) -> SendCheck:
    conversation = message.conversation
    first_contact = not Message.objects.filter(
        conversation=conversation, direction=Message.Direction.OUTBOUND, sent_at__isnull=False
    ).exists()
    unread = list(
        Message.objects.filter(
            conversation=conversation, direction=Message.Direction.INBOUND, read_at__isnull=True
        )
        .exclude(provider_message_id="")
        .order_by("-created_at", "-id")
        .values_list("pk", "provider_message_id")[:UNREAD_TO_MARK_READ]
    )
    if unread:  # the plan's first step marks them read, within a few seconds
        Message.objects.filter(pk__in=[pk for pk, _ in unread]).update(read_at=timezone.now())
    steps = humanize_plan(
        profile=profile, text=message.text, kind=message.kind, first_contact=first_contact
    )
    return SendCheck(
        steps=tuple((step.at, step.action) for step in steps),
        read_ids=tuple(provider_id for _, provider_id in reversed(unread)),
    )


def message_sent_record(
    *, message_id: int, provider_message_id: str, attempts: int
) -> Message | None:
    """A runner sent it: `sent`, with the provider's id. Returns the message when it
    changed (a repeat report changes nothing)."""
    with transaction.atomic():
        message = _locked_queued(message_id)
        if message is None:
            return None
        message.attempts = max(message.attempts, attempts)
        _sent(message, provider_message_id=provider_message_id)
        return message


def message_failed_record(*, message_id: int, error: str, attempts: int) -> Message | None:
    """A runner gave up on it: `failed`, kept as a dead letter."""
    with transaction.atomic():
        message = _locked_queued(message_id)
        if message is None:
            return None
        message.attempts = max(message.attempts, attempts)
        _failed(message, error=error)
        return message


# --- status changes (the caller holds the row lock) -------------------------------------


def _sent(message: Message, *, provider_message_id: str) -> None:
    message.status = _Status.SENT
    message.sent_at = timezone.now()
    message.provider_message_id = provider_message_id or ""
    message.last_error = ""
    message.error_code = ""
    message.save(
        update_fields=[
            "status",
            "sent_at",
            "provider_message_id",
            "attempts",
            "last_error",
            "error_code",
        ]
    )
    latency = (message.sent_at - message.created_at).total_seconds() if message.created_at else None
    provider = _provider_of(message)
    transaction.on_commit(lambda: metrics.sent_count(provider, latency_seconds=latency))
    message_event_after_commit(message, "message.status")


def _count_after_commit(count, provider: str) -> None:
    """Count once the outcome is committed: a rolled-back outcome never happened."""
    transaction.on_commit(lambda: count(provider))


def _provider_of(message: Message) -> str:
    session = _session_recent(message.session_id)
    return session.provider if session is not None else ""


def _failed(message: Message, *, error: str, code=None) -> None:
    message.status = _Status.FAILED
    message.dead_letter = True
    message.failed_at = timezone.now()
    message.last_error = (error or "Failed")[:500]
    message.error_code = str(code or "")
    message.save(
        update_fields=[
            "status",
            "dead_letter",
            "failed_at",
            "attempts",
            "last_error",
            "error_code",
        ]
    )
    logger.warning("message %s failed for good: %s", message.pk, message.last_error)
    _count_after_commit(metrics.failed_count, _provider_of(message))
    message_event_after_commit(message, "message.status")


def _suppress(message: Message, reason: str) -> None:
    message.status = _Status.SUPPRESSED
    message.last_error = reason
    message.save(update_fields=["status", "last_error"])
    _count_after_commit(metrics.suppressed_count, _provider_of(message))
    logger.info("message %s not sent: %s", message.pk, reason)
    message_event_after_commit(message, "message.status")


# --- dead letters ---------------------------------------------------------------------


def message_dead_letters() -> QuerySet[Message]:
    """Outbound messages that failed after their last try (newest first; page by keyset
    on created_at and id)."""
    return (
        Message.objects.filter(dead_letter=True, direction=Message.Direction.OUTBOUND)
        .select_related("conversation__contact")
        .order_by("-created_at", "-id")
    )


def message_retry(*, message: Message) -> Message:
    """Send a dead letter again: `queued` with a fresh count of attempts and the same
    idempotency key (it is the same message, never a second one), handed to its sender
    after commit. ValidationError when it is not a dead letter."""
    schema = connection.schema_name
    with transaction.atomic():
        locked = (
            Message.objects.select_for_update(of=("self",))
            .select_related("conversation__contact")
            .filter(pk=message.pk, direction=Message.Direction.OUTBOUND)
            .first()
        )
        if locked is None or not locked.dead_letter or locked.status != _Status.FAILED:
            raise ValidationError("Only a dead letter (failed after its last try) can be retried.")
        session = _session(locked.session_id)
        if session is None:
            raise ValidationError("The message's session no longer exists.")
        locked.status = _Status.QUEUED
        locked.dead_letter = False
        locked.attempts = 0
        locked.failed_at = None
        locked.last_error = ""
        locked.error_code = ""
        locked.hand_offs += 1
        locked.next_attempt_at = timezone.now()
        locked.save(
            update_fields=[
                "status",
                "dead_letter",
                "attempts",
                "failed_at",
                "last_error",
                "error_code",
                "hand_offs",
                "next_attempt_at",
            ]
        )
        # An old attempt's in-flight mark must not make the new attempts ask Twilio.
        _clear_mark_after_commit(schema, locked.pk)
        _hand_off_after_commit(locked, session=session, schema=schema)
        message_event_after_commit(locked, "message.status")
    logger.info("message %s: dead letter queued again", locked.pk)
    return locked
