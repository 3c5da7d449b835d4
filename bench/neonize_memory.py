"""Resident memory, PostgreSQL connections and file descriptors of ONE session runner
holding 100 neonize sessions, each resumed from a device stored in PostgreSQL, each in
its reconnect loop.

WhatsApp's servers cannot be reached from here: neonize's connect() fails at once with
a dial error, which the runner treats as a transient disconnect (backoff 1 s doubling,
with jitter). That is exactly the path a runner takes through a network outage, and
every failed connect still builds a whole whatsmeow client and loads its device from
the store.

How it runs (on the bench database and Redis database 8, so a `make run` beside it is
not disturbed):

1. 100 neonize sessions for one tenant, each with a stored device (a whatsmeow_device
   row with throwaway keys, created the way neonize creates its store) and the
   session's device_jid pointing at it, so every connect resumes it by JID;
2. one real runner process (`manage.py run_sessions`, LOG_LEVEL=WARNING) starts with no
   session wanted: its RSS is the baseline (neonize not imported yet);
3. one session is wanted: the RSS with neonize loaded and one session;
4. the other 99 are wanted; the runner is sampled every half second. Each time the
   slowest session has failed one more connect ("a reconnect round") the runner's
   RSS, its PostgreSQL connections and its open file descriptors are recorded, up to
   MAX_ROUNDS rounds or TIME_BUDGET_SECONDS.

The runner's PostgreSQL connections are attributed by socket: the local ports of the
runner's TCP connections to the server (psutil) matched against pg_stat_activity's
client_port. That counts every connection of the process -- Django's and those the
Go library opens for the device store -- whatever their application_name. A
connection the server has closed while the runner still holds its socket is counted
as a file descriptor, not as a server connection.

Targets: under 10 MiB per session at 100 sessions (the seed documents accept 50 MiB);
no growth per reconnect round; connections far below the server's max_connections.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil

from bench.common import Figure, fresh_database, redis_database_url

SESSIONS = 100
REDIS_DB = 8
RUNNER_NAME = "bench-neonize-runner"
MAX_ROUNDS = 6  # failed connects per session at the last snapshot
TIME_BUDGET_SECONDS = 75.0  # from wanting the 100 sessions to the last snapshot
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0
SAMPLE_SECONDS = 0.5
# Stop early rather than take the shared server down: leave this many connections free.
CONNECTIONS_HEADROOM = 40
ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def _store_url(database: dict) -> str:
    """neonize's device store on the bench database (as settings derive it)."""
    credentials = quote(str(database.get("USER") or ""), safe="")
    if database.get("PASSWORD"):
        credentials += ":" + quote(str(database["PASSWORD"]), safe="")
    host = database.get("HOST") or "localhost"
    port = database.get("PORT") or 5432
    name = quote(str(database["NAME"]), safe="")
    return f"postgres://{credentials}@{host}:{port}/{name}?sslmode=disable"


def _prepare_store(env: dict[str, str]) -> None:
    """Create whatsmeow's tables the way the runner does, in a process of its own: neonize
    is never imported into the bench process (its Go threads, and `make bench` forks)."""
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from sessions_app.providers.neonize_provider import prepare_device_store\n"
        "prepare_device_store(settings.NEONIZE_DATABASE_URL)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)


def _device_jid(number: int) -> str:
    return f"97254{number:07d}:1@s.whatsapp.net"


def _store_devices(store: str, jids: list[str]) -> None:
    """A whatsmeow_device row per session (keys of the right lengths, never used)."""
    import psycopg

    rows = [
        (jid, b"\1" * 32, b"\2" * 32, b"\3" * 32, b"\4" * 64, b"k", b"d", b"\5" * 64,
         b"\6" * 32, b"\7" * 64, f"Branch {n}")
        for n, jid in enumerate(jids)
    ]  # fmt: skip
    with psycopg.connect(store) as db, db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key, "
            "signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, "
            "adv_account_sig, adv_account_sig_key, adv_device_sig, push_name) "
            "VALUES (%s, 1, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


