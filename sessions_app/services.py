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
    session = session_status_set(
        session_id=session_id, status=Status.CONNECTED, reason="Connected", **fields
    )
    # Back: its incident (logged out, failed...) is over; the next failure alerts again.
    from sessions_app.incidents import incident_resolve

    incident_resolve(kind="session_down", tenant=session.tenant, subject=str(session_id))
    return session


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


# Fields a person may set on a session (the provider is chosen once, at creation).
EDITABLE_FIELDS = (
    "name",
    "owner_numbers",
    "customer_mode",
    "humanization_profile",
    "proxy_host",
    "proxy_port",
    "proxy_username",
    "proxy_password",
    "twilio_account_sid",
    "twilio_auth_token",
    "twilio_from_number",
    "twilio_messaging_service_sid",
)


def _validated(
    *, tenant, provider: str, values: dict, instance: WhatsAppSession | None, check: bool
) -> dict:
    """Check every field at once and return them cleaned; ValidationError by field.

    For a Twilio session whose account SID or auth token is new, Twilio itself is asked
    for the account (`twilio_credentials_check`), so a wrong SID or token is refused here
    and not at the first send."""
    from sessions_app.providers.twilio_provider import twilio_credentials_check

    errors: dict[str, list[str]] = {}
    cleaned = dict(values)
    name = str(values.get("name") or "").strip()
    cleaned["name"] = name
    others = WhatsAppSession.objects.filter(tenant=tenant)
    if instance is not None:
        others = others.exclude(pk=instance.pk)
    if not name:
        errors["name"] = ["A name is required."]
    elif len(name) > 80:
        errors["name"] = ["Use at most 80 characters."]
    elif others.filter(name=name).exists():
        errors["name"] = [f"You already have a session called {name!r}."]
    if provider not in Provider.values:
        errors["provider"] = [f"Choose one of {', '.join(Provider.values)}."]
    if values["customer_mode"] not in CustomerMode.values:
        errors["customer_mode"] = [f"Choose one of {', '.join(CustomerMode.values)}."]
    if values["humanization_profile"] not in HumanizationProfile.values:
        errors["humanization_profile"] = [f"Choose one of {', '.join(HumanizationProfile.values)}."]
    try:
        cleaned["owner_numbers"] = _owner_numbers(values["owner_numbers"])
    except ValidationError as error:
        errors.update(error.message_dict)
    proxy_host = str(values.get("proxy_host") or "").strip()
    cleaned["proxy_host"] = proxy_host
    proxy_port = values.get("proxy_port")
    try:
        proxy_port = int(proxy_port) if proxy_port not in (None, "") else None
    except (TypeError, ValueError):
        proxy_port = -1
    if proxy_host and not (proxy_port and 0 < proxy_port < 65536):
        errors["proxy_port"] = ["A proxy needs a port between 1 and 65535."]
    cleaned["proxy_port"] = proxy_port if proxy_host else None
    if provider == Provider.TWILIO:
        sid = str(values.get("twilio_account_sid") or "").strip()
        token = str(values.get("twilio_auth_token") or "").strip()
        cleaned["twilio_account_sid"], cleaned["twilio_auth_token"] = sid, token
        credential_errors = False
        if not sid.startswith("AC") or len(sid) != 34:
            errors["twilio_account_sid"] = ["An account SID starts with AC and has 34 characters."]
            credential_errors = True
        if not token:
            errors["twilio_auth_token"] = ["The auth token is required."]
            credential_errors = True
        from_number = str(values.get("twilio_from_number") or "").strip()
        service_sid = str(values.get("twilio_messaging_service_sid") or "").strip()
        cleaned["twilio_messaging_service_sid"] = service_sid
        if not (from_number or service_sid):
            errors["twilio_from_number"] = [
                "Give the WhatsApp sender number or a messaging service SID."
            ]
        if from_number:
            try:
                from_number = to_e164(from_number)
            except ValidationError as error:
                errors["twilio_from_number"] = error.messages
            else:
                taken = WhatsAppSession.objects.filter(
                    provider=Provider.TWILIO, twilio_from_number=from_number
                )
                if instance is not None:
                    taken = taken.exclude(pk=instance.pk)
                if taken.exists():
                    errors["twilio_from_number"] = ["This number is already connected."]
        cleaned["twilio_from_number"] = from_number
        credentials_changed = instance is None or (
            sid != instance.twilio_account_sid or token != str(instance.twilio_auth_token or "")
        )
        if check and credentials_changed and not credential_errors:
            try:
                twilio_credentials_check(account_sid=sid, auth_token=token)
            except ValidationError as error:
                for field, messages in error.message_dict.items():
                    errors.setdefault(field, []).extend(messages)
    else:
        for field in (
            "twilio_account_sid",
            "twilio_auth_token",
            "twilio_from_number",
            "twilio_messaging_service_sid",
        ):
            cleaned[field] = ""
    if errors:
        raise ValidationError(errors)
    return cleaned


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
    check_credentials: bool = True,
) -> WhatsAppSession:
    """Validate and create a session (stopped). Errors come back per field, all at once.

    A Twilio session's credentials are checked with Twilio before anything is saved;
    `check_credentials=False` is for fixtures and benchmarks that have no Twilio to ask."""
    values = {
        "name": name,
        "owner_numbers": owner_numbers,
        "customer_mode": customer_mode,
        "humanization_profile": humanization_profile,
        "proxy_host": proxy_host,
        "proxy_port": proxy_port,
        "proxy_username": proxy_username or "",
        "proxy_password": proxy_password or "",
        "twilio_account_sid": twilio_account_sid,
        "twilio_auth_token": twilio_auth_token,
        "twilio_from_number": twilio_from_number,
        "twilio_messaging_service_sid": twilio_messaging_service_sid,
    }
    cleaned = _validated(
        tenant=tenant, provider=provider, values=values, instance=None, check=check_credentials
    )
    return WhatsAppSession.objects.create(tenant=tenant, provider=provider, **cleaned)


