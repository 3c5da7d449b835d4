"""Alerts: told once per incident, to the operators and to the tenant's owners."""

import json
import time

from django.core import mail
from django.utils import timezone
from django_tenants.utils import schema_context

from config.heartbeats import RUNNERS
from config.redis_client import redis_client
from messaging.models import Contact, Conversation, Message
from sessions_app import leases
from sessions_app.alerts import session_alert_send
from sessions_app.incidents import incident_open, operations_check
from sessions_app.models import Incident, Status
from sessions_app.services import session_connected, session_create, session_status_set
from tests.test_session_runner import GroupListener

OWNER_PHONE = "+972501110000"


def _mail_to(settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PLATFORM_ALERT_EMAILS = ["ops@platform.example.com"]


def _recipients() -> list[list[str]]:
    return [email.to for email in mail.outbox]


def test_a_session_incident_alerts_once_until_the_session_is_back(make_tenant, settings):
    _mail_to(settings)
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Main", provider="sandbox")
    listener = GroupListener(tenant)

    # When the session is logged out, then fails again before it ever came back
    session_status_set(session_id=session.pk, status=Status.LOGGED_OUT, reason="Unlinked")
    assert session_alert_send(session_id=session.pk) == 1
    session_status_set(session_id=session.pk, status=Status.FAILED, reason="Again")
    assert session_alert_send(session_id=session.pk) == 0

    # Then the owner and the operators heard once, and the dashboard got one alert
    assert sorted(_recipients()) == [
        ["ops@platform.example.com"],
        [f"owner@{tenant.slug}.example.com"],
    ]
    alerts = [event for event in listener.drain() if event["type"] == "alert"]
    assert [alert["kind"] for alert in alerts] == ["session_down"]

    # And once it is back, the next failure is a new incident, told again
    session_connected(session_id=session.pk, phone_number="+972500000001")
    session_status_set(session_id=session.pk, status=Status.FAILED, reason="Down again")
    assert session_alert_send(session_id=session.pk) == 1
    assert len(mail.outbox) == 4
    assert Incident.objects.filter(tenant=tenant, kind="session_down").count() == 2


def test_owners_hear_on_whatsapp_from_another_connected_number(make_tenant, settings):
    _mail_to(settings)
    tenant = make_tenant()
    down = session_create(
        tenant=tenant, name="Down", provider="sandbox", owner_numbers=[OWNER_PHONE]
    )
    up = session_create(tenant=tenant, name="Up", provider="sandbox", owner_numbers=[OWNER_PHONE])
    # Held by a runner (a name of our own): a real runner of another test, seeing a
    # connected session that nobody holds, would otherwise settle it as stopped.
    assert leases.lease_acquire(up.pk, "test-incidents")
    session_connected(session_id=up.pk, phone_number="+972500000002")

    session_status_set(session_id=down.pk, status=Status.BANNED, reason="Temporary ban")
    session_alert_send(session_id=down.pk)

    with schema_context(tenant.schema_name):
        (message,) = Message.objects.filter(direction="out")
        assert message.conversation.contact.phone == OWNER_PHONE
        assert message.session_id == up.pk
        assert "Down" in message.text


def _dead_letters(count: int) -> None:
    contact = Contact.objects.create(phone="+972509990000")
    conversation = Conversation.objects.create(contact=contact, session_id=1)
    Message.objects.bulk_create(
        Message(
            conversation=conversation, session_id=1, direction="out", text=f"m{i}",
            status="failed", dead_letter=True, failed_at=timezone.now(),
        )
        for i in range(count)
    )  # fmt: skip


def test_dead_letters_piling_up_alert_once_and_resolve(make_tenant, settings):
    _mail_to(settings)
    settings.DEAD_LETTER_ALERT_THRESHOLD = 5
    tenant = make_tenant()
    with schema_context(tenant.schema_name):
        _dead_letters(5)

    operations_check()
    second = operations_check()

    # (other tests' dead runners may open incidents of their own in the same checks)
    incidents = Incident.objects.filter(tenant=tenant, kind="dead_letters")
    assert incidents.count() == 1
    assert not Incident.objects.filter(tenant=tenant).exclude(kind="dead_letters").exists()
    assert second.opened == 0
    assert ["ops@platform.example.com"] in _recipients()
    assert [f"owner@{tenant.slug}.example.com"] in _recipients()
    assert incidents.get().details == {"dead_letters_last_hour": 5}

    with schema_context(tenant.schema_name):
        Message.objects.all().delete()
    operations_check()
    assert incidents.get().resolved_at is not None


def test_a_block_rate_over_five_percent_alerts_the_tenant(make_tenant, settings):
    _mail_to(settings)
    settings.BLOCK_RATE_MIN_CONTACTS = 20
    quiet, blocked_a_lot = make_tenant(), make_tenant()
    for tenant, blocked in ((quiet, 1), (blocked_a_lot, 2)):  # 5% and 10% of 20
        with schema_context(tenant.schema_name):
            Contact.objects.bulk_create(
                Contact(phone=f"+97250100{i:04d}", blocked=i < blocked) for i in range(20)
            )

    operations_check()
    operations_check()

    assert not Incident.objects.filter(tenant=quiet).exists()
    incident = Incident.objects.get(tenant=blocked_a_lot, kind="block_rate")
    assert incident.details == {"blocked": 2, "contacts": 20}


def test_a_dead_runner_is_reported_once_to_the_operators(committed_db, settings):
    _mail_to(settings)
    name = f"runner@dead-{time.time_ns()}"
    beat = {"ts": time.time() - settings.HEARTBEAT_STALE_SECONDS - 5, "sessions": 7}
    redis_client().hset(RUNNERS, name, json.dumps(beat))
    try:
        operations_check()
        operations_check()
        incident = Incident.objects.get(kind="runner_died", subject=name)
        assert incident.details["sessions"] == 7
        assert _recipients().count(["ops@platform.example.com"]) == 1
    finally:
        redis_client().hdel(RUNNERS, name)
    operations_check()
    incident.refresh_from_db()
    assert incident.resolved_at is not None


def test_opening_the_same_incident_twice_keeps_one(committed_db):
    first, created = incident_open(kind="runner_died", subject="r1", summary="x")
    again, created_again = incident_open(kind="runner_died", subject="r1", summary="x")
    assert (created, created_again, first.pk) == (True, False, again.pk)
    Incident.objects.filter(pk=first.pk).delete()
