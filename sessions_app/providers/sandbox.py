"""The sandbox: a simulated WhatsApp for demos, `make run` and end-to-end tests.

It goes through the real lifecycle and pipeline. A sandbox session shows a real QR code
(of a `sandbox://` link); the dashboard's phone simulator or the API "scans" it, and the
session connects with the scanner's number. Simulated phones write to the business by
adding SandboxMessage rows (the sandbox's network); the connection, held by a runner like
a neonize one, receives them. What the business sends becomes rows too, and the phone
answers with delivered and read receipts after a short delay.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from sessions_app.models import SandboxMessage
from sessions_app.phone_numbers import digits, to_e164
from sessions_app.providers.base import (
    Capabilities,
    ContactCard,
    DisconnectKind,
    InboundMessage,
    LiveConnection,
    Location,
    MessageKind,
    NeverRetry,
    OutboundMessage,
    Reaction,
    Receipt,
    ReceiptKind,
    RetryLater,
    SendResult,
)

FIRST_QR_SECONDS = 60  # like WhatsApp: the first code lives about a minute,
NEXT_QR_SECONDS = 20  # later ones about 20 seconds,
QR_CODES = 6  # and after a few codes nobody is scanning: give up.
DELIVERED_AFTER = timedelta(seconds=0.5)
READ_AFTER = timedelta(seconds=1.5)
JID_SERVER = "sandbox"


def sandbox_message_id(idempotency_key: str) -> str:
    """The same key always gives the same id: a resend is recognised as the same message."""
    if not idempotency_key:
        return "SBX" + uuid.uuid4().hex[:20].upper()
    return "SBX" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20].upper()


def qr_link(public_id: str, code: str) -> str:
    return f"sandbox://link?session={public_id}&code={code}"


def phone_from_jid(jid: str) -> str:
    return to_e164(jid.split("@", 1)[0].split(":", 1)[0])


class SandboxConnection(LiveConnection):
    capabilities = Capabilities(
        typing=True, read_receipts=True, reactions=True, media_upload=True, live_connection=True
    )

    def __init__(self, config, events):
        super().__init__(config, events)
        self._lock = threading.Lock()
        self.connected_phone = ""
        self.qr_code = ""
        self.qr_expires_at: datetime | None = None
        self.qr_count = 0
        self.typing: dict[str, bool] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def connect(self) -> None:
        if self.config.device_jid:  # a linked device: resume without a new QR
            self._connected(phone_from_jid(self.config.device_jid))
            return
        with self._lock:
            self.qr_count = 0
        self._next_qr()

    def _next_qr(self) -> None:
        with self._lock:
            if self.qr_count >= QR_CODES:
                self.qr_code, self.qr_expires_at = "", None
                expired = True
            else:
                lifetime = FIRST_QR_SECONDS if self.qr_count == 0 else NEXT_QR_SECONDS
                self.qr_count += 1
                self.qr_code = secrets.token_urlsafe(12)
                self.qr_expires_at = timezone.now() + timedelta(seconds=lifetime)
                expired = False
            code, expires_at = self.qr_code, self.qr_expires_at
        if expired:
            self.events.disconnected(
                kind=DisconnectKind.QR_EXPIRED,
                reason=f"The QR code was not scanned ({QR_CODES} codes shown). Start it again.",
            )
        else:
            self.events.qr(qr_link(self.config.public_id, code), expires_at)

    def _connected(self, phone: str) -> None:
        with self._lock:
            self.connected_phone = phone
            self.qr_code, self.qr_expires_at = "", None
        self.events.connected(phone_number=phone)

    def scan(self, *, code: str, phone_number: str) -> None:
        """The simulator scanned the QR as `phone_number`: link this device to it."""
        phone = to_e164(phone_number)
        with self._lock:
            valid = (
                self.qr_code
                and secrets.compare_digest(code, self.qr_code)
                and self.qr_expires_at is not None
                and timezone.now() < self.qr_expires_at
            )
        if not valid:
            raise NeverRetry("This QR code is not the current one or has expired.")
        self.events.paired(phone_number=phone, device_jid=f"{digits(phone)}@{JID_SERVER}")
        self._connected(phone)

    def disconnect(self) -> None:
        with self._lock:
            self.connected_phone = ""
            self.qr_code, self.qr_expires_at = "", None

    def logout(self) -> None:
        self.disconnect()

    @property
    def is_connected(self) -> bool:
        return bool(self.connected_phone)

    # --- polling: the runner calls this on its tick -------------------------------------

    def poll(self) -> None:
        """Refresh an expired QR, take in what phones wrote, send receipts that are due."""
        with self._lock:
            qr_due = self.qr_expires_at is not None and timezone.now() >= self.qr_expires_at
        if qr_due:
            self._next_qr()
        if self.is_connected:
            self._receive()
            self._receipts()

    def _receive(self) -> None:
        with transaction.atomic():
            rows = list(
                SandboxMessage.objects.select_for_update(skip_locked=True).filter(
                    session_id=self.config.session_id,
                    direction=SandboxMessage.Direction.TO_BUSINESS,
                    received_at=None,
                )[:100]
            )
            if not rows:
                return
            SandboxMessage.objects.filter(pk__in=[row.pk for row in rows]).update(
                received_at=timezone.now()
            )
        for row in rows:
            self.events.message(inbound_from_row(row))

    def _receipts(self) -> None:
        now = timezone.now()
        outgoing = SandboxMessage.objects.filter(
            session_id=self.config.session_id, direction=SandboxMessage.Direction.FROM_BUSINESS
        )
        for kind, field, after in (
            (ReceiptKind.DELIVERED, "delivered_at", DELIVERED_AFTER),
            (ReceiptKind.READ, "read_at", READ_AFTER),
        ):
            due = outgoing.filter(**{field: None, "created_at__lte": now - after})
            if kind == ReceiptKind.READ:
                due = due.exclude(delivered_at=None)
            rows = list(due.values_list("pk", "provider_message_id", "phone")[:200])
            if not rows:
                continue
            SandboxMessage.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(**{field: now})
            by_phone: dict[str, list[str]] = {}
            for _, message_id, phone in rows:
                by_phone.setdefault(phone, []).append(message_id)
            for phone, ids in by_phone.items():
                self.events.receipt(
                    Receipt(provider_message_ids=tuple(ids), chat=phone, kind=kind, timestamp=now)
                )

    # --- outbound -----------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        if not self.is_connected:
            raise RetryLater("The sandbox session is not connected.")
        try:
            phone = to_e164(message.to)
        except Exception as error:
            raise NeverRetry(f"{message.to!r} is not a phone number.") from error
        message_id = sandbox_message_id(message.idempotency_key)
        payload: dict = {}
        if message.kind in (
            MessageKind.IMAGE,
            MessageKind.VIDEO,
            MessageKind.AUDIO,
            MessageKind.VOICE,
            MessageKind.DOCUMENT,
            MessageKind.STICKER,
        ):
            payload = {
                "media_url": message.media_url,
                "mime_type": message.mime_type,
                "filename": message.filename,
                "size": len(message.media_bytes or b"") or None,
            }
        elif message.kind == MessageKind.LOCATION and message.location:
            payload = {
                "latitude": message.location.latitude,
                "longitude": message.location.longitude,
                "name": message.location.name,
            }
        elif message.kind == MessageKind.CONTACT and message.contact:
            payload = {"display_name": message.contact.display_name, "vcard": message.contact.vcard}
        elif message.kind == MessageKind.REACTION and message.reaction:
            payload = {"target_id": message.reaction.target_id, "emoji": message.reaction.emoji}
        SandboxMessage.objects.get_or_create(
            session_id=self.config.session_id,
            provider_message_id=message_id,
            defaults={
                "direction": SandboxMessage.Direction.FROM_BUSINESS,
                "phone": phone,
                "kind": str(message.kind),
                "text": message.text,
                "payload": payload,
                "reply_to_id": message.reply_to_id,
            },
        )
        return SendResult(provider_message_id=message_id)

    def mark_read(self, *, chat: str, sender: str, message_ids: list[str]) -> None:
        SandboxMessage.objects.filter(
            session_id=self.config.session_id, provider_message_id__in=message_ids
        ).update(read_at=timezone.now())

    def set_typing(self, *, chat: str, typing: bool) -> None:
        self.typing[chat] = typing


def inbound_from_row(row: SandboxMessage) -> InboundMessage:
    payload = row.payload or {}
    try:
        kind = MessageKind(row.kind)
    except ValueError:
        kind = MessageKind.UNSUPPORTED
    fields: dict = {}
    if kind == MessageKind.LOCATION:
        fields["location"] = Location(
            latitude=float(payload.get("latitude", 0)),
            longitude=float(payload.get("longitude", 0)),
            name=payload.get("name", ""),
        )
    elif kind == MessageKind.CONTACT:
        fields["contact"] = ContactCard(
            display_name=payload.get("display_name", ""), vcard=payload.get("vcard", "")
        )
    elif kind == MessageKind.REACTION:
        fields["reaction"] = Reaction(
            target_id=payload.get("target_id", ""), emoji=payload.get("emoji", "")
        )
    return InboundMessage(
        provider_message_id=row.provider_message_id,
        chat=row.phone,
        sender=row.phone,
        push_name=row.push_name,
        timestamp=row.created_at,
        kind=kind,
        text=row.text,
        reply_to_id=row.reply_to_id,
        **fields,
    )


def sandbox_phone_writes(
    *,
    session_id: int,
    phone_number: str,
    text: str = "",
    push_name: str = "",
    kind: str = MessageKind.TEXT,
    payload: dict | None = None,
    reply_to_id: str = "",
) -> SandboxMessage:
    """A simulated phone writes to a sandbox session (the simulator and the API use it)."""
    return SandboxMessage.objects.create(
        session_id=session_id,
        direction=SandboxMessage.Direction.TO_BUSINESS,
        phone=to_e164(phone_number),
        push_name=push_name,
        provider_message_id="SBXIN" + uuid.uuid4().hex[:18].upper(),
        kind=str(kind),
        text=text,
        payload=payload or {},
        reply_to_id=reply_to_id,
    )
