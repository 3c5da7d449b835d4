"""The session runner as real processes: lifecycle, sharing, takeover, exactly-once sends."""

import signal
import sys
import uuid
from urllib.parse import parse_qs, urlparse

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from config.heartbeats import RUNNERS, heartbeats_read
from config.redis_client import redis_client
from dashboard.realtime import tenant_group
from sessions_app import leases, outbox
from sessions_app.models import (
    DesiredState,
    SandboxMessage,
    SessionCommand,
    SessionStatusChange,
    Status,
    WhatsAppSession,
)
from sessions_app.providers.base import OutboundMessage
from sessions_app.services import session_create, session_start, session_stop
from tests.conftest import ChildProcess, wait_until

pytestmark = pytest.mark.integration

RUNNER_ENV = {"SESSION_SCAN_SECONDS": "0.5", "SESSION_LEASE_TTL_SECONDS": "6"}


@pytest.fixture
def start_runner(committed_db, process_logs, monkeypatch):
    """Start real `manage.py run_sessions` processes; stopped (or killed) at the end."""
    for name, value in RUNNER_ENV.items():
        monkeypatch.setenv(name, value)
    runners: list[ChildProcess] = []

    def start(name: str | None = None) -> tuple[str, ChildProcess]:
        name = name or f"runner-{uuid.uuid4().hex[:6]}"
        child = ChildProcess(
            name, [sys.executable, "manage.py", "run_sessions", "--name", name], process_logs
        )
        runners.append(child)
        return name, child

    yield start
    for child in runners:
        child.stop()
    # Leave no session running for the next test's runners to pick up.
    WhatsAppSession.objects.update(desired_state=DesiredState.STOPPED)


def _sandbox(tenant, name="Front desk", **fields) -> WhatsAppSession:
    return session_create(tenant=tenant, name=name, provider="sandbox", **fields)


def _status(session) -> str:
    session.refresh_from_db()
    return session.status


class GroupListener:
    """A channels-redis consumer of the tenant's group, to see what the dashboard sees."""

    def __init__(self, tenant):
        self.layer = get_channel_layer()
        self.channel = f"test-listener-{uuid.uuid4().hex}"
        async_to_sync(self.layer.group_add)(tenant_group(tenant.schema_name), self.channel)
        self.events: list[dict] = []

    def drain(self) -> list[dict]:
        async def receive_all():
            import asyncio

            while True:
                try:
                    message = await asyncio.wait_for(self.layer.receive(self.channel), 0.2)
                except TimeoutError:
                    return
                self.events.append(message["event"])

        async_to_sync(receive_all)()
        return self.events


def test_sandbox_session_goes_from_stopped_to_connected_through_a_real_runner(
    make_tenant, start_runner
):
    # Given a tenant with a new sandbox session, a dashboard listening, a runner running
    tenant = make_tenant()
    session = _sandbox(tenant)
    listener = GroupListener(tenant)
    _, runner = start_runner()

    # When the owner starts it, the runner shows a QR code
    session_start(session=session)
    wait_until(lambda: _status(session) == Status.WAIT_QR, timeout=30, what="WAIT_QR", child=runner)
    assert session.qr_payload.startswith("sandbox://link?")
    assert session.qr_expires_at is not None

    # And when the simulator scans it as a phone
    code = parse_qs(urlparse(session.qr_payload).query)["code"][0]
    SessionCommand.objects.create(
        session=session,
        kind=SessionCommand.Kind.SANDBOX_SCAN,
        payload={"code": code, "phone_number": "+972501234567"},
    )
    wait_until(
        lambda: _status(session) == Status.CONNECTED, timeout=30, what="CONNECTED", child=runner
    )

    # Then the session is connected with that number, every step is in the history
    assert session.phone_number == "+972501234567"
    assert session.device_jid == "972501234567@sandbox"
    steps = list(
        SessionStatusChange.objects.filter(session=session)
        .order_by("created_at", "id")
        .values_list("from_status", "to_status")
    )
    assert steps == [
        (Status.STOPPED, Status.STARTING),
        (Status.STARTING, Status.WAIT_QR),
        (Status.WAIT_QR, Status.CONNECTED),
    ]

    # and each step reached the tenant's group
    def session_events():
        events = [e for e in listener.drain() if e["type"] in ("session.status", "session.qr")]
        return events if len(events) >= 4 else None

    events = wait_until(session_events, timeout=10, what="the dashboard events")
    kinds = [(e["type"], e.get("status")) for e in events]
    assert kinds == [
        ("session.status", "STARTING"),
        ("session.status", "WAIT_QR"),
        ("session.qr", None),
        ("session.status", "CONNECTED"),
    ]
    assert events[2]["qr"].startswith("sandbox://link?")
    assert all(e["session"] == str(session.public_id) for e in events)


