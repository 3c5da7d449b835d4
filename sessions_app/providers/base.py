"""The one provider interface the rest of the product uses, whatever the provider.

Inbound, every provider produces `InboundMessage`, `Receipt` and `Presence` values.
Outbound, every provider takes an `OutboundMessage` and returns a `SendResult`, or
raises one of three errors that tell the caller what to do next:

- `RetryLater`   -- transient (network, 5xx, not connected yet): retry with backoff;
- `RateLimited`  -- the provider pushed back: retry after `retry_after` seconds;
- `NeverRetry`   -- retrying cannot help (bad number, logged out, bad credentials).

Live providers (neonize, sandbox) also hold a connection inside a session runner and
report its life through a `ConnectionEvents` sink.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# --- errors ---------------------------------------------------------------------------


class ProviderError(Exception):
    """Base class. Messages must never contain credentials or tokens."""


class RetryLater(ProviderError):
    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(RetryLater):
    pass


class NeverRetry(ProviderError):
    pass


# --- inbound --------------------------------------------------------------------------


class MessageKind(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    VOICE = "voice"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "contact"
    REACTION = "reaction"
    UNSUPPORTED = "unsupported"


MEDIA_KINDS = frozenset(
    {MessageKind.IMAGE, MessageKind.VIDEO, MessageKind.AUDIO, MessageKind.VOICE,
     MessageKind.DOCUMENT, MessageKind.STICKER}
)  # fmt: skip


@dataclass(frozen=True)
class Media:
    mime_type: str = ""
    caption: str = ""
    filename: str = ""
    size: int | None = None
    url: str = ""  # where the provider serves it (Twilio), if anywhere
    # Fetches the bytes with the session's own credentials; None when not downloadable.
    download: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    name: str = ""
    address: str = ""


@dataclass(frozen=True)
class ContactCard:
    display_name: str
    vcard: str = ""


@dataclass(frozen=True)
class Reaction:
    target_id: str  # the provider message id reacted to
    emoji: str  # "" removes the reaction


@dataclass(frozen=True)
class InboundMessage:
    provider_message_id: str
    chat: str  # E.164 phone for a direct chat, the group id for a group
    sender: str  # E.164 phone of the person who wrote
    timestamp: datetime
    kind: MessageKind = MessageKind.TEXT
    push_name: str = ""
    text: str = ""
    media: Media | None = None
    location: Location | None = None
    contact: ContactCard | None = None
    reaction: Reaction | None = None
    reply_to_id: str = ""
    is_group: bool = False


class ReceiptKind(enum.StrEnum):
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"


@dataclass(frozen=True)
class Receipt:
    provider_message_ids: tuple[str, ...]
    chat: str
    kind: ReceiptKind
    timestamp: datetime


class PresenceState(enum.StrEnum):
    TYPING = "typing"
    RECORDING = "recording"
    PAUSED = "paused"
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Presence:
    chat: str
    sender: str
    state: PresenceState
    timestamp: datetime


# --- outbound -------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundMessage:
    """What to send. `to` is an E.164 number ("+972501234567") or a group id."""

    to: str
    kind: MessageKind = MessageKind.TEXT
    text: str = ""  # the text, or the caption of media
    media_url: str = ""
    media_bytes: bytes | None = field(default=None, repr=False)
    mime_type: str = ""
    filename: str = ""
    location: Location | None = None
    contact: ContactCard | None = None
    reaction: Reaction | None = None
    reply_to_id: str = ""  # quote this provider message id
    # Twilio content templates, for messages outside WhatsApp's 24-hour window.
    template_sid: str = ""
    template_variables: dict[str, str] = field(default_factory=dict)
    # The same key always yields the same message: a resend after a crash is not a
    # second message (see each provider for how it uses it).
    idempotency_key: str = ""


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str


@dataclass(frozen=True)
class Capabilities:
    buttons: bool = False
    lists: bool = False
    typing: bool = False
    read_receipts: bool = False
    reactions: bool = False
    templates: bool = False
    media_upload: bool = False  # media from bytes (else a public URL is needed)
    live_connection: bool = False  # held by a session runner (QR, reconnects)


class Provider(ABC):
    """What every provider can do for one session."""

    capabilities: Capabilities = Capabilities()

    @abstractmethod
    def send(self, message: OutboundMessage) -> SendResult: ...

    def mark_read(self, *, chat: str, sender: str, message_ids: list[str]) -> None:  # noqa: B027
        """Blue ticks for these messages; a no-op where the provider has none."""

    def set_typing(self, *, chat: str, typing: bool) -> None:  # noqa: B027
        """Show or hide "typing…"; a no-op where the provider has none."""


# --- live connections (neonize, sandbox) ----------------------------------------------


class DisconnectKind(enum.StrEnum):
    TRANSIENT = "transient"  # network blip, keep-alive timeout: reconnect with backoff
    LOGGED_OUT = "logged_out"  # unlinked from the phone: forget the device
    BANNED = "banned"  # temporary ban: nothing until it expires
    REPLACED = "replaced"  # opened elsewhere: stop, do not fight over it
    QR_EXPIRED = "qr_expired"  # nobody scanned: FAILED, restart from the dashboard
    FATAL = "fatal"  # anything else that needs a person


class ConnectionEvents(Protocol):
    """What a live connection reports. Implementations must return quickly: they are
    called on the connection's own thread."""

    def qr(self, payload: str, expires_at: datetime) -> None: ...

    def paired(self, *, phone_number: str, device_jid: str) -> None: ...

    def connected(self, *, phone_number: str) -> None: ...

    def disconnected(
        self, *, kind: DisconnectKind, reason: str, banned_until: datetime | None = None
    ) -> None: ...

    def message(self, message: InboundMessage) -> None: ...

    def receipt(self, receipt: Receipt) -> None: ...

    def presence(self, presence: Presence) -> None: ...


@dataclass(frozen=True)
class SessionConfig:
    """What a live connection needs to know about its session (a snapshot)."""

    session_id: int
    public_id: str
    schema_name: str
    device_jid: str = ""  # resume this device; empty: pair a new one
    proxy_url: str = field(default="", repr=False)


class LiveConnection(Provider):
    """A connection held open by a runner. connect() returns at once; what happens next
    arrives through the ConnectionEvents given to the constructor."""

    capabilities = Capabilities(live_connection=True)

    def __init__(self, config: SessionConfig, events: ConnectionEvents):
        self.config = config
        self.events = events

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def disconnect(self) -> None:
        """Close gracefully, keeping the linked device for the next connect()."""

    @abstractmethod
    def logout(self) -> None:
        """Unlink the device: the next connect() needs a new QR."""

    def pair_phone(self, phone_number: str) -> str:
        """Return a pairing code to type on the phone, instead of scanning the QR."""
        raise NeverRetry("This provider has no pairing by phone number.")