@dataclass
class Sample:
    at: float  # seconds since the 100 sessions were wanted
    rss: int  # bytes, the runner and its children
    fds: int
    pg_connections: int  # server connections that are the runner's
    pg_idle: int  # of those, idle
    server_connections: int  # every client backend on the server
    min_attempts: int  # failed connects of the slowest session
    total_attempts: int


class RunnerProbe:
    """Measures one runner process: RSS, file descriptors, PostgreSQL connections."""

    def __init__(self, pid: int, pg_host: str, pg_port: int):
        self.process = psutil.Process(pid)
        self.pg_port = pg_port
        self.pg_host = pg_host

    def _processes(self) -> list[psutil.Process]:
        try:
            return [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return [self.process]

    def rss(self) -> int:
        total = 0
        for process in self._processes():
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def fds(self) -> int:
        total = 0
        for process in self._processes():
            with contextlib.suppress(psutil.Error):
                total += process.num_fds()
        return total

    def local_ports(self) -> set[int]:
        """Local ports of the runner's TCP connections to the database server."""
        ports = set()
        for process in self._processes():
            try:
                connections = process.net_connections(kind="inet")
            except psutil.Error:
                continue
            for conn in connections:
                if conn.raddr and conn.raddr.port == self.pg_port:
                    ports.add(conn.laddr.port)
        return ports

    def pg_connections(self) -> tuple[int, int, int]:
        """(runner's server connections, of which idle, all client backends)."""
        from django.db import connection

        ports = sorted(self.local_ports())
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE client_port = ANY(%s)), "
                "count(*) FILTER (WHERE client_port = ANY(%s) AND state = 'idle'), "
                "count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
                [ports, ports],
            )
            mine, idle, everyone = cursor.fetchone()
        return mine, idle, everyone


def _median_rss(probe: RunnerProbe, seconds: float = 2.0) -> int:
    values = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        values.append(probe.rss())
        time.sleep(0.2)
    return int(statistics.median(values))


