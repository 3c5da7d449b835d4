"""The session registry and the runner's decisions, in-process against real PostgreSQL/Redis."""

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from sessions_app import leases
from sessions_app.alerts import session_alert_send
from sessions_app.fields import Secret, decrypt
from sessions_app.models import DesiredState, SessionStatusChange, Status, WhatsAppSession
from sessions_app.providers import sandbox
from sessions_app.providers.base import DisconnectKind, SessionConfig
from sessions_app.runner import Held, SessionRunner, _SessionEvents, reconnect_delay
from sessions_app.services import session_create, session_logout, session_status_set
from tests.test_session_runner import GroupListener

TOKEN = "f3d1c0ffee0123456789abcdef012345"
SID = "AC" + "1" * 32


def _raw(session, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM sessions_app_whatsappsession WHERE id = %s", [session.pk]
        )
        return cursor.fetchone()[0]


def test_session_create_reports_every_problem_by_field(make_tenant):
    tenant = make_tenant()
    session_create(tenant=tenant, name="Main", provider="sandbox")
    with pytest.raises(ValidationError) as error:
        session_create(
            tenant=tenant,
            name="Main",
            provider="twilio",
            owner_numbers=["12"],
            twilio_account_sid="XX",
            customer_mode="loud",
        )
    assert set(error.value.message_dict) == {
        "name",
        "owner_numbers",
        "twilio_account_sid",
        "twilio_auth_token",
        "twilio_from_number",
        "customer_mode",
    }


def test_owner_numbers_are_stored_in_e164(make_tenant):
    session = session_create(
        tenant=make_tenant(),
        name="Main",
        provider="sandbox",
        owner_numbers=["050-123-4567", "+972 50 123 4567", "+1 (415) 555-0100"],
    )
    assert session.owner_numbers == ["+14155550100", "+972501234567"]


def test_credentials_are_encrypted_at_rest_and_masked_in_repr(make_tenant, twilio_standin):
    twilio_standin.add_account(SID, TOKEN)
    session = session_create(
        tenant=make_tenant(),
        name="Twilio",
        provider="twilio",
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_from_number="+14155550111",
        proxy_host="proxy.example.com",
        proxy_port=1080,
        proxy_username="bob",
        proxy_password="pr0xy-Secret",
    )
    for column, secret in (("twilio_auth_token", TOKEN), ("proxy_password", "pr0xy-Secret")):
        stored = _raw(session, column)
        assert secret not in stored
        assert decrypt(stored) == secret
    fresh = WhatsAppSession.objects.get(pk=session.pk)
    assert fresh.twilio_auth_token == TOKEN
    assert isinstance(fresh.twilio_auth_token, Secret)
    assert TOKEN not in repr(fresh.twilio_auth_token)
    assert TOKEN not in repr(fresh.__dict__)


def test_encryption_rotate_reencrypts_with_the_newest_key(make_tenant, settings, twilio_standin):
    twilio_standin.add_account(SID, TOKEN)
    session = session_create(
        tenant=make_tenant(),
        name="Twilio",
        provider="twilio",
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_from_number="+14155550112",
    )
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]

    call_command("encryption_rotate")

    stored = _raw(session, "twilio_auth_token")
    assert Fernet(new_key.encode()).decrypt(stored.encode()).decode() == TOKEN
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key can now go
    assert WhatsAppSession.objects.get(pk=session.pk).twilio_auth_token == TOKEN
    WhatsAppSession.objects.filter(pk=session.pk).delete()  # unreadable once the keys revert


def test_a_status_change_leaves_history_and_reaches_the_dashboard_after_commit(make_tenant):
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Main", provider="sandbox")
    listener = GroupListener(tenant)

    session_status_set(session_id=session.pk, status=Status.STARTING, reason="test")

    change = SessionStatusChange.objects.get(session=session)
    assert (change.from_status, change.to_status, change.reason) == ("STOPPED", "STARTING", "test")
    (event,) = listener.drain()
    assert event == {
        "type": "session.status",
        "session": str(session.public_id),
        "name": "Main",
        "status": "STARTING",
        "previous": "STOPPED",
        "reason": "test",
        "phone_number": "",
    }


def test_a_rolled_back_status_change_leaves_no_trace(make_tenant):
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Main", provider="sandbox")
    listener = GroupListener(tenant)

    with pytest.raises(RuntimeError), transaction.atomic():
        session_status_set(session_id=session.pk, status=Status.STARTING, reason="doomed")
        raise RuntimeError("rollback")

    assert not SessionStatusChange.objects.filter(session=session).exists()
    assert listener.drain() == []


