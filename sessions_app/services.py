"""Writes to the session registry. Every status change goes through `session_status_set`,
which leaves a history row and tells the tenant's dashboards after commit."""

from __future__ import annotations

import logging
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard.realtime import tenant_event_publish
from sessions_app.alerts import ALERT_STATUSES, session_alert_after_commit
from sessions_app.models import (
    CustomerMode,
    DesiredState,
    HumanizationProfile,
    Provider,
    SessionCommand,
    SessionStatusChange,
    Status,
    WhatsAppSession,
)
from sessions_app.phone_numbers import to_e164
from sessions_app.qr import qr_svg

logger = logging.getLogger(__name__)

# States a runner does not (re)start by itself: a person must act first.
TERMINAL_STATUSES = (Status.LOGGED_OUT, Status.FAILED, Status.BANNED)


def _publish_after_commit(session: WhatsAppSession, event: dict) -> None:
    schema = session.tenant.schema_name
    event = {"session": str(session.public_id), "name": session.name, **event}

    def publish() -> None:
        try:
            tenant_event_publish(schema_name=schema, event=event)
        except Exception:  # the change is committed; a dashboard refresh will show it
            logger.warning("could not publish %s for session %s", event["type"], session.pk)
        # Sessions live in the public schema; their webhook endpoints in the tenant's.
        from django_tenants.utils import schema_context

        from messaging.webhooks import webhook_event_emit

        payload = {name: value for name, value in event.items() if name != "type"}
        try:
            with schema_context(schema):
                webhook_event_emit(event_type=event["type"], payload=payload)
        except Exception:  # the status is committed; only its webhooks are missing
            logger.exception(
                "could not queue %s webhooks for session %s", event["type"], session.pk
            )

    transaction.on_commit(publish)


def session_status_set(
    *, session_id: int, status: str, reason: str = "", **fields
) -> WhatsAppSession:
    """Set the status (and any other fields given) under a row lock.

    A real change leaves a SessionStatusChange row and publishes `session.status` to the
    tenant's group after commit; setting the same status again only updates the fields.
    """
    with transaction.atomic():
        session = (
            WhatsAppSession.objects.select_for_update(of=("self",))
            .select_related("tenant")
            .get(pk=session_id)
        )
        previous = session.status
        for name, value in fields.items():
            setattr(session, name, value)
        session.status = status
        changed = previous != status
        if changed:
            session.last_disconnect_reason = (
                reason[:300] if status != Status.CONNECTED else session.last_disconnect_reason
            )
            SessionStatusChange.objects.create(
                session=session, from_status=previous, to_status=status, reason=reason[:300]
            )
        update = {"status", "updated_at", "last_disconnect_reason", *fields}
        session.save(update_fields=sorted(update))
        if changed:
            logger.info("session %s: %s -> %s (%s)", session.pk, previous, status, reason)
            if status in ALERT_STATUSES:
                session_alert_after_commit(session_id=session.pk)
            _publish_after_commit(
                session,
                {
                    "type": "session.status",
                    "status": status,
                    "previous": previous,
                    "reason": reason,
                    "phone_number": session.phone_number,
                },
            )
    return session


def session_qr_set(*, session_id: int, payload: str, expires_at: datetime) -> WhatsAppSession:
    """A new QR code to scan: stored with its expiry and streamed to the dashboard."""
    session = session_status_set(
        session_id=session_id,
        status=Status.WAIT_QR,
        reason="Waiting for the QR code to be scanned",
        qr_payload=payload,
        qr_expires_at=expires_at,
    )
    with transaction.atomic():
        _publish_after_commit(
            session,
            {
                "type": "session.qr",
                "qr": payload,
                "svg": qr_svg(payload),
                "expires_at": expires_at.isoformat(),
            },
        )
    return session


def session_connected(
    *, session_id: int, phone_number: str, device_jid: str = ""
) -> WhatsAppSession:
    fields = {
        "phone_number": phone_number,
        "qr_payload": "",
        "qr_expires_at": None,
        "pairing_code": "",
        "reconnect_attempts": 0,
        "banned_until": None,
    }
    if device_jid:
        fields["device_jid"] = device_jid
    return session_status_set(
        session_id=session_id, status=Status.CONNECTED, reason="Connected", **fields
    )


# --- creating and configuring ---------------------------------------------------------


def _owner_numbers(numbers) -> list[str]:
    normalised, problems = [], []
    for number in numbers or []:
        try:
            normalised.append(to_e164(number))
        except ValidationError:
            problems.append(f"{number!r} is not a phone number")
    if problems:
        raise ValidationError({"owner_numbers": problems})
    return sorted(set(normalised))


