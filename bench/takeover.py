"""Seconds from a session runner's death to the last of its sessions taken over.

Two real runner processes (`manage.py run_sessions`, default lease and scan settings)
share 20 linked sandbox sessions; one is killed with SIGKILL, and the clock runs until
the survivor holds every lease and every session is CONNECTED again. Target: under 15 s
(the lease lasts 10 s; a dead runner cannot release it). Runs on the bench database and
on Redis database 3, so a `make run` beside it is not disturbed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Figure, fresh_database, redis_database_url, wait_for

SESSIONS = 20
ROOT = Path(__file__).resolve().parent.parent


def run() -> list[Figure]:
    os.environ["REDIS_URL"] = redis_database_url(3)  # for the runner processes
    fresh_database()
    from django.conf import settings

    settings.REDIS_URL = os.environ["REDIS_URL"]  # and for this one (set up already)
    from config.redis_client import redis_client
    from sessions_app import leases
    from sessions_app.models import DesiredState, Status, WhatsAppSession
    from sessions_app.services import session_create
    from tenants.services import NewTenant, tenant_create

    redis_client().flushdb()
    tenant = tenant_create(
        NewTenant(
            slug="takeover",
            name="Takeover",
            owner_email="o@takeover.example",
            owner_password="Bench-pass-1234!",
        )
    )
    ids = []
    for number in range(SESSIONS):
        session = session_create(tenant=tenant, name=f"Branch {number}", provider="sandbox")
        WhatsAppSession.objects.filter(pk=session.pk).update(
            device_jid=f"9725040{number:05d}@sandbox", desired_state=DesiredState.RUNNING
        )
        ids.append(session.pk)

    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    runners = {
        name: subprocess.Popen(
            [sys.executable, "manage.py", "run_sessions", "--name", name], cwd=ROOT, env=env
        )
        for name in ("bench-runner-a", "bench-runner-b")
    }
    try:

        def all_connected() -> bool:
            connected = WhatsAppSession.objects.filter(pk__in=ids, status=Status.CONNECTED)
            return connected.count() == SESSIONS

        wait_for(all_connected, timeout=90, what="every session connected")
        owners = leases.lease_owners(ids)
        share = sum(1 for owner in owners.values() if owner == "bench-runner-a")
        print(f"  runner a holds {share} of {SESSIONS} sessions; killing it", flush=True)
        runners["bench-runner-a"].send_signal(signal.SIGKILL)
        runners["bench-runner-a"].wait()
        killed_at = time.monotonic()

        def survivor_holds_all() -> bool:
            held = set(leases.lease_owners(ids).values()) == {"bench-runner-b"}
            return held and all_connected()

        wait_for(survivor_holds_all, timeout=90, what="the takeover")
        seconds = time.monotonic() - killed_at
    finally:
        for process in runners.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
    return [
        Figure(f"runner death to last of its {share} sessions taken over", seconds, "s", "< 15 s")
    ]