def test_alert_emails_the_tenants_owners(make_tenant, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Main", provider="sandbox")
    # Straight to the database: session_status_set would also queue this alert, and
    # a test run's Celery worker could claim the incident before this call does.
    WhatsAppSession.objects.filter(pk=session.pk).update(
        status=Status.LOGGED_OUT, last_disconnect_reason="Unlinked on the phone"
    )

    assert session_alert_send(session_id=session.pk) == 1
    (email,) = mail.outbox
    assert email.to == [f"owner@{tenant.slug}.example.com"]
    assert "Unlinked on the phone" in email.body


def test_reconnect_delay_doubles_from_one_second_to_sixty_with_jitter():
    for attempt, base in ((1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (10, 60)):
        delay = reconnect_delay(attempt)
        assert base * 0.8 <= delay <= base * 1.2


# --- how the runner reacts to each kind of disconnect ---------------------------------


@pytest.fixture
def held_session(make_tenant):
    """A sandbox session held by an in-process runner (no control loop running)."""
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Main", provider="sandbox")
    WhatsAppSession.objects.filter(pk=session.pk).update(
        desired_state=DesiredState.RUNNING,
        device_jid="972501234567@sandbox",
        status=Status.CONNECTED,
    )
    runner = SessionRunner(name="in-process-runner")
    assert leases.lease_acquire(session.pk, runner.name)
    config = SessionConfig(
        session_id=session.pk,
        public_id=str(session.public_id),
        schema_name=tenant.schema_name,
        device_jid="972501234567@sandbox",
    )
    events = _SessionEvents(runner, session.pk)
    held = Held(session.pk, "sandbox", sandbox.SandboxConnection(config, events))
    runner.held[session.pk] = held
    yield runner, held, events, session
    leases.lease_release(session.pk, runner.name)


def test_transient_disconnects_back_off_then_fail_after_ten(held_session):
    runner, held, events, session = held_session
    events.disconnected(kind=DisconnectKind.TRANSIENT, reason="keep-alive timeout")
    runner._drain_events()
    session.refresh_from_db()
    assert session.status == Status.DISCONNECTED and session.reconnect_attempts == 1
    assert held.reconnect_at is not None

    for _ in range(10):
        events.disconnected(kind=DisconnectKind.TRANSIENT, reason="dial failed")
        runner._drain_events()
    session.refresh_from_db()
    assert session.status == Status.FAILED
    assert "Gave up after 10 reconnects" in session.last_disconnect_reason
    assert session.pk not in runner.held
    assert leases.lease_owner(session.pk) is None


def test_logged_out_forgets_the_device(held_session):
    runner, _, events, session = held_session
    events.disconnected(kind=DisconnectKind.LOGGED_OUT, reason="401: logged out from the phone")
    runner._drain_events()
    session.refresh_from_db()
    assert session.status == Status.LOGGED_OUT
    assert session.device_jid == ""
    assert leases.lease_owner(session.pk) is None


def test_a_ban_is_waited_out_not_reconnected(held_session):
    runner, _, events, session = held_session
    until = timezone.now() + timedelta(hours=1)
    events.disconnected(kind=DisconnectKind.BANNED, reason="temporary ban 101", banned_until=until)
    runner._drain_events()
    session.refresh_from_db()
    assert session.status == Status.BANNED and session.banned_until == until

    runner._reconcile()  # the session still "should run", but not before the ban ends
    assert session.pk not in runner.held
    assert leases.lease_owner(session.pk) is None


def test_stream_replaced_stops_without_fighting(held_session):
    runner, _, events, session = held_session
    events.disconnected(kind=DisconnectKind.REPLACED, reason="Opened on another computer")
    runner._drain_events()
    session.refresh_from_db()
    assert (session.status, session.desired_state) == (Status.STOPPED, DesiredState.STOPPED)


def test_qr_codes_refresh_then_run_out(held_session, monkeypatch):
    runner, held, events, session = held_session
    monkeypatch.setattr(sandbox, "FIRST_QR_SECONDS", 0)
    monkeypatch.setattr(sandbox, "NEXT_QR_SECONDS", 0)
    connection_ = sandbox.SandboxConnection(
        SessionConfig(session_id=session.pk, public_id=str(session.public_id), schema_name="x"),
        events,
    )
    held.connection = connection_
    connection_.connect()
    for _ in range(sandbox.QR_CODES):
        connection_.poll()
    runner._drain_events()
    session.refresh_from_db()
    assert session.status == Status.FAILED
    assert "not scanned" in session.last_disconnect_reason
    assert session.qr_payload == ""
    shown = SessionStatusChange.objects.filter(session=session, to_status=Status.WAIT_QR).count()
    assert shown == 1  # one WAIT_QR period, several codes


def test_logout_of_a_stopped_session_forgets_the_device_at_once(make_tenant):
    session = session_create(tenant=make_tenant(), name="Main", provider="sandbox")
    WhatsAppSession.objects.filter(pk=session.pk).update(device_jid="972501234567@sandbox")
    assert session_logout(session=session) is None
    session.refresh_from_db()
    assert session.status == Status.LOGGED_OUT and session.device_jid == ""


def test_a_new_qr_code_reaches_the_dashboard_as_an_svg_image(make_tenant):
    from sessions_app.services import session_qr_set

    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Main", provider="sandbox")
    listener = GroupListener(tenant)
    expires = timezone.now() + timedelta(seconds=60)

    session_qr_set(
        session_id=session.pk, payload="sandbox://link?session=x&code=y", expires_at=expires
    )

    qr_event = next(e for e in listener.drain() if e["type"] == "session.qr")
    assert qr_event["svg"].startswith("<svg") and "</svg>" in qr_event["svg"]
    assert qr_event["expires_at"] == expires.isoformat()
