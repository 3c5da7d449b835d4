"""Owner reminders: the delay between a reminder's due time and its delivery.

100 reminders of one owner fall due over 20 seconds (five a second), set through the
owner menu's `reminder_create` as the menu does. A real Celery worker (prefork, 2
processes) and a real beat (its sweep is the fallback for missed ETA tasks) deliver
them. "Delivered" is the moment the reminder's message is stored and handed to the
outbound pipeline (`Message.created_at`); the delay is that minus the due time. Target:
p99 under 5 s (the seed documents accept two minutes). Also counted: reminders delivered
more than once (must be 0).

Runs on the bench database and on Redis database 3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from bench.common import Figure, fresh_database, percentile, redis_database_url, wait_for

REMINDERS = 100
SPREAD_SECONDS = 20.0
LEAD_SECONDS = 15.0  # the first is due this long after creation (the worker starts meanwhile)
REDIS_DB = 3
OWNER = "+972501110000"
ROOT = Path(__file__).resolve().parent.parent


def _start(command: list[str]) -> subprocess.Popen:
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    return subprocess.Popen(command, cwd=ROOT, env=env)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _use_broker(url: str) -> None:
    """Point this process's Celery app at `url` (another benchmark may have used it)."""
    from config.celery import app

    app.conf.broker_url = url
    app.conf.result_backend = url
    app._pool = None
    app.amqp._producer_pool = None


def run() -> list[Figure]:
    redis_url = redis_database_url(REDIS_DB)
    os.environ["REDIS_URL"] = redis_url  # for the worker and beat
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    fresh_database()
    from django.conf import settings
    from django.utils import timezone
    from django_tenants.utils import schema_context

    settings.REDIS_URL = redis_url
    _use_broker(redis_url)
    from config.heartbeats import WORKERS, heartbeats_read
    from config.redis_client import redis_client
    from messaging.models import Message, MessagingSettings
    from messaging.owner_menu.reminders import reminder_create
    from messaging.owner_models import OwnerAccount, OwnerReminder
    from sessions_app.services import session_create
    from tenants.services import NewTenant, tenant_create

    redis_client().flushdb()
    tenant = tenant_create(
        NewTenant(
            slug="reminders",
            name="Reminders",
            owner_email="o@reminders.example",
            owner_password="Bench-pass-1234!",
        )
    )
    session = session_create(tenant=tenant, name="Main", provider="sandbox", owner_numbers=[OWNER])
    hostname = f"bench-reminders-{uuid.uuid4().hex[:6]}"
    worker = _start(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "2",
         "--loglevel", "WARNING", "--hostname", f"{hostname}@%h"]
    )  # fmt: skip
    beat = _start(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING",
         "--schedule", "/dev/null"]
    )  # fmt: skip
    try:
        wait_for(
            lambda: any(hostname in b.name for b in heartbeats_read(WORKERS)),
            timeout=90,
            what="the Celery worker",
        )
        with schema_context(tenant.schema_name):
            # The owner's own limits would space 100 messages out over minutes; the
            # figure is the scheduler's, not the rate limiter's.
            MessagingSettings.objects.update_or_create(
                pk=1, defaults={"limits_enabled": False, "duplicate_window_seconds": 0}
            )
            account = OwnerAccount.objects.create(phone=OWNER, name="Bench", pin_hash="-")
            start = timezone.now() + timedelta(seconds=LEAD_SECONDS)
            step = SPREAD_SECONDS / REMINDERS
            for index in range(REMINDERS):
                reminder_create(
                    account=account,
                    session=session,
                    text=f"Reminder {index}",
                    due_at=start + timedelta(seconds=index * step),
                )
            sent = OwnerReminder.objects.filter(state=OwnerReminder.State.SENT)
            wait_for(
                lambda: sent.count() == REMINDERS,
                timeout=LEAD_SECONDS + SPREAD_SECONDS + 120,
                what=f"{REMINDERS} reminders delivered",
            )
            messages = dict(
                Message.objects.filter(text__startswith="⏰").values_list("pk", "created_at")
            )
            by_text = {
                r.text: (messages[r.message_id] - r.due_at).total_seconds()
                for r in OwnerReminder.objects.all()
            }
            delays = list(by_text.values())
            twice = len(messages) - REMINDERS
    finally:
        _stop(beat)
        _stop(worker)
    p50, p99 = percentile(delays, 0.50), percentile(delays, 0.99)
    print(f"  reminders: p50 {p50:.3f} s, p99 {p99:.3f} s, max {max(delays):.3f} s", flush=True)
    worst = sorted(by_text.items(), key=lambda item: -item[1])[:3]
    print("  slowest: " + ", ".join(f"{text} {delay:.3f} s" for text, delay in worst), flush=True)
    return [
        Figure("reminder due -> delivered, p50 (100 reminders)", round(p50, 3), "s"),
        Figure("reminder due -> delivered, p99", round(p99, 3), "s", "< 5 s"),
        Figure("reminder due -> delivered, max", round(max(delays), 3), "s"),
        Figure("reminders delivered more than once", twice, "", "0"),
    ]
