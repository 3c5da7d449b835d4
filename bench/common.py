"""What every benchmark shares: a throwaway database, a stopwatch and its figures.

A benchmark never touches the developer's data: `fresh_database()` points Django at
the database `bench_whatsapp_platform` on the same server as DATABASE_URL, dropped and
recreated, then migrated with `migrate_platform` exactly as a deploy would.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

# BENCH_DATABASE_NAME lets two benches run side by side on one server.
BENCH_DATABASE_NAME = os.environ.get("BENCH_DATABASE_NAME", "bench_whatsapp_platform")


@dataclass(frozen=True)
class Figure:
    """One measured value, printed in the final table next to its target."""

    name: str
    value: float
    unit: str
    target: str = ""

    def formatted_value(self) -> str:
        if self.unit == "s":
            return f"{self.value:.3f} s"
        if self.unit == "ms":
            return f"{self.value:.1f} ms"
        if self.unit in ("req/s", "MiB", "%"):
            return f"{self.value:.1f} {self.unit}"
        return f"{self.value:g} {self.unit}".strip()


def bench_database_url(url: str) -> str:
    """`url` with its database name replaced by the bench database's."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{BENCH_DATABASE_NAME}"))


def _recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        # FORCE ends connections a previous benchmark's server may have left behind.
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DATABASE_NAME}"')


def fresh_database() -> None:
    """Give the calling benchmark an empty, migrated bench database and set Django up.

    May be called once per benchmark: the first call sets Django up, later calls close
    its connections before the database is dropped under them.
    """
    import django
    from django.apps import apps

    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("DATABASE_URL is not set: run the benchmarks with `make bench`.")
    url = bench_database_url(os.environ["DATABASE_URL"])
    os.environ["DATABASE_URL"] = url  # before django.setup(): settings read it once
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # no "tenant created" line per tenant
    if apps.ready:
        from django.db import connections

        connections.close_all()
    _recreate_database(url)
    django.setup()

    from django.core.management import call_command

    call_command("migrate_platform", verbosity=0)


class Stopwatch:
    seconds: float = 0.0


def redis_database_url(database: int, url: str | None = None) -> str:
    """REDIS_URL (or `url`) pointing at Redis database `database`: each benchmark flushes
    and uses one of its own."""
    parts = urlsplit(url or os.environ["REDIS_URL"])
    return urlunsplit(parts._replace(path=f"/{database}"))


def wait_for(condition, *, timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll `condition` until it is true; the seconds that took. RuntimeError after
    `timeout` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def health_answers(port: int, host: str) -> bool:
    """Does a web server on 127.0.0.1:`port` answer /health/ (any status) for `host`?"""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health/", headers={"Host": host})
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def celery_publish_to(url: str) -> None:
    """From now on, tasks this process queues go to the broker at `url` (a benchmark's
    own Redis database), where that benchmark's workers listen. Without it they go where
    the settings said when the first benchmark set Django up."""
    from config.celery import app

    app.conf.broker_url = url
    if app._pool is not None:  # connections to the old broker, built on first use
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def timed() -> Iterator[Stopwatch]:
    """`with timed() as watch: ...` then `watch.seconds` is the block's wall time."""
    watch = Stopwatch()
    started = time.perf_counter()
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` (0..1) of `values` fall."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) so far of a process and all its children (uvicorn and
    its workers, a Celery worker and its pool); 0 for one that is gone."""
    import psutil

    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total