def session_update(
    *, session: WhatsAppSession, check_credentials: bool = True, **fields
) -> WhatsAppSession:
    """Change some of a session's settings, validated like `session_create` (errors by
    field, all at once). Fields not given keep their value; an empty
    `twilio_auth_token` keeps the stored token (forms never show it back). New Twilio
    credentials are checked with Twilio before they are saved. The provider cannot
    change: create another session instead."""
    refused = {name: ["This field cannot be changed."] for name in fields}
    for name in EDITABLE_FIELDS:
        refused.pop(name, None)
    with transaction.atomic():
        locked = (
            WhatsAppSession.objects.select_for_update(of=("self",))
            .select_related("tenant")
            .get(pk=session.pk)
        )
        values = {name: getattr(locked, name) for name in EDITABLE_FIELDS}
        values["twilio_auth_token"] = str(locked.twilio_auth_token or "")
        values["proxy_password"] = str(locked.proxy_password or "")
        for name, value in fields.items():
            if name in refused or (name == "twilio_auth_token" and not value):
                continue
            values[name] = "" if value is None and name != "proxy_port" else value
        try:
            cleaned = _validated(
                tenant=locked.tenant,
                provider=locked.provider,
                values=values,
                instance=locked,
                check=check_credentials and not refused,
            )
        except ValidationError as error:
            raise ValidationError({**error.message_dict, **refused}) from None
        if refused:
            raise ValidationError(refused)
        changed = [name for name in EDITABLE_FIELDS if cleaned[name] != _stored_value(locked, name)]
        for name in changed:
            setattr(locked, name, cleaned[name])
        if changed:
            locked.save(update_fields=[*changed, "updated_at"])
            logger.info("session %s: updated %s", locked.pk, ", ".join(changed))
    return locked


def _stored_value(session: WhatsAppSession, name: str):
    value = getattr(session, name)
    if name in ("twilio_auth_token", "proxy_password"):
        return str(value or "")
    return value


def session_delete(*, session: WhatsAppSession) -> None:
    """Delete a session and its history. A live session still held by a runner must be
    stopped first (the runner lets it go within seconds), so no connection is left
    behind without its row."""
    from sessions_app.leases import lease_owner

    if session.is_live_provider and lease_owner(session.pk) is not None:
        raise ValidationError(
            {"status": ["Stop the session first: a runner still holds its connection."]},
            code="session_running",
        )
    deleted, _ = WhatsAppSession.objects.filter(pk=session.pk).delete()
    if deleted:
        logger.info("session %s deleted", session.pk)


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