def test_a_linked_session_is_restored_without_a_qr_when_a_runner_starts(make_tenant, start_runner):
    tenant = make_tenant()
    session = _sandbox(tenant)
    WhatsAppSession.objects.filter(pk=session.pk).update(
        device_jid="972501111111@sandbox", desired_state=DesiredState.RUNNING
    )
    _, runner = start_runner()
    wait_until(
        lambda: _status(session) == Status.CONNECTED, timeout=30, what="restore", child=runner
    )
    assert not SessionStatusChange.objects.filter(
        session=session, to_status=Status.WAIT_QR
    ).exists()
    assert session.phone_number == "+972501111111"


def test_stop_disconnects_and_releases_the_lease(make_tenant, start_runner):
    tenant = make_tenant()
    session = _sandbox(tenant)
    WhatsAppSession.objects.filter(pk=session.pk).update(device_jid="972502222222@sandbox")
    _, runner = start_runner()
    session_start(session=session)
    wait_until(
        lambda: _status(session) == Status.CONNECTED, timeout=30, what="connect", child=runner
    )

    session_stop(session=session)

    wait_until(lambda: _status(session) == Status.STOPPED, timeout=30, what="stop", child=runner)
    wait_until(lambda: leases.lease_owner(session.pk) is None, timeout=10, what="lease release")
    assert session.device_jid == "972502222222@sandbox"  # kept: the next start resumes


def _connected_sessions(tenant, count: int) -> list[WhatsAppSession]:
    sessions = []
    for number in range(count):
        session = _sandbox(tenant, name=f"Branch {number}")
        WhatsAppSession.objects.filter(pk=session.pk).update(
            device_jid=f"97250300{number:04d}@sandbox", desired_state=DesiredState.RUNNING
        )
        sessions.append(session)
    return sessions


def _owners(sessions) -> dict[int, str | None]:
    return leases.lease_owners([s.pk for s in sessions])


def test_two_runners_share_ten_sessions_and_the_survivor_takes_over_a_killed_ones(
    make_tenant, start_runner
):
    # Given two runners, then ten sessions that should run
    first, first_child = start_runner()
    second, second_child = start_runner()
    wait_until(
        lambda: {first, second} <= {beat.name for beat in heartbeats_read(RUNNERS)},
        timeout=30,
        what="both runners' heartbeats",
    )
    tenant = make_tenant()
    sessions = _connected_sessions(tenant, 10)

    # When they settle, each owns some and all ten are connected
    wait_until(
        lambda: all(_status(s) == Status.CONNECTED for s in sessions),
        timeout=60,
        what="ten connected sessions",
        child=first_child,
    )
    owners = _owners(sessions)
    assert set(owners.values()) == {first, second}
    assert sorted(list(owners.values()).count(name) for name in (first, second)) == [5, 5]

    # And when the first runner is killed outright, with a send queued for one of its sessions
    victim = next(s for s in sessions if owners[s.pk] == first)
    first_child.process.send_signal(signal.SIGKILL)
    first_child.process.wait()
    key = outbox.outbox_enqueue(
        session_id=victim.pk,
        message=OutboundMessage(to="+972509999999", text="Your order is ready"),
    )

    # Then the survivor owns all ten, connected, and the queued send went out exactly once
    wait_until(
        lambda: (
            set(_owners(sessions).values()) == {second}
            and all(_status(s) == Status.CONNECTED for s in sessions)
        ),
        timeout=60,
        what="the takeover",
        child=second_child,
    )
    wait_until(
        lambda: SandboxMessage.objects.filter(session=victim, text="Your order is ready").exists(),
        timeout=30,
        what="the queued send",
    )
    assert SandboxMessage.objects.filter(session=victim, text="Your order is ready").count() == 1
    assert redis_client().get(outbox.done_key(victim.pk, key))


