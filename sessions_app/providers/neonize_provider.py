"""neonize (WhatsApp's multi-device web protocol, through whatsmeow) as a LiveConnection.

Only the session runner imports this module (sessions_app/runner.py, lazily): importing
neonize loads an 18 MB Go library and starts Go threads, and a process must never fork
after that (see /work/shared/design/NEONIZE.md, hazard 3). Django startup, the web
processes and Celery never import it.

How the hazards of NEONIZE.md are handled here:

- One process-wide lock, `_NEONIZE_LOCK`, around every call into the Go library: its
  session maps are not locked (hazard 2). A connect holds it from before the Go side
  registers the session until the session shows a first sign of life (a QR code, an
  event, a failure) or START_GATE_SECONDS pass, so sessions start one at a time.
- Each connect() makes a fresh `NewClient` whose uuid is the session's public id, with
  every handler registered before the Go side starts (hazard 5). The previous client of
  the connection is stopped first, under the lock, so one live client holds the uuid.
  The garbage-collection finalizer of each client is detached: it would stop whichever
  Go client holds the uuid at that moment -- the new one too -- from whatever thread the
  collector runs on. A client stays referenced until its Go call has returned, because
  its ctypes callbacks must outlive it.
- neonize keeps handlers as weak references: they are bound methods of an `_Attempt`,
  which the connection (and, while its thread runs, `_LIVE_ATTEMPTS`) holds strongly.
  neonize swallows exceptions raised in handlers: each one logs its own.
- Handlers only normalise and hand over to the ConnectionEvents sink (hazard 6).
- Every Go call that opens the device store (each connect, GetAllDevices) makes a
  database pool the Go side never closes, so each gets a PostgreSQL application_name of
  its own: once the call has ended, its idle connections are closed on the server
  (release_store_connections), and idle_session_timeout closes any left over. Without
  that, each failed connect kept one connection open for the life of the process.
- A stored device is resumed by its JID only after checking that the device store holds
  it: a connect with an unknown JID aborts the whole process (hazard 4). A missing device
  is paired anew, with a QR code. New devices are paired with new_device=True (hazard 9).
- Media for outgoing messages is always handed to neonize as bytes: neonize reads a
  string as a URL or as a local file path (which would let a message send any file the
  runner can read). A media_url is fetched here, over http(s) only.

The runner decides about reconnecting: after a disconnect is reported, this module stops
the Go client (so that whatsmeow's own auto-reconnect does not run alongside) and waits
for the next connect().
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from sessions_app.phone_numbers import digits, to_e164
from sessions_app.providers.base import (
    Capabilities,
    ConnectionEvents,
    ContactCard,
    DisconnectKind,
    InboundMessage,
    LiveConnection,
    Location,
    Media,
    MessageKind,
    NeverRetry,
    OutboundMessage,
    Presence,
    PresenceState,
    ProviderError,
    RateLimited,
    Reaction,
    Receipt,
    ReceiptKind,
    RetryLater,
    SendResult,
    SessionConfig,
)


def neonize_store_url() -> str:
    """The device store: NEONIZE_DATABASE_URL, else the database Django is using now
    (derived at use time, so a test database is followed too)."""
    if settings.NEONIZE_DATABASE_URL:
        return settings.NEONIZE_DATABASE_URL
    from urllib.parse import quote

    from django.db import connections

    database = connections["default"].settings_dict
    credentials = quote(str(database.get("USER") or ""), safe="")
    if database.get("PASSWORD"):
        credentials += ":" + quote(str(database["PASSWORD"]), safe="")
    host = database.get("HOST") or "localhost"
    port = database.get("PORT") or 5432
    name = quote(str(database["NAME"]), safe="")
    return f"postgres://{credentials}@{host}:{port}/{name}?sslmode=disable"


def _import_neonize() -> None:
    """Import neonize, undoing what its import does to the root logger (hazard 11): it
    calls logging.basicConfig(level=INFO) with a handler of its own."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import neonize.client  # noqa: F401
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


_import_neonize()

