"""Dashboard websockets: CLIENTS live dashboards connected at once to one web server, and
the delay from a stored inbound message to every one of them.

The product's path, end to end, with real processes: one `uvicorn config.asgi:application`
(one worker: the seed documents plan 1,000 dashboard connections per instance), DEBUG
off; one Celery worker (prefork, concurrency 1), which runs the inbound routing task that
publishes `message.new` through channels-redis to the tenant's group; the bench database
(bench.common) and Redis database REDIS_DB, flushed first.

One tenant with a sandbox session in `silent` customer mode (routing stores and answers
nothing, so only the publish is measured) and one staff user, signed in once through the
real login page; every client sends that session cookie, as a browser tab would.

- Clients: CLIENT_PROCESSES separate processes (no Django in them) open CLIENTS sockets
  to `/ws/dashboard/` on the tenant's host, all at once, and wait for every `hello` (the
  consumer accepted the user and joined the group). Figures: sockets connected (target
  CLIENTS), the time to connect them all.
- Delay: a producer process stores MESSAGES inbound messages, one every INTERVAL
  seconds, through the real inbound service (`inbound_receive`: one SQL statement, then
  the routing task queued after commit). For each, the clock starts just before the store
  and stops when a client receives its `message.new`; a message's delay "to all" is the
  slowest of its CLIENTS deliveries. Figures: p50/p95/max of the delay to all (target
  p95 < 250 ms), p95 of single deliveries, deliveries missing (target 0).

Every process runs on this machine's one clock (time.time()).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Figure, fresh_database, health_answers, percentile, redis_database_url

ROOT = Path(__file__).resolve().parent.parent
REDIS_DB = 11
CLIENTS = 1000
CLIENT_PROCESSES = 2
MESSAGES = 40
INTERVAL = 0.25
CONNECT_TIMEOUT_SECONDS = 120
RECEIVE_GRACE_SECONDS = 5.0
START_TIMEOUT_SECONDS = 60
TARGET_CLIENTS = f">= {CLIENTS}"
TARGET_P95 = "< 250 ms"
PASSWORD = "Bench-pass-1234!"
SLUG = "ws-bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- client processes (no Django here) -------------------------------------------------


async def _clients(port, host, cookie, count, ready, go_home, results_at):
    """Open `count` sockets, report when all said hello, then note when each hears each
    `message.new`, until `go_home` is set."""
    from websockets.asyncio.client import connect

    heard: dict[str, list[float]] = {}
    sockets = []

    async def one():
        ws = await connect(
            f"ws://{host}:{port}/ws/dashboard/",
            additional_headers={"Cookie": f"sessionid={cookie}"},
            origin=f"http://{host}:{port}",
            host="127.0.0.1",  # the tenant's name is in the Host header, not in DNS
            port=port,
            open_timeout=CONNECT_TIMEOUT_SECONDS,
            ping_interval=None,
            max_queue=None,
        )
        hello = json.loads(await ws.recv())
        if hello.get("type") != "hello":
            raise RuntimeError(f"expected hello, got {hello}")
        sockets.append(ws)
        return ws

    async def listen(ws):
        try:
            async for raw in ws:
                at = time.time()
                event = json.loads(raw)
                if event.get("type") == "message.new":
                    heard.setdefault(event["message"]["id"], []).append(at)
        except Exception:  # closed at the end
            return

    # Connect in waves, as browsers do when a thousand screens load.
    opened = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    failures = [repr(item) for item in opened if isinstance(item, BaseException)]
    listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
    ready.put((len(sockets), failures[:3]))
    while not go_home.is_set():
        await asyncio.sleep(0.1)
    await asyncio.sleep(RECEIVE_GRACE_SECONDS)
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*listeners, return_exceptions=True)
    results_at.put(heard)


def _client_process(port, host, cookie, count, ready, go_home, results):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 256)), hard))
    asyncio.run(_clients(port, host, cookie, count, ready, go_home, results))


# --- the producer (a fresh Django on the bench database and Redis) ----------------------


def _producer_process(session_id: int, messages: int, interval: float, results) -> None:
    try:
        results.put(_produce(session_id, messages, interval))
    except BaseException:
        import traceback

        results.put({"error": traceback.format_exc()})


def _produce(session_id: int, messages: int, interval: float) -> dict[str, float]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    import uuid

    from django.utils import timezone

    from messaging.inbound import inbound_receive
    from sessions_app.models import WhatsAppSession
    from sessions_app.providers.base import InboundMessage

    session = WhatsAppSession.objects.select_related("tenant").get(pk=session_id)
    started: dict[str, float] = {}
    for number in range(messages):
        phone = f"+97250{number % 50:07d}"
        inbound = InboundMessage(
            provider_message_id=f"bench-{uuid.uuid4().hex}",
            chat=phone,
            sender=phone,
            timestamp=timezone.now(),
            push_name=f"Customer {number % 50}",
            text=f"message {number}",
        )
        at = time.time()
        result = inbound_receive(session=session, inbound=inbound)
        started[str(result.message.public_id)] = at
        time.sleep(interval)
    return started


# --- processes of the product ----------------------------------------------------------


def _child_env() -> dict[str, str]:
    redis_url = os.environ["REDIS_URL"]
    return {
        **os.environ,
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
    }


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _raise_fd_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, CLIENTS * 2 + 512)), hard))


def _start_server(port: int, host: str, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--lifespan", "off",
               "--no-access-log", "--port", str(port), "--backlog", "4096"]  # fmt: skip
    server = subprocess.Popen(
        command, cwd=ROOT, env=_child_env(), stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=_raise_fd_limit,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not health_answers(port, host):
        if server.poll() is not None or time.monotonic() > deadline:
            _stop(server)
            log.seek(0)
            raise RuntimeError(f"uvicorn did not answer on port {port}:\n{log.read()[-2000:]}")
        time.sleep(0.2)
    return server


def _start_worker(log) -> subprocess.Popen:
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "WARNING",
               "--concurrency", "1", "--hostname", f"ws-bench-{os.getpid()}@%h"]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env=_child_env(), stdout=log, stderr=subprocess.STDOUT
    )


def _sign_in(port: int, host: str, email: str) -> str:
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": host}) as client:
        client.get("/login/").raise_for_status()
        answer = client.post(
            "/login/",
            data={"username": email, "password": PASSWORD,
                  "csrfmiddlewaretoken": client.cookies["csrftoken"]},
        )  # fmt: skip
        if answer.status_code != 302 or "sessionid" not in client.cookies:
            raise RuntimeError(f"the bench user could not sign in: {answer.status_code}")
        return client.cookies["sessionid"]


def _worker_ready(redis_url: str, timeout: float = 60) -> None:
    """Wait until the Celery worker consumes: a probe task is taken off the queue."""
    import redis

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(key.startswith(b"_kombu.binding") for key in client.keys("_kombu.binding*")):
            return
        time.sleep(0.5)
    raise RuntimeError("the Celery worker did not start")


# --- the benchmark ---------------------------------------------------------------------


def run() -> list[Figure]:
    names = ("REDIS_URL", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    given = {name: os.environ.get(name) for name in names}
    redis_url = redis_database_url(REDIS_DB)
    # Every child (web server, worker, producer) reads these: all on the bench's Redis.
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ[name] = redis_url
    try:
        return _run()
    finally:  # the benchmarks after this one get what they were given
        for name, value in given.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run() -> list[Figure]:
    import redis

    fresh_database()  # DATABASE_URL now names the bench database, for every child
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django_tenants.utils import schema_context

    from sessions_app.services import session_create
    from tenants.services import NewTenant, tenant_create

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    tenant = tenant_create(
        NewTenant(slug=SLUG, name="Websocket bench", owner_email=f"owner@{SLUG}.example",
                  owner_password=PASSWORD)
    )  # fmt: skip
    session = session_create(tenant=tenant, name="Front desk", provider="sandbox")
    with schema_context(tenant.schema_name):
        get_user_model().objects.create_user(
            email=f"staff@{SLUG}.example", password=PASSWORD, role="staff"
        )
    connections.close_all()
    host = f"{SLUG}.{settings.BASE_DOMAIN}"
    port = _free_port()
    spawn = multiprocessing.get_context("spawn")

    with tempfile.TemporaryFile("w+") as server_log, tempfile.TemporaryFile("w+") as worker_log:
        server = _start_server(port, host, server_log)
        worker = _start_worker(worker_log)
        clients: list = []
        try:
            _worker_ready(os.environ["REDIS_URL"])
            cookie = _sign_in(port, host, f"staff@{SLUG}.example")
            ready, results, go_home = spawn.Queue(), spawn.Queue(), spawn.Event()
            share = CLIENTS // CLIENT_PROCESSES
            began = time.monotonic()
            clients = [
                spawn.Process(
                    target=_client_process,
                    args=(port, host, cookie, share, ready, go_home, results),
                )
                for _ in range(CLIENT_PROCESSES)
            ]
            for process in clients:
                process.start()
            connected, failures = 0, []
            for _ in clients:
                count, problems = ready.get(timeout=CONNECT_TIMEOUT_SECONDS + 30)
                connected += count
                failures += problems
            connect_seconds = time.monotonic() - began
            print(f"  {connected} sockets connected in {connect_seconds:.1f} s", flush=True)
            if failures:
                print(f"  some sockets failed, e.g. {failures[0]}", flush=True)

            produced = spawn.Queue()
            producer = spawn.Process(
                target=_producer_process, args=(session.pk, MESSAGES, INTERVAL, produced)
            )
            producer.start()
            started = produced.get(timeout=MESSAGES * INTERVAL + 120)
            producer.join()
            if "error" in started:
                raise RuntimeError(f"the producer failed:\n{started['error']}")
            go_home.set()
            heard: dict[str, list[float]] = {}
            for _ in clients:
                for message_id, times in results.get(timeout=60).items():
                    heard.setdefault(message_id, []).extend(times)
            for process in clients:
                process.join(timeout=30)
        finally:
            for process in clients:
                if process.is_alive():
                    process.terminate()
            _stop(worker)
            _stop(server)
            for name, log in (("server", server_log), ("worker", worker_log)):
                log.seek(0)
                lines = log.readlines()
                problems = [n for n, line in enumerate(lines) if "Traceback" in line]
                if problems:
                    first = "".join(lines[problems[0] : problems[0] + 90])
                    print(f"  the {name} logged {len(problems)} tracebacks; the first:")
                    print(first[-4500:], flush=True)

    to_all, single, missing = [], [], 0
    for message_id, at in started.items():
        times = heard.get(message_id, [])
        missing += connected - len(times)
        if times:
            single += [(t - at) * 1000 for t in times]
            if len(times) >= connected:
                to_all.append((max(times) - at) * 1000)
    print(
        f"  {len(started)} messages, {len(to_all)} reached every socket; "
        f"{sum(len(t) for t in heard.values())} deliveries",
        flush=True,
    )
    nan = float("nan")
    return [
        Figure("dashboard sockets connected at once (one web worker)", connected, "",
               TARGET_CLIENTS),
        Figure(f"time to connect {connected} sockets", connect_seconds, "s"),
        Figure("stored inbound message -> all sockets: p50", percentile(to_all, 0.5)
               if to_all else nan, "ms"),
        Figure("stored inbound message -> all sockets: p95", percentile(to_all, 0.95)
               if to_all else nan, "ms", TARGET_P95),
        Figure("stored inbound message -> all sockets: max", max(to_all) if to_all else nan,
               "ms"),
        Figure("stored inbound message -> one socket: p95", percentile(single, 0.95)
               if single else nan, "ms"),
        Figure("deliveries missing", missing, "", "0"),
    ]  # fmt: skip