def test_sigterm_releases_every_lease_at_once(make_tenant, start_runner):
    tenant = make_tenant()
    sessions = _connected_sessions(tenant, 3)
    _, child = start_runner()
    wait_until(
        lambda: all(_status(s) == Status.CONNECTED for s in sessions),
        timeout=30,
        what="connected",
        child=child,
    )
    child.process.send_signal(signal.SIGTERM)
    child.process.wait(timeout=30)
    assert child.process.returncode == 0, child.output()[-2000:]
    assert set(_owners(sessions).values()) == {None}
    for session in sessions:
        assert _status(session) == Status.DISCONNECTED
        assert session.device_jid  # the device is kept: another runner resumes it


def test_a_send_read_but_not_finished_by_a_dead_runner_is_sent_once_by_the_next(
    make_tenant, start_runner
):
    # Given a connected session whose queued send was read by a runner that then died
    tenant = make_tenant()
    (session,) = _connected_sessions(tenant, 1)
    WhatsAppSession.objects.filter(pk=session.pk).update(desired_state=DesiredState.STOPPED)
    outbox.outbox_enqueue(
        session_id=session.pk, message=OutboundMessage(to="+972508888888", text="Read, not sent")
    )
    (read_by_dead,) = outbox.outbox_read([session.pk], "dead-runner", block_ms=100)
    # and a second send that the dead runner sent but never acknowledged
    outbox.outbox_enqueue(
        session_id=session.pk,
        message=OutboundMessage(to="+972508888888", text="Sent, not acked", idempotency_key="k2"),
    )
    (sent_by_dead,) = outbox.outbox_read([session.pk], "dead-runner", block_ms=100)
    from sessions_app.providers.sandbox import sandbox_message_id

    SandboxMessage.objects.create(
        session=session,
        direction="out",
        phone="+972508888888",
        text="Sent, not acked",
        provider_message_id=sandbox_message_id("k2"),
    )
    outbox.outbox_mark_sent(sent_by_dead, sandbox_message_id("k2"))
    redis_client().xadd(outbox.stream_key(session.pk), {"garbage": "1"})  # must not block it
    assert read_by_dead.message.text == "Read, not sent"

    # When a new runner takes the session
    WhatsAppSession.objects.filter(pk=session.pk).update(desired_state=DesiredState.RUNNING)
    _, child = start_runner()

    # Then the read-but-unsent message goes out once and the sent one is not repeated
    wait_until(
        lambda: SandboxMessage.objects.filter(session=session, text="Read, not sent").exists(),
        timeout=30,
        what="the pending send",
        child=child,
    )
    assert SandboxMessage.objects.filter(session=session, text="Read, not sent").count() == 1
    assert SandboxMessage.objects.filter(session=session, text="Sent, not acked").count() == 1


def test_logout_command_forgets_the_device(make_tenant, start_runner):
    tenant = make_tenant()
    (session,) = _connected_sessions(tenant, 1)
    _, child = start_runner()
    wait_until(
        lambda: _status(session) == Status.CONNECTED, timeout=30, what="connect", child=child
    )

    command = SessionCommand.objects.create(session=session, kind=SessionCommand.Kind.LOGOUT)

    wait_until(
        lambda: _status(session) == Status.LOGGED_OUT, timeout=30, what="logout", child=child
    )

    def command_done():
        command.refresh_from_db()
        return command.state == SessionCommand.State.DONE

    wait_until(command_done, timeout=10, what="the command marked done", child=child)
    assert session.device_jid == "" and session.desired_state == DesiredState.STOPPED
    assert leases.lease_owner(session.pk) is None