# Imported for real just above; these only bind the names (no logging side effects left).
from neonize._binder import ProxySettings, func_callback_bytes2, gocode  # noqa: E402
from neonize.client import NewClient  # noqa: E402
from neonize.events import (  # noqa: E402
    ChatPresenceEv,
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    PresenceEv,
    ReceiptEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.exc import NeonizeError  # noqa: E402
from neonize.proto.Neonize_pb2 import JID, ConnectFailureReason  # noqa: E402
from neonize.proto.waCommon.WACommon_pb2 import MessageKey  # noqa: E402
from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import (  # noqa: E402
    DeviceProps,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (  # noqa: E402
    ContactMessage,
    LocationMessage,
    Message,
    ReactionMessage,
)
from neonize.utils import log_whatsmeow  # noqa: E402
from neonize.utils.enum import (  # noqa: E402
    ChatPresence,
    ChatPresenceMedia,
    ClientName,
    ReceiptType,
)
from neonize.utils.jid import Jid2String, JIDToNonAD  # noqa: E402

logger = logging.getLogger(__name__)

# neonize hands its own logger's level to the Go side at each connect (whatsmeow's logs
# then come back through the "whatsmeow.*" loggers); left unset, it hands over none.
_neonize_log = logging.getLogger("neonize.utils.log")
if _neonize_log.level == logging.NOTSET:
    _neonize_log.setLevel(logging.INFO)

# --- tunables -------------------------------------------------------------------------

FIRST_QR_SECONDS = 60  # WhatsApp's first QR code lives about a minute,
NEXT_QR_SECONDS = 20  # each later one about 20 seconds.
START_GATE_SECONDS = 10.0  # the longest one session's start holds up the others
STOP_WAIT_SECONDS = 3.0  # how long disconnect()/connect() wait for an old Go call to end
MEDIA_FETCH_TIMEOUT_SECONDS = 30.0
MAX_MEDIA_BYTES = 64 * 1024 * 1024
RATE_LIMIT_RETRY_SECONDS = 60.0
REMEMBERED_MESSAGES = 100  # per session: recent messages, to quote and react to them
REMEMBERED_MESSAGE_MAX_BYTES = 8 * 1024  # (thumbnails and nested quotes left out)
REASON_MAX_CHARS = 280  # WhatsAppSession.last_disconnect_reason holds 300
# The server closes a device-store connection left idle this long (PostgreSQL 14+).
STORE_IDLE_SESSION_SECONDS = 30

DEVICE_OS_NAME = "WhatsApp Business Platform"  # shown in the phone's linked devices
USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
GROUP_SERVER = "g.us"

# --- the disconnect table -------------------------------------------------------------

# A key of the table for the end of the QR phase, which neonize reports through its
# login-status callback rather than as an event: (QR_LOGIN_STATUS, whatsmeow's status).
QR_LOGIN_STATUS = "qr-login-status"

# whatsmeow's ConnectFailureReason codes, as neonize's enum names them.
CONNECT_FAILURE_CODES = {
    ConnectFailureReason.GENERIC: 400,
    ConnectFailureReason.LOGGED_OUT: 401,
    ConnectFailureReason.TEMP_BANNED: 402,
    ConnectFailureReason.MAIN_DEVICE_GONE: 403,
    ConnectFailureReason.CLIENT_OUTDATED: 405,
    ConnectFailureReason.UNKNOWN_LOGOUT: 406,
    ConnectFailureReason.BAD_USER_AGENT: 409,
    ConnectFailureReason.INTERNAL_SERVER_ERROR: 500,
    ConnectFailureReason.EXPERIMENTAL: 501,
    ConnectFailureReason.SERVICE_UNAVAILABLE: 503,
}

# Every way a connection ends, and what the runner should make of it. Keys: an event
# class, (ConnectFailureEv, reason), NeonizeError (connect() raising, e.g. "failed to
# dial whatsapp web websocket: ..."), or (QR_LOGIN_STATUS, status).
DISCONNECT_TABLE: dict[Any, DisconnectKind] = {
    # Unlinked from the phone; whatsmeow has deleted the device from the store itself.
    LoggedOutEv: DisconnectKind.LOGGED_OUT,
    TemporaryBanEv: DisconnectKind.BANNED,
    StreamReplacedEv: DisconnectKind.REPLACED,
    DisconnectedEv: DisconnectKind.TRANSIENT,
    KeepAliveTimeoutEv: DisconnectKind.TRANSIENT,
    ClientOutdatedEv: DisconnectKind.FATAL,
    NeonizeError: DisconnectKind.TRANSIENT,
    # whatsmeow turns the logged-out, temporary-ban and client-outdated failures into
    # the events above; these rows cover a ConnectFailureEv carrying them all the same.
    (ConnectFailureEv, ConnectFailureReason.GENERIC): DisconnectKind.TRANSIENT,
    (ConnectFailureEv, ConnectFailureReason.LOGGED_OUT): DisconnectKind.LOGGED_OUT,
    (ConnectFailureEv, ConnectFailureReason.TEMP_BANNED): DisconnectKind.BANNED,
    (ConnectFailureEv, ConnectFailureReason.MAIN_DEVICE_GONE): DisconnectKind.LOGGED_OUT,
    (ConnectFailureEv, ConnectFailureReason.UNKNOWN_LOGOUT): DisconnectKind.LOGGED_OUT,
    (ConnectFailureEv, ConnectFailureReason.CLIENT_OUTDATED): DisconnectKind.FATAL,
    (ConnectFailureEv, ConnectFailureReason.BAD_USER_AGENT): DisconnectKind.FATAL,
    (ConnectFailureEv, ConnectFailureReason.INTERNAL_SERVER_ERROR): DisconnectKind.TRANSIENT,
    (ConnectFailureEv, ConnectFailureReason.EXPERIMENTAL): DisconnectKind.TRANSIENT,
    (ConnectFailureEv, ConnectFailureReason.SERVICE_UNAVAILABLE): DisconnectKind.TRANSIENT,
    # The QR phase ended without a scan, or WhatsApp refused this client version.
    (QR_LOGIN_STATUS, "timeout"): DisconnectKind.QR_EXPIRED,
    (QR_LOGIN_STATUS, "err-client-outdated"): DisconnectKind.FATAL,
    (QR_LOGIN_STATUS, "err-unexpected-state"): DisconnectKind.TRANSIENT,
    (QR_LOGIN_STATUS, "error"): DisconnectKind.TRANSIENT,
}

# --- the process-wide lock --------------------------------------------------------------

# Every call into neonize's Go library holds it (hazard 2). A plain Lock, not an RLock: a
# starting session's gate is opened (released) by whichever thread sees the first sign
# of life. Code that runs while holding it never takes it again (names end in _locked).
_NEONIZE_LOCK = threading.Lock()

# Attempts whose Go call has not returned: their NewClient and ctypes callbacks must stay
# alive even if their connection is dropped.
_LIVE_ATTEMPTS: set[_Attempt] = set()
_LIVE_ATTEMPTS_GUARD = threading.Lock()
_PREPARED_STORES: set[str] = set()


def _neonize_call(function: Callable[[], Any]) -> Any:
    with _NEONIZE_LOCK:
        return function()


class _StartGate:
    """_NEONIZE_LOCK, held while one session starts. Opened once, by whichever thread sees
    the session's first sign of life -- or, once armed (just before the Go call that
    blocks for the session's life), after `seconds`."""

    def __init__(self):
        _NEONIZE_LOCK.acquire()
        self._guard = threading.Lock()
        self._open = False
        self._timer: threading.Timer | None = None

    def arm(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self.open)
        self._timer.daemon = True
        self._timer.start()

    def open(self) -> None:
        with self._guard:
            if self._open:
                return
            self._open = True
            timer = self._timer
        if timer is not None:
            timer.cancel()
        _NEONIZE_LOCK.release()


# --- the device store -----------------------------------------------------------------


class DeviceStoreError(ProviderError):
    """The device store cannot be read (database down, bad URL): a transient failure."""


def _is_postgres(store: str) -> bool:
    return store.startswith(("postgres://", "postgresql://"))


def prepare_device_store(store: str) -> None:
    """Create or upgrade whatsmeow's tables, once per process and store, before sessions
    start (hazard 9). Through neonize's GetAllDevices, which runs whatsmeow's upgrade.

    Each call into it (like each connect) opens a database pool the Go side never closes:
    that is why it runs once, why its connection is closed on the server right after
    (release_store_connections), and why device checks use their own short-lived
    connection (device_in_store)."""
    with _NEONIZE_LOCK:
        _prepare_device_store_locked(store)


def _prepare_device_store_locked(store: str) -> None:
    if store in _PREPARED_STORES:
        return
    name = store_application_name()
    callback = func_callback_bytes2(log_whatsmeow)
    raw = gocode.GetAllDevices(store_url_for_call(store, name).encode(), callback)
    release_store_connections(store, name)
    answer = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")
    if answer.startswith("error:"):
        raise DeviceStoreError(f"The neonize device store cannot be prepared: {answer[6:].strip()}")
    _PREPARED_STORES.add(store)


# --- the device store's PostgreSQL connections ------------------------------------------
#
# neonize's Go side opens the store afresh in every call that needs it -- each connect()
# (neonize's Neonize -> getDB -> sqlstore.New) and each GetAllDevices -- and never closes
# it: every call leaves a database/sql pool behind, holding one idle connection on the
# server for the life of the process. A runner whose sessions keep failing to connect
# (WhatsApp unreachable) thus opened one more connection per failed connect until the
# server's max_connections ran out (bench/neonize_memory.py: 265 connections after 257
# failed connects of 100 sessions). ClientFactory changes nothing here: its clients are
# NewClients on the same database name, each connect opening its own pool.
#
# So each call gets a store URL of its own, with parameters lib/pq hands to the server:
# - application_name, unique per call: pg_stat_activity shows who holds a connection,
#   and once the call has ended, release_store_connections() closes that call's idle
#   connections on the server (pg_terminate_backend; a role may end its own backends);
# - idle_session_timeout (PostgreSQL 14+): the server closes any store connection left
#   idle that long -- the safety net, and it lets a quiet live session hold none.
# A live client loses nothing when its idle connection is closed: lib/pq reports the
# server's FATAL on it as driver.ErrBadConn, and database/sql retries the query on a new
# connection (tested with a resumed device: reads and writes go on after each timeout).
# What the Go side keeps of an ended call -- the socket's file descriptor (CLOSE_WAIT)
# and some memory -- only ends with the process: recycle a runner after many failures.

_PROCESS_TAG = secrets.token_hex(3)  # keeps names apart across hosts with equal pids
_CALL_NUMBERS = itertools.count(1)
_STORE_SETTINGS: dict[str, dict[str, str]] = {}  # store -> server parameters it accepts
_STORE_SETTINGS_GUARD = threading.Lock()


def store_application_name() -> str:
    """A PostgreSQL application_name for one Go call that opens the store."""
    return f"neonize-{os.getpid()}-{_PROCESS_TAG}-{next(_CALL_NUMBERS)}"


def _store_server_settings(store: str) -> dict[str, str]:
    """Run-time parameters to hand the store's server with each call (asked once)."""
    with _STORE_SETTINGS_GUARD:
        known = _STORE_SETTINGS.get(store)
    if known is not None:
        return known
    import psycopg

    try:
        with psycopg.connect(store, connect_timeout=5) as connection:
            version = int(connection.execute("SHOW server_version_num").fetchone()[0])
    except Exception as error:
        raise DeviceStoreError(
            f"The neonize device store cannot be reached: {error.__class__.__name__}"
        ) from error
    found = {}
    if version >= 140000:  # idle_session_timeout is new in PostgreSQL 14
        found["idle_session_timeout"] = str(STORE_IDLE_SESSION_SECONDS * 1000)
    with _STORE_SETTINGS_GUARD:
        _STORE_SETTINGS[store] = found
    return found


def store_url_for_call(store: str, application_name: str) -> str:
    """The store URL to give one Go call: for PostgreSQL, tagged with `application_name`
    (always: release_store_connections finds the call's connections by it) and with the
    server-side idle timeout unless the URL sets one. A SQLite store is left as it is."""
    if not _is_postgres(store):
        return store
    parts = urlsplit(store)
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key != "application_name"
    ]
    given = {key for key, _value in query}
    query.append(("application_name", application_name))
    for key, value in _store_server_settings(store).items():
        if key not in given:
            query.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def release_store_connections(store: str, application_name: str) -> int:
    """Close, on the server, the idle connections of a Go call that has ended (its pool
    is never used again); the number closed. Connections busy in a query or transaction
    are left to idle_session_timeout. Failing here only delays that: never raises."""
    if not _is_postgres(store):
        return 0
    import psycopg

    try:
        with psycopg.connect(store, connect_timeout=5, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND state = 'idle' "
                "AND usename = current_user AND pid <> pg_backend_pid()",
                (application_name,),
            ).fetchall()
    except Exception as error:
        logger.warning(
            "neonize: could not close the device-store connections of %s (%s); the "
            "server's idle timeout will",
            application_name,
            error.__class__.__name__,
        )
        return 0
    return sum(1 for (closed,) in rows if closed)


def device_in_store(store: str, device_jid: str) -> bool:
    """Whether whatsmeow's store holds this device (its whatsmeow_device row).

    Read with a connection of our own rather than neonize's get_all_devices_from_db: that
    one leaks a database connection per call, and fails (ValueError) when a device's push
    name contains a comma -- common in business names."""
    try:
        if _is_postgres(store):
            import psycopg

            with psycopg.connect(store, connect_timeout=5) as connection:
                exists = connection.execute(
                    "SELECT to_regclass('whatsmeow_device') IS NOT NULL"
                ).fetchone()[0]
                if not exists:
                    return False
                row = connection.execute(
                    "SELECT 1 FROM whatsmeow_device WHERE jid = %s", (device_jid,)
                ).fetchone()
                return row is not None
        with sqlite3.connect(store, timeout=5) as connection:
            table = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'whatsmeow_device'"
            ).fetchone()
            if table is None:
                return False
            row = connection.execute(
                "SELECT 1 FROM whatsmeow_device WHERE jid = ?", (device_jid,)
            ).fetchone()
            return row is not None
    except Exception as error:
        raise DeviceStoreError(
            f"The neonize device store cannot be read: {error.__class__.__name__}"
        ) from error


