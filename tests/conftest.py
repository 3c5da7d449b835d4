"""Fixtures shared by the suite. Everything runs against real PostgreSQL and Redis.

Most tests need their rows *committed*, because the web server, the Celery worker and
the session runner they talk to are real processes with their own connections. So the
tenant fixtures commit, and clean up after themselves by dropping what they created.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django_tenants.utils import schema_context

from config.heartbeats import RUNNERS, WORKERS, heartbeats_read
from tenants.models import Tenant
from tenants.services import NewTenant, tenant_base_schema_migrate, tenant_create

pytest_plugins = ["tests.twilio_standin"]  # the `twilio_standin` fixture

# Owners' passwords and PINs are hashed hundreds of times a run: MD5 here (and in the
# child processes, through APP_ENV=test), Django's slow default everywhere else.
settings.PASSWORD_HASHERS = settings.TEST_PASSWORD_HASHERS

ROOT = Path(__file__).resolve().parent.parent
OWNER_PASSWORD = "Correct-Horse-42!"
CHILD_METRICS_DIR = Path(tempfile.mkdtemp(prefix="wa-test-metrics-"))
PROCESS_START_TIMEOUT = 60


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker):
    """Always create the test database.

    pytest-django only creates it for tests that ask for its `db` fixtures; ours commit
    through `committed_db` instead, and must never fall through to the real database.
    """
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        db_cfg = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        teardown_databases(db_cfg, verbosity=0)


@pytest.fixture(scope="session")
def platform(django_db_setup, django_db_blocker):
    """The test database, migrated, with the public tenant and the template schema."""
    from tenants.services import tenant_public_ensure

    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            database = cursor.fetchone()[0]
        assert database == settings.DATABASES["default"]["TEST"]["NAME"], (
            f"refusing to run tests against {database!r}"
        )
        tenant_public_ensure()
        tenant_base_schema_migrate()
    _empty_test_redis()
    return True


def _empty_test_redis() -> None:
    """Leases, queues and markers of an earlier run would refer to other rows with the
    same ids. The suite runs on its own Redis database (1 by default, never 0)."""
    from config.redis_client import redis_client

    client = redis_client()
    database = client.connection_pool.connection_kwargs.get("db", 0)
    assert database != 0, "run the tests on a Redis database other than 0 (see README)"
    client.flushdb()


@pytest.fixture
def committed_db(platform, django_db_blocker):
    """Database access with real commits, visible to other processes."""
    with django_db_blocker.unblock():
        yield
        connection.set_schema_to_public()


@pytest.fixture
def make_tenant(committed_db):
    """Create tenants through the real service; drop their schemas afterwards."""
    created: list[Tenant] = []

    def make(slug: str | None = None, **fields) -> Tenant:
        slug = slug or f"t{uuid.uuid4().hex[:10]}"
        # A connection that creates schema after schema gets slower with each (its
        # catalog caches grow): hundreds a run went from 0.4 s to 3 s a tenant.
        if not connection.in_atomic_block:
            connection.close()
        tenant = tenant_create(
            NewTenant(
                slug=slug,
                name=fields.pop("name", f"Business {slug}"),
                owner_email=fields.pop("owner_email", f"owner@{slug}.example.com"),
                owner_password=OWNER_PASSWORD,
                **fields,
            )
        )
        created.append(tenant)
        return tenant

    yield make
    connection.set_schema_to_public()
    for tenant in created:
        tenant_drop(tenant)


@contextmanager
def module_tenant(django_db_blocker, *, name: str = "Falafel Place"):
    """One tenant shared by a test module's tests (a schema per test would be slow),
    dropped at the end; for module-scoped fixtures."""
    with django_db_blocker.unblock():
        slug = f"m{uuid.uuid4().hex[:10]}"
        tenant = tenant_create(
            NewTenant(
                slug=slug, name=name, owner_email=f"owner@{slug}.example.com",
                owner_password=OWNER_PASSWORD,
            )
        )  # fmt: skip
        try:
            yield tenant
        finally:
            connection.set_schema_to_public()
            tenant_drop(tenant)


def tenant_drop(tenant: Tenant, *, tries: int = 5) -> None:
    """Delete a test tenant and its schema. The session's shared Celery worker may still
    be finishing one of the tenant's tasks, holding row locks that DROP SCHEMA waits for:
    PostgreSQL then ends one of the two as a deadlock. The drop is tried again."""
    for attempt in range(1, tries + 1):
        try:
            tenant.delete(force_drop=True)
            return
        except OperationalError as error:
            if attempt == tries or "deadlock" not in str(error):
                raise
            time.sleep(0.2 * attempt)


def host_of(tenant: Tenant) -> str:
    return f"{tenant.slug}.{settings.BASE_DOMAIN}"


def owner_email(tenant: Tenant) -> str:
    with schema_context(tenant.schema_name):
        from django.contrib.auth import get_user_model

        return get_user_model().objects.get(role="owner").email


# --- real processes -------------------------------------------------------------------


def process_env() -> dict[str, str]:
    """The environment for child processes: the *test* database, the same Redis."""
    from tests.twilio_standin import shared_standin  # a plugin: imported by pytest first

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "APP_ENV": "test",
        "PYTHONUNBUFFERED": "1",
        "HEARTBEAT_INTERVAL_SECONDS": "2",
        # Workers send to the Twilio stand-in, and retry failed sends within seconds.
        "TWILIO_API_BASE_URL": shared_standin().base_url,
        "OUTBOUND_RETRY_DELAYS": "0.2,0.4,0.8,1.6,3.2",
        # This run's processes count into their own folder, read by /metrics.
        "METRICS_DIR": str(CHILD_METRICS_DIR),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChildProcess:
    def __init__(self, name: str, command: list[str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=process_env(), stdout=self.log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_running(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited early:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def wait_until(condition, *, timeout: float, what: str, child: ChildProcess | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None:
            child.assert_running()
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    details = f"\n{child.name} output:\n{child.output()[-3000:]}" if child else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{details}")


@pytest.fixture(scope="session")
def process_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("process-logs")


@pytest.fixture(scope="session")
def web_server(platform, django_db_blocker, process_logs):
    """The real ASGI server (uvicorn), as `make run` starts it. Yields its base URL."""
    port = free_port()
    with django_db_blocker.unblock():
        child = ChildProcess(
            "web",
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--lifespan", "off", "--no-access-log"],
            process_logs,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/health/", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout=PROCESS_START_TIMEOUT, what="the web server", child=child)
    yield url
    child.stop()


@pytest.fixture(scope="session")
def celery_worker(platform, django_db_blocker, process_logs):
    """A real Celery worker process (prefork, as in production)."""
    with django_db_blocker.unblock():
        child = ChildProcess(
            "worker",
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "--hostname", f"test-{uuid.uuid4().hex[:6]}@%h"],
            process_logs,
        )  # fmt: skip
    name = wait_until(
        lambda: next(
            (b.name for b in heartbeats_read(WORKERS) if b.fresh and "test-" in b.name), None
        ),
        timeout=PROCESS_START_TIMEOUT,
        what="the Celery worker's heartbeat",
        child=child,
    )
    yield name
    child.stop()


@pytest.fixture
def session_runner(platform, django_db_blocker, process_logs):
    """A real session runner process (`manage.py run_sessions`)."""
    runner_name = f"test-runner-{uuid.uuid4().hex[:6]}"
    with django_db_blocker.unblock():
        child = ChildProcess(
            "sessions",
            [sys.executable, "manage.py", "run_sessions", "--name", runner_name],
            process_logs,
        )
    wait_until(
        lambda: any(b.name == runner_name and b.fresh for b in heartbeats_read(RUNNERS)),
        timeout=PROCESS_START_TIMEOUT,
        what="the session runner's heartbeat",
        child=child,
    )
    yield runner_name
    child.stop()


def login(
    base_url: str, tenant: Tenant, *, email: str, password: str = OWNER_PASSWORD
) -> httpx.Client:
    """Sign in through the real login page; returns a client holding the session cookie."""
    client = httpx.Client(base_url=base_url, headers={"Host": host_of(tenant)}, timeout=10)
    page = client.get("/login/")
    assert page.status_code == 200, page.text[:500]
    response = client.post(
        "/login/",
        data={
            "username": email,
            "password": password,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    assert response.status_code == 302, (
        f"login failed: {response.status_code} {response.text[:500]}"
    )
    assert "sessionid" in client.cookies
    return client


# --- the browser ----------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"  # Debian's package; .ci/run installs it when missing


@pytest.fixture
def browser(monkeypatch):
    """Headless Chromium through Playwright; *.localhost resolves to this machine."""
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own database
    # reads are plain synchronous calls between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # *.localhost is the loopback address, as in desktop browsers.
            args=["--no-sandbox", "--host-resolver-rules=MAP *.localhost 127.0.0.1"],
        )
        yield browser
        browser.close()
        # Database work done while Playwright's loop runs has a connection of its own
        # (Django keeps connections per context): close it, or the test database
        # cannot be dropped at the end of the run.
        connections.close_all()