def test_a_command_the_provider_cannot_do_fails_with_a_reason(make_tenant, start_runner):
    tenant = make_tenant()
    (session,) = _connected_sessions(tenant, 1)
    _, child = start_runner()
    wait_until(
        lambda: _status(session) == Status.CONNECTED, timeout=30, what="connect", child=child
    )

    command = SessionCommand.objects.create(
        session=session, kind=SessionCommand.Kind.PAIR_PHONE, payload={"phone_number": "+97250"}
    )

    def finished():
        command.refresh_from_db()
        return command.state != SessionCommand.State.PENDING

    wait_until(finished, timeout=30, what="the command", child=child)
    assert command.state == SessionCommand.State.FAILED
    assert "pairing" in command.result["error"]


def test_runner_logs_never_show_the_proxy_password(make_tenant, start_runner):
    tenant = make_tenant()
    session = _sandbox(
        tenant,
        proxy_host="proxy.example.com",
        proxy_port=1080,
        proxy_username="bob",
        proxy_password="s3cret-Proxy-pw",
    )
    WhatsAppSession.objects.filter(pk=session.pk).update(device_jid="972507777777@sandbox")
    _, child = start_runner()
    session_start(session=session)
    wait_until(
        lambda: _status(session) == Status.CONNECTED, timeout=30, what="connect", child=child
    )
    child.stop()
    assert "s3cret-Proxy-pw" not in child.output()


def test_the_sessions_command_drives_a_sandbox_session_end_to_end(
    make_tenant, start_runner, capsys
):
    from django.core.management import call_command

    tenant = make_tenant()
    _, child = start_runner()
    call_command("sessions", "create", "--tenant", tenant.slug, "--name", "Desk")
    call_command("sessions", "start", "--tenant", tenant.slug, "--name", "Desk")
    session = WhatsAppSession.objects.get(tenant=tenant, name="Desk")
    wait_until(lambda: _status(session) == Status.WAIT_QR, timeout=30, what="QR", child=child)

    call_command(
        "sessions", "scan", "--tenant", tenant.slug, "--name", "Desk", "--phone", "0501234567"
    )
    wait_until(lambda: _status(session) == Status.CONNECTED, timeout=30, what="scan", child=child)
    call_command(
        "sessions",
        "send",
        "--tenant",
        tenant.slug,
        "--name",
        "Desk",
        "--to",
        "+972509999999",
        "--text",
        "Welcome!",
    )
    wait_until(
        lambda: SandboxMessage.objects.filter(session=session, text="Welcome!").exists(),
        timeout=30,
        what="the send",
        child=child,
    )
    call_command("sessions", "list", "--tenant", tenant.slug)
    assert "Desk" in capsys.readouterr().out and session.phone_number == "+972501234567"


def test_the_sessions_command_explains_mistakes(make_tenant):
    from django.core.management import CommandError, call_command

    tenant = make_tenant()
    with pytest.raises(CommandError, match="no session called"):
        call_command("sessions", "start", "--tenant", tenant.slug, "--name", "Nope")
    with pytest.raises(CommandError, match="No tenant"):
        call_command("sessions", "list", "--tenant", "missing-tenant")
    call_command("sessions", "create", "--tenant", tenant.slug, "--name", "Desk")
    with pytest.raises(CommandError, match="already have a session"):
        call_command("sessions", "create", "--tenant", tenant.slug, "--name", "Desk")


def test_a_held_session_deleted_with_its_tenant_is_let_go_and_others_still_start(
    make_tenant, start_runner
):
    # Given a runner holding a session whose tenant is then deleted
    doomed_tenant, other = make_tenant(), make_tenant()
    doomed = _sandbox(doomed_tenant)
    _, runner = start_runner()
    session_start(session=doomed)
    wait_until(lambda: _status(doomed) == Status.WAIT_QR, timeout=30, what="WAIT_QR", child=runner)
    type(doomed_tenant).objects.filter(pk=doomed_tenant.pk).delete()  # rows only, cascading

    # When another tenant's session is started
    session = _sandbox(other)
    session_start(session=session)

    # Then the runner lets the deleted one go and starts the new one
    wait_until(lambda: _status(session) == Status.WAIT_QR, timeout=30, what="WAIT_QR", child=runner)
    wait_until(
        lambda: leases.lease_owner(doomed.pk) is None,
        timeout=15,
        what="the lease released",
        child=runner,
    )
    assert "tick failed" not in runner.output()