# --- JIDs and phone numbers -----------------------------------------------------------


def jid_from_string(value: str) -> JID:
    """A JID from whatsmeow's text form: "972501234567:12@s.whatsapp.net" (a device),
    "972501234567@s.whatsapp.net", "120363041234567890@g.us"; ValueError otherwise."""
    user, at, server = (value or "").strip().partition("@")
    if not at or not server:
        raise ValueError(f"{value!r} is not a WhatsApp JID.")
    agent = device = 0
    if server in (USER_SERVER, LID_SERVER):
        user, colon, device_text = user.partition(":")
        if colon:
            device = int(device_text)
        user, dot, agent_text = user.partition(".")
        if dot:
            agent = int(agent_text)
    if not user:
        raise ValueError(f"{value!r} is not a WhatsApp JID.")
    return JID(User=user, RawAgent=agent, Device=device, Integrator=0, Server=server, IsEmpty=False)


def _user_jid(phone_digits: str) -> JID:
    return JID(
        User=phone_digits, RawAgent=0, Device=0, Integrator=0, Server=USER_SERVER, IsEmpty=False
    )


def _phone(jid: JID) -> str:
    """+E.164 for a phone-number JID; "" for anything else (lid, group, empty)."""
    if jid.Server in (USER_SERVER, "c.us") and jid.User.isdigit():
        return f"+{jid.User}"
    return ""


def _plain(jid: JID) -> str:
    """The JID without its device part, as text: "972501234567@s.whatsapp.net"."""
    return Jid2String(JIDToNonAD(jid)) if jid.User or jid.Server else ""


def _parties(source) -> tuple[str, str, bool]:
    """(chat, sender, is_group) of a MessageSource: phones in E.164 where WhatsApp tells
    them, a lid JID ("…@lid") where it only gives the hidden id."""
    sender = _phone(source.Sender) or _phone(source.SenderAlt) or _plain(source.Sender)
    is_group = bool(source.IsGroup) or source.Chat.Server == GROUP_SERVER
    if is_group:
        return _plain(source.Chat), sender, True
    if source.IsFromMe:  # our own message (sent from the phone): the chat is the recipient
        chat = _phone(source.Chat) or _phone(source.RecipientAlt) or _plain(source.Chat)
    else:
        chat = _phone(source.Chat) or sender
    return chat, sender, False