def _wait(condition, *, timeout: float, what: str, runner: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            raise RuntimeError(f"the runner exited ({runner.returncode}):\n{_tail(log)}")
        if condition():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}:\n{_tail(log)}")


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def run() -> list[Figure]:
    os.environ["REDIS_URL"] = redis_database_url(REDIS_DB)  # for the runner process
    fresh_database()
    from django.conf import settings
    from django.db import connection
    from django.db.models import Min, Sum

    settings.REDIS_URL = os.environ["REDIS_URL"]  # and for this one (set up already)
    from config.heartbeats import RUNNERS, heartbeats_read
    from config.redis_client import redis_client
    from sessions_app.models import DesiredState, Status, WhatsAppSession
    from sessions_app.services import session_create
    from tenants.services import NewTenant, tenant_create

    redis_client().flushdb()
    database = settings.DATABASES["default"]
    store = _store_url(database)
    env = {**os.environ, "LOG_LEVEL": "WARNING", "NEONIZE_DATABASE_URL": store}
    _prepare_store(env)

    tenant = tenant_create(
        NewTenant(
            slug="neonize-memory",
            name="Neonize memory",
            owner_email="o@neonize-memory.example",
            owner_password="Bench-pass-1234!",
        )
    )
    ids, jids = [], []
    for number in range(SESSIONS):
        session = session_create(tenant=tenant, name=f"Branch {number}", provider="neonize")
        jid = _device_jid(number)
        WhatsAppSession.objects.filter(pk=session.pk).update(
            device_jid=jid, desired_state=DesiredState.STOPPED
        )
        ids.append(session.pk)
        jids.append(jid)
    _store_devices(store, jids)

    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = int(cursor.fetchone()[0])

    log_dir = Path(tempfile.mkdtemp(prefix="bench-neonize-"))
    log = log_dir / "runner.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "manage.py", "run_sessions", "--name", RUNNER_NAME],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    sessions = WhatsAppSession.objects.filter(pk__in=ids)
    try:
        probe = RunnerProbe(
            runner.pid, database.get("HOST") or "localhost", int(database.get("PORT") or 5432)
        )

        def runner_beating() -> bool:
            return any(beat.name == RUNNER_NAME for beat in heartbeats_read(RUNNERS))

        _wait(
            runner_beating, timeout=START_TIMEOUT_SECONDS, what="the runner", runner=runner, log=log
        )
        time.sleep(2.0)  # let it settle: a few ticks with nothing to do
        rss_0 = _median_rss(probe)
        pg_0, _idle, _all = probe.pg_connections()
        fds_0 = probe.fds()
        print(
            f"  baseline: {rss_0 / MIB:.1f} MiB, {pg_0} PostgreSQL connections, {fds_0} fds",
            flush=True,
        )

        # One session: neonize gets imported, one client connects (and fails).
        sessions.filter(pk=ids[0]).update(desired_state=DesiredState.RUNNING)

        def first_failed() -> bool:
            return sessions.filter(pk=ids[0], reconnect_attempts__gte=1).exists()

        _wait(
            first_failed,
            timeout=START_TIMEOUT_SECONDS,
            what="the first session's connect",
            runner=runner,
            log=log,
        )
        rss_1 = _median_rss(probe)
        print(f"  1 session (neonize loaded): {rss_1 / MIB:.1f} MiB", flush=True)

        # The other 99.
        sessions.update(desired_state=DesiredState.RUNNING)
        wanted_at = time.monotonic()
        rounds: dict[int, Sample] = {}
        samples: list[Sample] = []
        stopped_early = ""
        while True:
            if runner.poll() is not None:
                raise RuntimeError(f"the runner exited ({runner.returncode}):\n{_tail(log)}")
            progress = sessions.aggregate(
                low=Min("reconnect_attempts"), total=Sum("reconnect_attempts")
            )
            pg, idle, everyone = probe.pg_connections()
            sample = Sample(
                at=time.monotonic() - wanted_at,
                rss=probe.rss(),
                fds=probe.fds(),
                pg_connections=pg,
                pg_idle=idle,
                server_connections=everyone,
                min_attempts=progress["low"] or 0,
                total_attempts=progress["total"] or 0,
            )
            samples.append(sample)
            if len(samples) % 10 == 1:
                print(
                    f"  {sample.at:5.1f} s: {sample.total_attempts} failed connects (slowest "
                    f"session {sample.min_attempts}), {sample.rss / MIB:.1f} MiB, "
                    f"{sample.pg_connections} PostgreSQL connections, {sample.fds} fds",
                    flush=True,
                )
            if sample.min_attempts >= 2 and sample.min_attempts not in rounds:
                rounds[sample.min_attempts] = sample
                print(
                    f"  round {sample.min_attempts} at {sample.at:.1f} s: "
                    f"{sample.rss / MIB:.1f} MiB, {sample.pg_connections} PostgreSQL "
                    f"connections ({sample.pg_idle} idle; {sample.server_connections} of "
                    f"{max_connections} on the server), {sample.fds} fds",
                    flush=True,
                )
            if sample.min_attempts >= MAX_ROUNDS:
                break
            if sample.at > TIME_BUDGET_SECONDS:
                stopped_early = f"time budget ({TIME_BUDGET_SECONDS:.0f} s) spent"
                break
            if sample.server_connections >= max_connections - CONNECTIONS_HEADROOM:
                stopped_early = (
                    f"the server is nearly out of connections ({sample.server_connections} "
                    f"of {max_connections})"
                )
                break
            given_up = sessions.exclude(
                status__in=[Status.STARTING, Status.DISCONNECTED, Status.STOPPED]
            )
            if given_up.exists():
                statuses = sorted(set(given_up.values_list("status", flat=True)))
                stopped_early = f"sessions left the reconnect loop ({', '.join(statuses)})"
                break
            time.sleep(SAMPLE_SECONDS)
        if stopped_early:
            print(f"  stopped early: {stopped_early}", flush=True)
    finally:
        if runner.poll() is None:
            runner.terminate()
            try:
                runner.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.wait()
    if rounds:
        first = rounds[2]
        first_label = f"{SESSIONS} sessions after 2 failed connects each"
    else:  # stopped before every session had failed twice: figures at the stop
        first = samples[-1]
        first_label = (
            f"{SESSIONS} sessions when stopped ({first.total_attempts} failed connects, "
            f"slowest session {first.min_attempts})"
        )
    last_round = max(rounds, default=2)
    last = rounds.get(last_round, first)
    peak_pg = max(sample.pg_connections for sample in samples)
    peak_rss = max(sample.rss for sample in samples)
    per_session = (first.rss - rss_0) / SESSIONS / MIB
    per_session_marginal = (first.rss - rss_1) / (SESSIONS - 1) / MIB
    figures = [
        Figure("runner RSS, no session (neonize not imported)", rss_0 / MIB, "MiB"),
        Figure("runner RSS, 1 session (neonize imported)", rss_1 / MIB, "MiB"),
        Figure(f"runner RSS, {first_label}", first.rss / MIB, "MiB"),
        Figure(
            f"MiB per session ((RSS_{SESSIONS} - RSS_0) / {SESSIONS})",
            per_session,
            "MiB",
            "< 10 MiB (seed docs: 50)",
        ),
        Figure(
            f"MiB per session above the first ((RSS_{SESSIONS} - RSS_1) / {SESSIONS - 1})",
            per_session_marginal,
            "MiB",
            "< 10 MiB",
        ),
        Figure(f"seconds to: {first_label}", round(first.at, 1), "s"),
    ]
    if last_round > 2:
        rounds_apart = last_round - 2
        connects = max(1, last.total_attempts - first.total_attempts)
        figures += [
            Figure(
                f"RSS growth per reconnect round of {SESSIONS} sessions (rounds 2-{last_round})",
                (last.rss - first.rss) / rounds_apart / MIB,
                "MiB",
                "~0 (no leak)",
            ),
            Figure(
                "RSS growth per failed connect",
                round((last.rss - first.rss) / connects / 1024, 1),
                "KiB",
                "~0",
            ),
            Figure(
                f"open fds growth per reconnect round (rounds 2-{last_round})",
                round((last.fds - first.fds) / rounds_apart, 1),
                "fds",
                "~0",
            ),
        ]
    figures += [
        Figure("runner's PostgreSQL connections, no session", pg_0, "conns"),
        Figure(
            f"runner's PostgreSQL connections, {first_label}",
            first.pg_connections,
            "conns",
            f"<< max_connections ({max_connections})",
        ),
        Figure(
            "runner's PostgreSQL connections, peak",
            peak_pg,
            "conns",
            f"<< max_connections ({max_connections})",
        ),
        Figure(
            "runner's PostgreSQL connections per failed connect (at the above)",
            round((first.pg_connections - pg_0) / max(1, first.total_attempts), 2),
            "conns",
            "~0",
        ),
        Figure("runner's open fds, no session", fds_0, "fds"),
        Figure(f"runner's open fds, {first_label}", first.fds, "fds"),
        Figure(
            "runner's open fds per failed connect (at the above)",
            round((first.fds - fds_0) / max(1, first.total_attempts), 2),
            "fds",
            "~0",
        ),
        Figure("runner RSS, peak", peak_rss / MIB, "MiB"),
    ]
    if stopped_early:
        figures.append(Figure(f"STOPPED EARLY: {stopped_early}", last.min_attempts, "rounds"))
    return figures
