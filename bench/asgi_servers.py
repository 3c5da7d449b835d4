"""Daphne against uvicorn serving this app: the figures behind choosing uvicorn (devrun.py).

Each server runs as its own process with one worker, on the bench database, with
DEBUG off as in production. It answers `GET /login/` for the tenant `bench`: host
resolution, a database query and a rendered template, a realistic page. The load comes
from LOAD_PROCESSES separate processes holding CONCURRENCY keep-alive connections in
all, speaking raw HTTP/1.1 over asyncio streams so that the client costs little next to
the server. Figures per server: requests per second, p50 and p95 latency, errors, and
the server's peak RSS. Target: uvicorn does at least as well as daphne; errors are 0.
"""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import psutil

from bench.common import Figure, fresh_database, percentile

SERVERS = {
    "uvicorn": ["-m", "uvicorn", "config.asgi:application", "--lifespan", "off",
                "--no-access-log", "--workers", "1", "--port", "{port}"],
    "daphne": ["-m", "daphne", "-p", "{port}", "config.asgi:application"],
}  # fmt: skip
BASELINE = "daphne"
HOST = "bench.localhost"
PATH = "/login/"
CONCURRENCY = 32
LOAD_PROCESSES = 2
DURATION_SECONDS = 8.0
WARMUP_REQUESTS = 50
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0

REQUEST = f"GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


# --- the load generator (runs in its own processes)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status and whether the connection stays open."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readline()  # the empty line after the last chunk
    else:
        raise ValueError("response without a length")
    return status, headers.get("connection") != "close"


async def _client(port: int, stop_at: float) -> tuple[list[float], int]:
    """One connection sending requests back to back until `stop_at` (epoch seconds)."""
    latencies: list[float] = []
    errors = 0
    writer = None
    while time.time() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.perf_counter()
            writer.write(REQUEST)
            status, keep_alive = await _read_response(reader)
            if time.time() <= stop_at:  # count only what finished inside the window
                latencies.append(time.perf_counter() - started)
                errors += status != 200
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            errors += 1
            keep_alive = False
        if not keep_alive and writer is not None:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()
    return latencies, errors


async def _load(port: int, connections: int, start_at: float, stop_at: float):
    await asyncio.sleep(max(0.0, start_at - time.time()))
    return await asyncio.gather(*(_client(port, stop_at) for _ in range(connections)))


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_seconds: float = 0.0  # what generating the load cost

    def __add__(self, other: Load) -> Load:
        return Load(
            self.latencies + other.latencies,
            self.errors + other.errors,
            self.cpu_seconds + other.cpu_seconds,
        )


def _load_process(port: int, connections: int, start_at: float, stop_at: float) -> Load:
    """Entry point of one load process."""
    cpu_before = time.process_time()
    results = asyncio.run(_load(port, connections, start_at, stop_at))
    return Load(
        latencies=[latency for client_latencies, _ in results for latency in client_latencies],
        errors=sum(errors for _, errors in results),
        cpu_seconds=time.process_time() - cpu_before,
    )


# --- the servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(port: int) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", PATH, headers={"Host": HOST})
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


class PeakRss(threading.Thread):
    """Samples the resident memory of a process and its children until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                processes = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in processes))
            except psutil.Error:
                return


def _start(name: str, port: int, log) -> subprocess.Popen:
    command = [sys.executable, *(arg.format(port=port) for arg in SERVERS[name])]
    env = {**os.environ, "DEBUG": "false", "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while _status(port) != 200:
        if server.poll() is not None or time.monotonic() > deadline:
            _stop(server)
            log.seek(0)
            raise RuntimeError(f"{name} did not answer {PATH} with 200:\n{log.read()[-2000:]}")
        time.sleep(0.2)
    return server


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        print(f"  server {server.pid} ignored SIGTERM; killing it", flush=True)
        server.kill()
        server.wait()


def _drive(port: int, pool) -> Load:
    """CONCURRENCY connections for DURATION_SECONDS, shared by the load processes."""
    start_at = time.time() + 1.0  # lets every load process get ready
    stop_at = start_at + DURATION_SECONDS
    share = CONCURRENCY // LOAD_PROCESSES
    loads = pool.starmap(_load_process, [(port, share, start_at, stop_at)] * LOAD_PROCESSES)
    return sum(loads, Load())


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _measure(name: str, pool) -> list[Figure]:
    port = _free_port()
    with tempfile.TemporaryFile("w+") as log:
        server = _start(name, port, log)
        rss = PeakRss(server.pid)
        rss.start()
        try:
            for _ in range(WARMUP_REQUESTS):
                _status(port)
            server_cpu = _cpu_seconds(server.pid)
            load = _drive(port, pool)
            server_cpu = _cpu_seconds(server.pid) - server_cpu
        finally:
            _stop(server)
            rss.done.set()
            rss.join()

    latencies = sorted(load.latencies)
    print(
        f"  {name}: {len(latencies)} requests; server CPU {server_cpu / DURATION_SECONDS:.0%}"
        f" of a core, load generator CPU {load.cpu_seconds / DURATION_SECONDS:.0%} of a core",
        flush=True,
    )

    def target(relation: str) -> str:
        return "(baseline)" if name == BASELINE else f"{relation} {BASELINE}"

    return [
        Figure(f"{name} requests/second", len(latencies) / DURATION_SECONDS, "req/s", target(">=")),
        Figure(f"{name} p50 latency", percentile(latencies, 0.50) * 1000, "ms", target("<=")),
        Figure(f"{name} p95 latency", percentile(latencies, 0.95) * 1000, "ms", target("<=")),
        Figure(f"{name} errors", load.errors, "", "0"),
        Figure(f"{name} peak RSS", rss.peak / 2**20, "MiB", target("<=")),
    ]


def run() -> list[Figure]:
    fresh_database()
    from django.db import connections

    from tenants.services import NewTenant, tenant_create

    tenant_create(
        NewTenant(
            slug=HOST.split(".")[0],
            name="Bench business",
            owner_email="owner@bench.example",
            owner_password="Bench-pass-1234!",
        )
    )
    connections.close_all()  # the servers open their own

    figures: list[Figure] = []
    with multiprocessing.get_context("spawn").Pool(LOAD_PROCESSES) as pool:
        for name in SERVERS:
            figures += _measure(name, pool)
    return figures