def _from_seconds(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else datetime.now(UTC)


def _from_milliseconds(milliseconds: int) -> datetime:
    # MessageEv.Info.Timestamp is in milliseconds (neonize encodes time.UnixMilli()).
    return (
        _from_seconds(0) if milliseconds <= 0 else datetime.fromtimestamp(milliseconds / 1000, UTC)
    )


# --- inbound: pure normalisation ----------------------------------------------------------

# Wrappers whose .message is the real content (whatsmeow usually unwraps them already).
_WRAPPERS = (
    "ephemeralMessage",
    "lottieStickerMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
)
# What a customer can write, in the order it is looked for.
_CONTENT_FIELDS = (
    "reactionMessage",
    "imageMessage",
    "videoMessage",
    "ptvMessage",
    "audioMessage",
    "documentMessage",
    "stickerMessage",
    "locationMessage",
    "liveLocationMessage",
    "contactMessage",
    "contactsArrayMessage",
    "extendedTextMessage",
    "conversation",
)


def _unwrap(message: Message) -> Message:
    for _ in range(4):
        for wrapper in _WRAPPERS:
            if message.HasField(wrapper) and getattr(message, wrapper).HasField("message"):
                message = getattr(message, wrapper).message
                break
        else:
            return message
    return message


def _content_field(message: Message) -> str:
    for name in _CONTENT_FIELDS:
        if message.HasField(name):
            return name
    return ""


def _reply_to(message: Message, field: str) -> str:
    if not field or field == "conversation" or field == "reactionMessage":
        return ""
    part = getattr(message, field)
    if "contextInfo" in part.DESCRIPTOR.fields_by_name and part.HasField("contextInfo"):
        return part.contextInfo.stanzaID
    return ""


# Not something a person wrote to the business: revokes, edits, app-state and history
# notifications (protocolMessage), votes, pins...
_ACTIONS = (
    "protocolMessage",
    "editedMessage",
    "pollUpdateMessage",
    "encReactionMessage",
    "pinInChatMessage",
    "keepInChatMessage",
)
# Fields that ride along with a message but are no content of their own.
_NOT_CONTENT = {
    "senderKeyDistributionMessage",
    "fastRatchetKeySenderKeyDistributionMessage",
    "messageContextInfo",
}


def is_protocol_message(ev: MessageEv) -> bool:
    """Whether the event carries no message a person wrote (only keys, an edit, a
    revoke, a vote...): those are not handed to the runner."""
    message = _unwrap(ev.Message)
    if ev.IsEdit or any(message.HasField(name) for name in _ACTIONS):
        return True
    return all(field.name in _NOT_CONTENT for field, _ in message.ListFields())


def inbound_from_message_event(
    ev: MessageEv, *, download: Callable[[Message], bytes] | None = None
) -> InboundMessage:
    """An InboundMessage from neonize's MessageEv. `download(message)` fetches the media of
    a message through the session's client; Media.download calls it with this one."""
    info = ev.Info
    chat, sender, is_group = _parties(info.MessageSource)
    content = _unwrap(ev.Message)
    field = _content_field(content)
    fields: dict[str, Any] = {}
    text = ""
    kind = MessageKind.UNSUPPORTED

    def media(part, *, caption: str = "", filename: str = "") -> Media:
        fetch = None
        if download is not None:
            copy = Message()
            copy.CopyFrom(content)

            def fetch() -> bytes:
                return download(copy)

        return Media(
            mime_type=part.mimetype,
            caption=caption,
            filename=filename,
            size=part.fileLength or None,
            download=fetch,
        )

    if field == "reactionMessage":
        kind = MessageKind.REACTION
        part = content.reactionMessage
        fields["reaction"] = Reaction(target_id=part.key.ID, emoji=part.text)
    elif field == "imageMessage":
        kind, text = MessageKind.IMAGE, content.imageMessage.caption
        fields["media"] = media(content.imageMessage, caption=text)
    elif field in ("videoMessage", "ptvMessage"):
        part = getattr(content, field)
        kind, text = MessageKind.VIDEO, part.caption
        fields["media"] = media(part, caption=text)
    elif field == "audioMessage":
        kind = MessageKind.VOICE if content.audioMessage.PTT else MessageKind.AUDIO
        fields["media"] = media(content.audioMessage)
    elif field == "documentMessage":
        part = content.documentMessage
        kind, text = MessageKind.DOCUMENT, part.caption
        fields["media"] = media(part, caption=text, filename=part.fileName or part.title)
    elif field == "stickerMessage":
        kind = MessageKind.STICKER
        fields["media"] = media(content.stickerMessage)
    elif field == "locationMessage":
        part = content.locationMessage
        kind = MessageKind.LOCATION
        fields["location"] = Location(
            latitude=part.degreesLatitude,
            longitude=part.degreesLongitude,
            name=part.name,
            address=part.address,
        )
    elif field == "liveLocationMessage":
        part = content.liveLocationMessage
        kind, text = MessageKind.LOCATION, part.caption
        fields["location"] = Location(
            latitude=part.degreesLatitude, longitude=part.degreesLongitude
        )
    elif field == "contactMessage":
        kind = MessageKind.CONTACT
        part = content.contactMessage
        fields["contact"] = ContactCard(display_name=part.displayName, vcard=part.vcard)
    elif field == "contactsArrayMessage":
        kind = MessageKind.CONTACT
        part = content.contactsArrayMessage
        first = part.contacts[0] if part.contacts else ContactMessage()
        fields["contact"] = ContactCard(
            display_name=first.displayName or part.displayName, vcard=first.vcard
        )
    elif field == "extendedTextMessage":
        kind, text = MessageKind.TEXT, content.extendedTextMessage.text
    elif field == "conversation":
        kind, text = MessageKind.TEXT, content.conversation

    return InboundMessage(
        provider_message_id=info.ID,
        chat=chat,
        sender=sender,
        timestamp=_from_milliseconds(info.Timestamp),
        kind=kind,
        push_name=info.Pushname,
        text=text,
        reply_to_id=_reply_to(content, field),
        is_group=is_group,
        **fields,
    )


_RECEIPT_KINDS = {
    ReceiptEv.DELIVERED: ReceiptKind.DELIVERED,
    ReceiptEv.READ: ReceiptKind.READ,
    ReceiptEv.PLAYED: ReceiptKind.PLAYED,
}


def receipt_from_event(ev: ReceiptEv) -> Receipt | None:
    """A Receipt for delivered/read/played receipts of others; None for the rest (our own
    devices' read-self, retries, server errors...). Receipt timestamps are in seconds."""
    kind = _RECEIPT_KINDS.get(ev.Type)
    if kind is None or not ev.MessageIDs:
        return None
    chat, _sender, _is_group = _parties(ev.MessageSource)
    return Receipt(
        provider_message_ids=tuple(ev.MessageIDs),
        chat=chat,
        kind=kind,
        timestamp=_from_seconds(ev.Timestamp),
    )


def presence_from_chat_presence(ev: ChatPresenceEv) -> Presence:
    chat, sender, _is_group = _parties(ev.MessageSource)
    if ev.State == ChatPresenceEv.COMPOSING:
        state = (
            PresenceState.RECORDING if ev.Media == ChatPresenceEv.AUDIO else PresenceState.TYPING
        )
    else:
        state = PresenceState.PAUSED
    return Presence(chat=chat, sender=sender, state=state, timestamp=datetime.now(UTC))


def presence_from_presence(ev: PresenceEv) -> Presence:
    who = _phone(ev.From) or _plain(ev.From)
    state = PresenceState.OFFLINE if ev.Unavailable else PresenceState.ONLINE
    when = _from_seconds(ev.LastSeen) if ev.Unavailable and ev.LastSeen > 0 else None
    return Presence(chat=who, sender=who, state=state, timestamp=when or datetime.now(UTC))


# --- helpers for proxies and error texts ------------------------------------------------


def proxy_redacted(url: str) -> str:
    """The proxy URL without its password, for logs and messages."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.username or ''}:***@{host}{port}"


def _scrub(text: str, proxy_url: str) -> str:
    """`text` without the proxy's password (should an error message ever quote it)."""
    if proxy_url:
        password = urlsplit(proxy_url).password
        text = text.replace(proxy_url, proxy_redacted(proxy_url))
        if password:
            text = text.replace(password, "***")
    return text


class _ProxyError(ProviderError):
    pass


def _proxy_settings(url: str) -> ProxySettings | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("socks5", "socks5h", "http", "https") or not parts.hostname:
        raise _ProxyError(
            f"The proxy {proxy_redacted(url)!r} is not a socks5://user:password@host:port URL."
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise _ProxyError(f"The proxy {proxy_redacted(url)!r} has a bad port.") from error
    return ProxySettings(proxy_address=url)


def _cut(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"


def _send_error(error: Exception, what: str) -> ProviderError:
    """RetryLater / RateLimited / NeverRetry for a neonize error while doing `what`."""
    text = str(error)
    low = text.lower()
    if "rate-overlimit" in low or " 429" in low or "rate limit" in low:
        return RateLimited(
            f"WhatsApp rate-limited {what}: {_cut(text)}", retry_after=RATE_LIMIT_RETRY_SECONDS
        )
    if any(
        marker in low
        for marker in (
            "doesn't contain a device jid",  # whatsmeow's ErrNotLoggedIn
            "not logged in",
            "logged out",
            "unknown server",
            "recipient must be a user jid",
            "broadcast list",
            "invalid jid",
            "not-authorized",
            "item-not-found",
            "not-acceptable",
        )
    ):
        return NeverRetry(f"WhatsApp refused {what}: {_cut(text)}")
    return RetryLater(f"WhatsApp did not take {what}: {_cut(text)}")


# --- the connection ----------------------------------------------------------------------


def _quotable(message: Message) -> bytes:
    """The message as a reply quotes it: its content only, without its own quote or
    thumbnail; b"" when still too large to keep."""
    source = _unwrap(message)
    field = _content_field(source)
    if not field:
        return b""
    content = Message()
    if field == "conversation":
        content.conversation = source.conversation
    else:
        part = getattr(content, field)
        part.CopyFrom(getattr(source, field))
        for name in ("contextInfo", "JPEGThumbnail"):
            if name in part.DESCRIPTOR.fields_by_name:
                part.ClearField(name)
    data = content.SerializeToString()
    return data if len(data) <= REMEMBERED_MESSAGE_MAX_BYTES else b""


@dataclass
class _Remembered:
    """A recent message of the chat, to quote it or react to it."""

    author: str  # JID text of who wrote it ("" when it was us)
    from_me: bool
    content: bytes  # the serialised Message, "" when too large


class _Attempt:
    """One connect() of a NeonizeConnection: its NewClient, thread and handlers.

    Its handlers are bound methods, which neonize holds weakly: the connection and
    _LIVE_ATTEMPTS hold the attempt itself strongly."""

    def __init__(self, connection: NeonizeConnection, generation: int):
        self.connection = connection
        self.generation = generation
        # The device store's connections of this attempt's Go call go by this name.
        self.application_name = store_application_name()
        self.client = NewClient(
            connection.store,
            uuid=connection.config.public_id,
            props=DeviceProps(os=DEVICE_OS_NAME, platformType=DeviceProps.CHROME),
        )
        # The finalizer would Stop() the Go client of this uuid -- by then perhaps the
        # next attempt's -- from the garbage collector's thread, outside the lock.
        self.client._stop_finalizer.detach()
        self.thread: threading.Thread | None = None
        self.gate: _StartGate | None = None
        self.started = False  # the Go call was made
        self.stopped = False  # Stop() was called for it
        self.closing = False  # ended on purpose: its end is no disconnect to report
        self.reported: DisconnectKind | None = None
        self.pairing = False  # a new device: QR codes / pairing code
        self.qr_count = 0
        self._register()

    def _register(self) -> None:
        client = self.client
        client.qr(self.on_qr)
        # neonize only print()s the end of the QR phase: take its login-status callback.
        client._NewClient__onLoginStatus = self.on_login_status
        for event_class, handler in (
            (PairStatusEv, self.on_pair_status),
            (ConnectedEv, self.on_connected),
            (LoggedOutEv, self.on_logged_out),
            (TemporaryBanEv, self.on_temporary_ban),
            (StreamReplacedEv, self.on_stream_replaced),
            (DisconnectedEv, self.on_disconnected),
            (KeepAliveTimeoutEv, self.on_keep_alive_timeout),
            (ConnectFailureEv, self.on_connect_failure),
            (ClientOutdatedEv, self.on_client_outdated),
            (MessageEv, self.on_message),
            (ReceiptEv, self.on_receipt),
            (ChatPresenceEv, self.on_chat_presence),
            (PresenceEv, self.on_presence),
        ):
            client.event(event_class)(handler)

    def open_gate(self) -> None:
        if self.gate is not None:
            self.gate.open()

    def stop_locked(self) -> None:
        """Stop the Go client (caller holds _NEONIZE_LOCK)."""
        if self.started and not self.stopped:
            self.stopped = True
            try:
                self.client.stop()
            except Exception:
                logger.exception("neonize: stopping session %s failed", self.connection.label)

    # --- handlers: each logs its own exceptions, which neonize would swallow -----------

    def _guard(self, name: str, function: Callable[[], None]) -> None:
        try:
            function()
        except Exception:
            logger.exception(
                "neonize: handling %s of session %s failed", name, self.connection.label
            )

    def on_qr(self, _client, payload: bytes) -> None:
        self._guard("a QR code", lambda: self.connection._on_qr(self, payload))

    def on_login_status(self, _uuid, status_address) -> None:
        def handle() -> None:
            status = ctypes.string_at(status_address).decode(errors="replace")
            self.connection._on_login_status(self, status)

        self._guard("the login status", handle)

    def on_pair_status(self, _client, ev) -> None:
        self._guard("PairStatusEv", lambda: self.connection._on_pair_status(self, ev))

    def on_connected(self, _client, ev) -> None:
        self._guard("ConnectedEv", lambda: self.connection._on_connected(self, ev))

    def on_logged_out(self, _client, ev) -> None:
        self._guard("LoggedOutEv", lambda: self.connection._on_end(self, LoggedOutEv, ev))

    def on_temporary_ban(self, _client, ev) -> None:
        self._guard("TemporaryBanEv", lambda: self.connection._on_end(self, TemporaryBanEv, ev))

    def on_stream_replaced(self, _client, ev) -> None:
        self._guard("StreamReplacedEv", lambda: self.connection._on_end(self, StreamReplacedEv, ev))

    def on_disconnected(self, _client, ev) -> None:
        self._guard("DisconnectedEv", lambda: self.connection._on_end(self, DisconnectedEv, ev))

    def on_keep_alive_timeout(self, _client, ev) -> None:
        self._guard(
            "KeepAliveTimeoutEv", lambda: self.connection._on_end(self, KeepAliveTimeoutEv, ev)
        )

    def on_connect_failure(self, _client, ev) -> None:
        self._guard("ConnectFailureEv", lambda: self.connection._on_end(self, ConnectFailureEv, ev))

    def on_client_outdated(self, _client, ev) -> None:
        self._guard("ClientOutdatedEv", lambda: self.connection._on_end(self, ClientOutdatedEv, ev))

    def on_message(self, _client, ev) -> None:
        self._guard("MessageEv", lambda: self.connection._on_message(self, ev))

    def on_receipt(self, _client, ev) -> None:
        self._guard("ReceiptEv", lambda: self.connection._on_receipt(ev))

    def on_chat_presence(self, _client, ev) -> None:
        self._guard(
            "ChatPresenceEv",
            lambda: self.connection.events.presence(presence_from_chat_presence(ev)),
        )

    def on_presence(self, _client, ev) -> None:
        self._guard(
            "PresenceEv", lambda: self.connection.events.presence(presence_from_presence(ev))
        )


def _disconnect_reason(event_class: type, ev) -> tuple[Any, str, datetime | None]:
    """(table key, reason, banned_until) for an event that ends the connection."""
    if event_class is LoggedOutEv:
        code = CONNECT_FAILURE_CODES.get(ev.Reason, 401)
        when = "while connecting" if ev.OnConnect else "while connected"
        return LoggedOutEv, f"Logged out by WhatsApp ({code}, {when}): link the number again.", None
    if event_class is TemporaryBanEv:
        seconds = max(0, int(ev.Expire))
        banned_until = datetime.now(UTC) + timedelta(seconds=seconds)
        code = TemporaryBanEv.TempBanReason.Name(ev.Code) if ev.HasField("Code") else "UNKNOWN"
        reason = (
            f"Temporarily banned by WhatsApp (code {code}) until {banned_until:%Y-%m-%d %H:%M} UTC."
        )
        return TemporaryBanEv, reason, banned_until
    if event_class is StreamReplacedEv:
        return StreamReplacedEv, "The session was opened elsewhere (stream replaced).", None
    if event_class is DisconnectedEv:
        return DisconnectedEv, "Disconnected from WhatsApp.", None
    if event_class is KeepAliveTimeoutEv:
        return (
            KeepAliveTimeoutEv,
            f"WhatsApp stopped answering keep-alives ({ev.ErrorCount} missed).",
            None,
        )
    if event_class is ClientOutdatedEv:
        return ClientOutdatedEv, "WhatsApp says this client version is outdated.", None
    if event_class is ConnectFailureEv:
        code = CONNECT_FAILURE_CODES.get(ev.Reason, 400)
        message = f": {ev.Message}" if ev.Message else ""
        return (
            (ConnectFailureEv, ev.Reason),
            f"WhatsApp refused the connection ({code}{message}).",
            None,
        )
    raise ValueError(f"{event_class.__name__} does not end a connection")


class NeonizeConnection(LiveConnection):
    """One WhatsApp number linked by QR code (or pairing code), held by a session runner."""

    capabilities = Capabilities(
        typing=True, read_receipts=True, reactions=True, media_upload=True, live_connection=True
    )

    def __init__(
        self,
        config: SessionConfig,
        events: ConnectionEvents,
        *,
        store: str | None = None,
        default_proxy: str | None = None,
    ):
        super().__init__(config, events)
        self.store = store or neonize_store_url()
        self._default_proxy = default_proxy
        self.label = f"{config.session_id} ({config.public_id})"
        self._state = threading.RLock()
        self._generation = 0
        self._attempt: _Attempt | None = None
        self._device_jid = config.device_jid
        self._connected = False
        self._websocket_up = False
        self._me = ""  # our own JID text, once connected
        self._remembered: OrderedDict[str, _Remembered] = OrderedDict()

    # --- state -----------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def device_jid(self) -> str:
        return self._device_jid

    @property
    def proxy_url(self) -> str:
        if self.config.proxy_url:
            return self.config.proxy_url
        if self._default_proxy is not None:
            return self._default_proxy
        return getattr(settings, "NEONIZE_DEFAULT_PROXY", "")

    def _current(self, attempt: _Attempt) -> bool:
        return attempt is self._attempt and not attempt.closing

    # --- lifecycle -------------------------------------------------------------------

    def connect(self) -> None:
        """Start connecting on a thread of its own and return at once. May be called
        again after a disconnect or a failure: the previous client is stopped first."""
        attempt, previous = self._new_attempt()
        thread = threading.Thread(
            target=self._run,
            args=(attempt, previous),
            name=f"neonize-{self.config.public_id}",
            daemon=True,
        )
        attempt.thread = thread
        with _LIVE_ATTEMPTS_GUARD:
            _LIVE_ATTEMPTS.add(attempt)
        thread.start()

    def _new_attempt(self) -> tuple[_Attempt, _Attempt | None]:
        """A new client with its handlers registered (not started yet); the previous
        attempt, whose end is no longer news."""
        with self._state:
            self._generation += 1
            previous = self._attempt
            attempt = _Attempt(self, self._generation)
            self._attempt = attempt
            self._connected = False
            self._websocket_up = False
            if previous is not None:
                previous.closing = True
        return attempt, previous

    def _run(self, attempt: _Attempt, previous: _Attempt | None) -> None:
        outcome: tuple[DisconnectKind, str] | None = None  # how the attempt failed
        proxy_url = self.proxy_url
        try:
            attempt.gate = _StartGate()  # one session starts at a time
            if previous is not None and previous.started:
                previous.stop_locked()  # an unstarted one sees `closing` and gives up
                if (
                    previous.thread is not None
                    and previous.thread is not threading.current_thread()
                ):
                    previous.thread.join(STOP_WAIT_SECONDS)
                    if previous.thread.is_alive():
                        logger.warning(
                            "neonize: an earlier connection of session %s is stuck in the Go "
                            "library (it cannot be stopped); recycle this process soon",
                            self.label,
                        )
            if attempt.closing:
                return
            proxy = _proxy_settings(proxy_url)
            _prepare_device_store_locked(self.store)
            self._choose_device_locked(attempt)
            # NewClient.name is the store neonize opens at connect: this call's own URL.
            attempt.client.name = store_url_for_call(self.store, attempt.application_name)
            if proxy_url:
                logger.info(
                    "neonize: session %s connects through %s", self.label, proxy_redacted(proxy_url)
                )
            attempt.started = True
            attempt.gate.arm(START_GATE_SECONDS)
            attempt.client.connect(proxy)  # blocks for the life of the session
        except NeonizeError as error:  # "failed to dial whatsapp web websocket: ..."
            reason = f"Could not connect to WhatsApp: {error}"
            outcome = (DISCONNECT_TABLE[NeonizeError], reason)
        except DeviceStoreError as error:
            outcome = (DisconnectKind.TRANSIENT, str(error))
        except _ProxyError as error:
            outcome = (DisconnectKind.FATAL, str(error))
        except Exception as error:
            logger.exception("neonize: session %s crashed while connecting", self.label)
            outcome = (DisconnectKind.TRANSIENT, f"Connecting failed: {error.__class__.__name__}")
        else:
            if not attempt.closing:  # the Go call returned without being asked to
                outcome = (DISCONNECT_TABLE[DisconnectedEv], "The WhatsApp connection ended.")
        finally:
            attempt.open_gate()
            with _LIVE_ATTEMPTS_GUARD:
                _LIVE_ATTEMPTS.discard(attempt)
        if outcome is not None:
            kind, reason = outcome
            self._report(attempt, kind, _scrub(reason, proxy_url), stop=False)
        if attempt.started:  # the Go call has returned: its store pool is never used again
            release_store_connections(self.store, attempt.application_name)

    def _choose_device_locked(self, attempt: _Attempt) -> None:
        """Resume the stored device by its JID if the store holds it, else pair anew."""
        client = attempt.client
        jid = self._device_jid
        if jid:
            if device_in_store(self.store, jid):
                client.jid = jid_from_string(jid)  # the uuid stays the session's public id
                client.new_device = False
                attempt.pairing = False
                return
            logger.warning(
                "neonize: session %s: device %s is not in the device store (logged out?); "
                "pairing a new device",
                self.label,
                jid,
            )
            with self._state:
                self._device_jid = ""
        client.jid = None
        client.new_device = True
        attempt.pairing = True

    def disconnect(self) -> None:
        """Close gracefully and keep the linked device for the next connect()."""
        with self._state:
            attempt = self._attempt
            if attempt is None:
                return
            attempt.closing = True
            self._connected = False
            self._websocket_up = False
        with _NEONIZE_LOCK:
            attempt.stop_locked()
        thread = attempt.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_WAIT_SECONDS)
            if thread.is_alive():
                logger.warning(
                    "neonize: session %s did not stop within %.0f s (stuck in the Go library)",
                    self.label,
                    STOP_WAIT_SECONDS,
                )

    def logout(self) -> None:
        """Unlink the device (WhatsApp forgets it; whatsmeow deletes it from the store),
        then disconnect. The next connect() pairs a new device."""
        client = self._live_client()
        try:
            _neonize_call(client.logout)
        except NeonizeError as error:
            raise _send_error(error, "the logout") from error
        with self._state:
            self._device_jid = ""
        self.disconnect()

    def pair_phone(self, phone_number: str) -> str:
        """A pairing code to type on the phone (Linked devices > Link with phone number)."""
        try:
            number = digits(to_e164(phone_number))
        except ValidationError as error:
            raise NeverRetry(f"{phone_number!r} is not a phone number.") from error
        with self._state:
            attempt = self._attempt
            if self._connected:
                raise NeverRetry("This session is already linked to a phone.")
            waiting = (
                attempt is not None
                and not attempt.closing
                and attempt.pairing
                and self._websocket_up  # after the first QR code (NEONIZE.md, hazard 10)
            )
        if not waiting:
            raise RetryLater("The session is not waiting for a pairing yet; try again shortly.")
        try:
            return _neonize_call(
                lambda: attempt.client.PairPhone(number, True, client_name=ClientName.LINUX)
            )
        except NeonizeError as error:
            raise _send_error(error, "the pairing request") from error

    # --- handlers' work ----------------------------------------------------------------

    def _report(
        self,
        attempt: _Attempt,
        kind: DisconnectKind,
        reason: str,
        banned_until: datetime | None = None,
        *,
        stop: bool = True,
    ) -> None:
        """Tell the runner once per attempt (a later, graver kind still goes through),
        then stop the Go client so that only the runner decides about reconnecting."""
        with self._state:
            if not self._current(attempt):
                return
            if attempt.reported is not None and (
                kind == DisconnectKind.TRANSIENT or kind == attempt.reported
            ):
                return
            attempt.reported = kind
            self._connected = False
            self._websocket_up = False
            if kind == DisconnectKind.LOGGED_OUT:
                self._device_jid = ""  # whatsmeow deleted it from the store
        logger.info("neonize: session %s disconnected (%s): %s", self.label, kind, reason)
        self.events.disconnected(kind=kind, reason=_cut(reason), banned_until=banned_until)
        if stop and attempt.started:
            threading.Thread(
                target=self._stop_after_disconnect,
                args=(attempt,),
                name=f"neonize-stop-{self.config.public_id}",
                daemon=True,
            ).start()

    def _stop_after_disconnect(self, attempt: _Attempt) -> None:
        with _NEONIZE_LOCK:
            with self._state:
                current = attempt is self._attempt  # else the next attempt stops it
            if current:
                attempt.stop_locked()

    def _on_qr(self, attempt: _Attempt, payload: bytes) -> None:
        attempt.open_gate()
        with self._state:
            if not self._current(attempt):
                return
            attempt.qr_count += 1
            self._websocket_up = True
            first = attempt.qr_count == 1
        lifetime = FIRST_QR_SECONDS if first else NEXT_QR_SECONDS
        code = payload.decode() if isinstance(payload, bytes) else str(payload)
        self.events.qr(code, datetime.now(UTC) + timedelta(seconds=lifetime))

    def _on_login_status(self, attempt: _Attempt, status: str) -> None:
        attempt.open_gate()
        logger.info("neonize: session %s: QR phase status %r", self.label, status)
        kind = DISCONNECT_TABLE.get((QR_LOGIN_STATUS, status))
        if kind is None:
            return  # "success" (PairStatusEv follows), "err-scanned-without-multidevice"...
        reasons = {
            "timeout": "The QR code was not scanned in time. Start the session again.",
            "err-client-outdated": "WhatsApp refused this client version while pairing.",
        }
        self._report(attempt, kind, reasons.get(status, f"Pairing failed ({status})."))

    def _on_pair_status(self, attempt: _Attempt, ev) -> None:
        attempt.open_gate()
        if ev.Status != PairStatusEv.SUCCESS:
            logger.warning("neonize: session %s: pairing failed: %s", self.label, ev.Error)
            return
        device_jid = Jid2String(ev.ID)
        with self._state:
            if attempt is not self._attempt:
                return
            self._device_jid = device_jid
            attempt.pairing = False
        self.events.paired(phone_number=_phone(ev.ID) or f"+{ev.ID.User}", device_jid=device_jid)

    def _on_connected(self, attempt: _Attempt, _ev) -> None:
        attempt.open_gate()
        me = attempt.client.me  # neonize sets it from the Device event sent just before
        with self._state:
            if not self._current(attempt):
                return
            if me is not None and me.JID.User:
                self._device_jid = Jid2String(me.JID)
            self._connected = True
            self._websocket_up = True
            attempt.reported = None
            device_jid = self._device_jid
        own = jid_from_string(device_jid) if device_jid else None
        self._me = _plain(own) if own is not None else ""
        self.events.connected(phone_number=_phone(own) if own is not None else "")

    def _on_end(self, attempt: _Attempt, event_class: type, ev) -> None:
        attempt.open_gate()
        key, reason, banned_until = _disconnect_reason(event_class, ev)
        kind = DISCONNECT_TABLE.get(key, DisconnectKind.TRANSIENT)
        self._report(attempt, kind, reason, banned_until)

    def _on_message(self, attempt: _Attempt, ev: MessageEv) -> None:
        source = ev.Info.MessageSource
        if source.IsFromMe or source.Chat.Server in ("broadcast", "newsletter"):
            return  # our own messages (sent from the phone), statuses, channels
        if is_protocol_message(ev):
            return
        message = inbound_from_message_event(ev, download=self._download)
        self._remember(message.provider_message_id, _plain(source.Sender), False, ev.Message)
        self.events.message(message)

    def _on_receipt(self, ev: ReceiptEv) -> None:
        receipt = receipt_from_event(ev)
        if receipt is not None:
            self.events.receipt(receipt)

    # --- recent messages: to quote and react to them ---------------------------------

    def _remember(self, message_id: str, author: str, from_me: bool, message: Message) -> None:
        data = _quotable(message)
        with self._state:
            self._remembered[message_id] = _Remembered(author=author, from_me=from_me, content=data)
            self._remembered.move_to_end(message_id)
            while len(self._remembered) > REMEMBERED_MESSAGES:
                self._remembered.popitem(last=False)

    def _recall(self, message_id: str) -> _Remembered | None:
        with self._state:
            return self._remembered.get(message_id)

    # --- outbound --------------------------------------------------------------------

    def _live_client(self) -> NewClient:
        with self._state:
            attempt = self._attempt
            if attempt is None or attempt.closing or not self._connected:
                raise RetryLater("The WhatsApp session is not connected.")
            return attempt.client

    def _download(self, message: Message) -> bytes:
        client = self._live_client()
        try:
            return _neonize_call(lambda: client.download_any(message))
        except NeonizeError as error:
            low = str(error).lower()
            if any(code in low for code in ("404", "410", "expired", "no media")):
                raise NeverRetry(f"The media is no longer on WhatsApp: {_cut(error)}") from error
            raise RetryLater(f"Downloading the media failed: {_cut(error)}") from error

    @staticmethod
    def _recipient(to: str) -> JID:
        if "@" in (to or ""):
            try:
                jid = jid_from_string(to)
            except ValueError as error:
                raise NeverRetry(str(error)) from error
            if jid.Server not in (USER_SERVER, GROUP_SERVER, LID_SERVER):
                raise NeverRetry(f"{to!r} is not a WhatsApp chat.")
            return JIDToNonAD(jid)
        try:
            return _user_jid(digits(to_e164(to)))
        except ValidationError as error:
            raise NeverRetry(f"{to!r} is not a phone number.") from error

    def _media_bytes(self, message: OutboundMessage) -> bytes:
        if message.media_bytes:
            return message.media_bytes
        if message.media_url:
            return fetch_media(message.media_url)
        raise NeverRetry(f"A {message.kind} message needs media_bytes or a media_url.")

    def _build(self, client: NewClient, message: OutboundMessage, to: JID, media: bytes) -> Message:
        """The protobuf Message to send; media is uploaded here (caller holds the lock)."""
        kind = message.kind
        caption = message.text or None
        if kind == MessageKind.TEXT:
            if not message.text:
                raise NeverRetry("A text message needs text.")
            return Message(conversation=message.text)
        if kind == MessageKind.LOCATION:
            if message.location is None:
                raise NeverRetry("A location message needs a location.")
            place = message.location
            return Message(
                locationMessage=LocationMessage(
                    degreesLatitude=place.latitude,
                    degreesLongitude=place.longitude,
                    name=place.name or None,
                    address=place.address or None,
                )
            )
        if kind == MessageKind.CONTACT:
            if message.contact is None:
                raise NeverRetry("A contact message needs a contact.")
            card = message.contact
            vcard = card.vcard or f"BEGIN:VCARD\nVERSION:3.0\nFN:{card.display_name}\nEND:VCARD"
            return Message(
                contactMessage=ContactMessage(displayName=card.display_name, vcard=vcard)
            )
        if kind == MessageKind.REACTION:
            if message.reaction is None or not message.reaction.target_id:
                raise NeverRetry("A reaction needs the id of the message it reacts to.")
            return Message(reactionMessage=self._reaction(message.reaction, to))
        if kind == MessageKind.IMAGE:
            return client.build_image_message(media, caption=caption)
        if kind == MessageKind.VIDEO:
            return client.build_video_message(media, caption=caption)
        if kind in (MessageKind.AUDIO, MessageKind.VOICE):
            return client.build_audio_message(media, ptt=kind == MessageKind.VOICE)
        if kind == MessageKind.DOCUMENT:
            return client.build_document_message(
                media,
                caption=caption,
                filename=message.filename or "document",
                mimetype=message.mime_type or None,
            )
        if kind == MessageKind.STICKER:
            return client.build_sticker_message(media)
        raise NeverRetry(f"neonize sessions cannot send {kind} messages.")

    def _reaction(self, reaction: Reaction, to: JID) -> ReactionMessage:
        remembered = self._recall(reaction.target_id)
        from_me = remembered.from_me if remembered else False
        key = MessageKey(remoteJID=Jid2String(to), fromMe=from_me, ID=reaction.target_id)
        if to.Server == GROUP_SERVER and remembered and remembered.author and not from_me:
            key.participant = remembered.author
        return ReactionMessage(
            key=key, text=reaction.emoji, senderTimestampMS=int(time.time() * 1000)
        )

    def _quote(self, built: Message, reply_to_id: str, to: JID) -> None:
        """Make `built` a reply to `reply_to_id`: ContextInfo with stanzaID, participant
        (the quoted message's author) and, when remembered, the quoted message itself."""
        if built.HasField("conversation"):
            text = built.conversation
            built.ClearField("conversation")
            built.extendedTextMessage.text = text
        field = _content_field(built)
        if not field or field == "reactionMessage":
            return
        part = getattr(built, field)
        if "contextInfo" not in part.DESCRIPTOR.fields_by_name:
            return
        context = part.contextInfo
        context.stanzaID = reply_to_id
        remembered = self._recall(reply_to_id)
        if remembered is not None:
            author = self._me if remembered.from_me else remembered.author
            if author:
                context.participant = author
            if remembered.content:
                quoted = Message.FromString(remembered.content)
                context.quotedMessage.CopyFrom(quoted)
        elif to.Server != GROUP_SERVER:
            context.participant = Jid2String(to)  # in a direct chat, most likely theirs

    def send(self, message: OutboundMessage) -> SendResult:
        to = self._recipient(message.to)
        if message.kind in (
            MessageKind.IMAGE,
            MessageKind.VIDEO,
            MessageKind.AUDIO,
            MessageKind.VOICE,
            MessageKind.DOCUMENT,
            MessageKind.STICKER,
        ):
            media = self._media_bytes(message)  # fetched before taking the lock
        else:
            media = b""
        client = self._live_client()

        def send_locked() -> Any:
            try:
                built = self._build(client, message, to, media)
            except (ProviderError, NeonizeError):
                raise
            except Exception as error:  # Pillow, ffmpeg, libmagic on bad media
                logger.warning("neonize: preparing a %s failed", message.kind, exc_info=True)
                raise NeverRetry(
                    f"The {message.kind} could not be prepared: {error.__class__.__name__}"
                ) from error
            if message.reply_to_id and message.kind != MessageKind.REACTION:
                self._quote(built, message.reply_to_id, to)
            return built, client.send_message(to, built)

        try:
            built, response = _neonize_call(send_locked)
        except ProviderError:
            raise
        except NeonizeError as error:
            raise _send_error(error, "the message") from error
        self._remember(response.ID, "", True, built)
        return SendResult(provider_message_id=response.ID)

    def mark_read(self, *, chat: str, sender: str, message_ids: list[str]) -> None:
        if not message_ids:
            return
        client = self._live_client()
        chat_jid = self._recipient(chat)
        sender_jid = self._recipient(sender) if sender else chat_jid
        try:
            _neonize_call(
                lambda: client.mark_read(
                    *message_ids, chat=chat_jid, sender=sender_jid, receipt=ReceiptType.READ
                )
            )
        except NeonizeError as error:
            raise _send_error(error, "the read receipt") from error

    def set_typing(self, *, chat: str, typing: bool) -> None:
        client = self._live_client()
        chat_jid = self._recipient(chat)
        state = (
            ChatPresence.CHAT_PRESENCE_COMPOSING if typing else ChatPresence.CHAT_PRESENCE_PAUSED
        )
        try:
            _neonize_call(
                lambda: client.send_chat_presence(
                    chat_jid, state, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
                )
            )
        except NeonizeError as error:
            raise _send_error(error, "the typing indicator") from error


def fetch_media(url: str) -> bytes:
    """The bytes behind a media_url: http(s) only, at most MAX_MEDIA_BYTES."""
    import httpx

    if urlsplit(url).scheme not in ("http", "https"):
        raise NeverRetry("A media_url must be an http:// or https:// URL.")
    try:
        with httpx.stream(
            "GET", url, timeout=MEDIA_FETCH_TIMEOUT_SECONDS, follow_redirects=True
        ) as response:
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryLater(f"Fetching the media answered {response.status_code}.")
            if response.status_code >= 400:
                raise NeverRetry(f"Fetching the media answered {response.status_code}.")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_MEDIA_BYTES:
                    raise NeverRetry(f"The media is larger than {MAX_MEDIA_BYTES} bytes.")
                chunks.append(chunk)
    except httpx.HTTPError as error:
        raise RetryLater(f"Fetching the media failed: {error.__class__.__name__}") from error
    return b"".join(chunks)