def session_create(
    *,
    tenant,
    name: str,
    provider: str,
    owner_numbers=(),
    customer_mode: str = CustomerMode.SILENT,
    humanization_profile: str = HumanizationProfile.NORMAL,
    proxy_host: str = "",
    proxy_port: int | None = None,
    proxy_username: str = "",
    proxy_password: str = "",
    twilio_account_sid: str = "",
    twilio_auth_token: str = "",
    twilio_from_number: str = "",
    twilio_messaging_service_sid: str = "",
) -> WhatsAppSession:
    """Validate and create a session (stopped). Errors come back per field, all at once."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["A name is required."]
    elif WhatsAppSession.objects.filter(tenant=tenant, name=name).exists():
        errors["name"] = [f"You already have a session called {name!r}."]
    if provider not in Provider.values:
        errors["provider"] = [f"Choose one of {', '.join(Provider.values)}."]
    if customer_mode not in CustomerMode.values:
        errors["customer_mode"] = [f"Choose one of {', '.join(CustomerMode.values)}."]
    if humanization_profile not in HumanizationProfile.values:
        errors["humanization_profile"] = [f"Choose one of {', '.join(HumanizationProfile.values)}."]
    try:
        owners = _owner_numbers(owner_numbers)
    except ValidationError as error:
        errors.update(error.message_dict)
        owners = []
    if proxy_host and not (proxy_port and 0 < int(proxy_port) < 65536):
        errors["proxy_port"] = ["A proxy needs a port between 1 and 65535."]
    if provider == Provider.TWILIO:
        if not twilio_account_sid.startswith("AC") or len(twilio_account_sid) != 34:
            errors["twilio_account_sid"] = ["An account SID starts with AC and has 34 characters."]
        if not twilio_auth_token:
            errors["twilio_auth_token"] = ["The auth token is required."]
        if not (twilio_from_number or twilio_messaging_service_sid):
            errors["twilio_from_number"] = [
                "Give the WhatsApp sender number or a messaging service SID."
            ]
        if twilio_from_number:
            try:
                twilio_from_number = to_e164(twilio_from_number)
            except ValidationError as error:
                errors["twilio_from_number"] = error.messages
            else:
                taken = WhatsAppSession.objects.filter(
                    provider=Provider.TWILIO, twilio_from_number=twilio_from_number
                )
                if taken.exists():
                    errors["twilio_from_number"] = ["This number is already connected."]
    if errors:
        raise ValidationError(errors)
    return WhatsAppSession.objects.create(
        tenant=tenant,
        name=name,
        provider=provider,
        owner_numbers=owners,
        customer_mode=customer_mode,
        humanization_profile=humanization_profile,
        proxy_host=proxy_host,
        proxy_port=proxy_port or None,
        proxy_username=proxy_username,
        proxy_password=proxy_password,
        twilio_account_sid=twilio_account_sid,
        twilio_auth_token=twilio_auth_token,
        twilio_from_number=twilio_from_number,
        twilio_messaging_service_sid=twilio_messaging_service_sid,
    )


# --- requests from the web to the runners ---------------------------------------------


def session_start(*, session: WhatsAppSession) -> WhatsAppSession:
    """Ask for the session to run. A runner picks a live session up within seconds;
    a Twilio session has no connection to hold and is usable at once."""
    WhatsAppSession.objects.filter(pk=session.pk).update(
        desired_state=DesiredState.RUNNING, updated_at=timezone.now()
    )
    if session.provider == Provider.TWILIO:
        return session_status_set(
            session_id=session.pk,
            status=Status.CONNECTED,
            reason="Twilio credentials in use",
            phone_number=session.twilio_from_number,
        )
    if session.status in TERMINAL_STATUSES:
        # A person asked again: clear the stop so a runner may take it.
        return session_status_set(
            session_id=session.pk,
            status=Status.STOPPED,
            reason="Start requested",
            reconnect_attempts=0,
        )
    session.refresh_from_db()
    return session


def session_stop(*, session: WhatsAppSession) -> WhatsAppSession:
    """Ask for the session to stop; the owning runner disconnects it (keeping the device)."""
    WhatsAppSession.objects.filter(pk=session.pk).update(
        desired_state=DesiredState.STOPPED, updated_at=timezone.now()
    )
    if session.provider == Provider.TWILIO:
        return session_status_set(session_id=session.pk, status=Status.STOPPED, reason="Stopped")
    session.refresh_from_db()
    return session


def session_command(
    *, session: WhatsAppSession, kind: str, payload: dict | None = None
) -> SessionCommand:
    if not session.is_live_provider:
        raise ValidationError(f"A {session.get_provider_display()} session has no runner to ask.")
    return SessionCommand.objects.create(session=session, kind=kind, payload=payload or {})


def session_restart(*, session: WhatsAppSession) -> WhatsAppSession:
    if session.status in (*TERMINAL_STATUSES, Status.STOPPED):
        return session_start(session=session)
    session_command(session=session, kind=SessionCommand.Kind.RESTART)
    return session


def session_logout(*, session: WhatsAppSession) -> SessionCommand | None:
    """Unlink the device. A running session is logged out by its runner; a stopped one
    just forgets its device here (remove it under "Linked devices" on the phone too)."""
    from sessions_app.leases import lease_owner

    if lease_owner(session.pk) is not None:
        return session_command(session=session, kind=SessionCommand.Kind.LOGOUT)
    WhatsAppSession.objects.filter(pk=session.pk).update(desired_state=DesiredState.STOPPED)
    session_status_set(
        session_id=session.pk,
        status=Status.LOGGED_OUT,
        reason="Logged out while stopped: also remove the linked device on the phone",
        device_jid="",
        qr_payload="",
        qr_expires_at=None,
    )
    return None


def session_pair_phone(*, session: WhatsAppSession, phone_number: str) -> SessionCommand:
    """Ask for a pairing code for this number; the runner stores it on the session."""
    return session_command(
        session=session,
        kind=SessionCommand.Kind.PAIR_PHONE,
        payload={"phone_number": to_e164(phone_number)},
    )


def sandbox_scan(*, session: WhatsAppSession, code: str, phone_number: str) -> SessionCommand:
    """The phone simulator (or the API) scans a sandbox session's QR code as this number."""
    if session.provider != Provider.SANDBOX:
        raise ValidationError("Only sandbox sessions can be scanned from the simulator.")
    return session_command(
        session=session,
        kind=SessionCommand.Kind.SANDBOX_SCAN,
        payload={"code": code, "phone_number": to_e164(phone_number)},
    )
