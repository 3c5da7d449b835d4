"""Tenants: provisioning, isolation between schemas, the one-step command, suspension."""

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context, schema_exists

from tenants.host_cache import tenant_for_host
from tenants.models import Domain, Tenant
from tenants.services import NewTenant, tenant_create, tenant_reactivate, tenant_suspend
from tests.conftest import (
    OWNER_PASSWORD,
    ROOT,
    free_port,
    host_of,
    login,
    owner_email,
    process_env,
    wait_until,
)

User = get_user_model()


def test_rows_written_in_one_tenant_are_invisible_from_the_other(make_tenant):
    # Given two tenants
    pizza, sushi = make_tenant(), make_tenant()
    # When pizza gets a staff member
    with schema_context(pizza.schema_name):
        User.objects.create_user(email="cook@pizza.example.com", password=OWNER_PASSWORD)
    # Then sushi's schema does not see pizza's rows, and pizza sees only its own
    with schema_context(sushi.schema_name):
        assert list(User.objects.values_list("email", flat=True)) == [
            f"owner@{sushi.slug}.example.com"
        ]
        assert not User.objects.filter(email="cook@pizza.example.com").exists()
    with schema_context(pizza.schema_name):
        assert set(User.objects.values_list("email", flat=True)) == {
            f"owner@{pizza.slug}.example.com",
            "cook@pizza.example.com",
        }


def test_a_prepared_statement_never_answers_from_another_tenants_schema(make_tenant):
    # Prepared statements are on (config/settings.py): the same query, run many times on
    # one connection while it switches between tenants, is prepared once...
    assert connection.settings_dict["OPTIONS"].get("prepare_threshold") is not None
    pizza, sushi = make_tenant(), make_tenant()
    with schema_context(pizza.schema_name):
        User.objects.create_user(email="cook@pizza.example.com", password=OWNER_PASSWORD)
    expected = {
        pizza.schema_name: {f"owner@{pizza.slug}.example.com", "cook@pizza.example.com"},
        sushi.schema_name: {f"owner@{sushi.slug}.example.com"},
    }
    with connection.cursor():
        pid = connection.connection.info.backend_pid
    for _ in range(5):
        for schema, emails in expected.items():
            with schema_context(schema):
                assert set(User.objects.values_list("email", flat=True)) == emails
    # ...and each run answered from the schema of the moment, on that one connection.
    with connection.cursor() as cursor:
        assert connection.connection.info.backend_pid == pid
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ['SELECT "dashboard_user"."email"%FROM "dashboard_user"'],
        )
        assert cursor.fetchone()[0] >= 1


def test_tenant_create_makes_schema_domain_and_owner(make_tenant):
    tenant = make_tenant(name="Pizza Roma", timezone="Europe/Rome", language="en")

    assert schema_exists(tenant.schema_name)
    assert Domain.objects.get(tenant=tenant).domain == host_of(tenant)
    with schema_context(tenant.schema_name):
        owner = User.objects.get()
        assert owner.role == User.Role.OWNER
        assert owner.check_password(OWNER_PASSWORD)
    assert (tenant.timezone, tenant.language) == ("Europe/Rome", "en")


def test_hyphenated_slug_gets_a_valid_schema_name(make_tenant):
    tenant = make_tenant(slug="pizza-roma-hyphen")
    assert tenant.schema_name == "pizza_roma_hyphen"
    assert Domain.objects.get(tenant=tenant).domain == "pizza-roma-hyphen.localhost"


@pytest.mark.parametrize(
    ("slug", "problem"),
    [("ab", "slug"), ("Pizza", "slug"), ("admin", "slug"), ("pizza-", "slug"), ("9lives", "slug")],
)
def test_invalid_slugs_are_refused_before_anything_is_written(committed_db, slug, problem):
    with pytest.raises(ValidationError) as error:
        tenant_create(
            NewTenant(
                slug=slug, name="X", owner_email="o@x.example.com", owner_password=OWNER_PASSWORD
            )
        )
    assert problem in error.value.message_dict
    assert not Tenant.objects.filter(slug=slug).exists()


def test_every_problem_is_reported_at_once(committed_db):
    with pytest.raises(ValidationError) as error:
        tenant_create(
            NewTenant(
                slug="ok-slug-x", name=" ", owner_email="not-an-email", owner_password="123",
                timezone="Mars/Olympus", language="fr",
            )
        )  # fmt: skip
    assert set(error.value.message_dict) == {
        "name", "owner_email", "owner_password", "timezone", "language"
    }  # fmt: skip


def test_taken_slug_is_refused(make_tenant):
    tenant = make_tenant()
    with pytest.raises(ValidationError, match="already taken"):
        make_tenant(slug=tenant.slug)


def test_a_failure_midway_leaves_no_tenant_and_no_schema(committed_db, monkeypatch):
    def broken_create_owner(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(User.objects), "create_owner", broken_create_owner)
    with pytest.raises(RuntimeError):
        tenant_create(
            NewTenant(
                slug="half-made", name="Half", owner_email="o@half.example.com",
                owner_password=OWNER_PASSWORD,
            )
        )  # fmt: skip
    assert not Tenant.objects.filter(slug="half-made").exists()
    assert not Domain.objects.filter(domain="half-made.localhost").exists()
    assert not schema_exists("half_made")


def test_tenant_create_command_creates_everything_in_one_step(committed_db, capsys):
    try:
        call_command(
            "tenant_create", "--slug", "cmd-pizza", "--name", "Pizza Roma",
            "--owner-email", "owner@cmd-pizza.example.com", "--owner-password", OWNER_PASSWORD,
        )  # fmt: skip
        output = capsys.readouterr().out
        assert "http://cmd-pizza.localhost:8000/" in output
        assert OWNER_PASSWORD not in output
        tenant = Tenant.objects.get(slug="cmd-pizza")
        assert tenant.name == "Pizza Roma"
        with schema_context(tenant.schema_name):
            assert User.objects.get().email == "owner@cmd-pizza.example.com"
    finally:
        Tenant.objects.filter(slug="cmd-pizza").first().delete(force_drop=True)


def test_tenant_create_command_prints_a_generated_password_once(committed_db, capsys):
    try:
        call_command(
            "tenant_create",
            "--slug",
            "cmd-gen",
            "--name",
            "Gen",
            "--owner-email",
            "o@gen.example.com",
        )
        output = capsys.readouterr().out
        password = output.split("password:")[1].split()[0]
        tenant = Tenant.objects.get(slug="cmd-gen")
        with schema_context(tenant.schema_name):
            assert User.objects.get().check_password(password)
    finally:
        Tenant.objects.filter(slug="cmd-gen").first().delete(force_drop=True)


def test_tenant_create_command_explains_bad_input(committed_db):
    with pytest.raises(CommandError, match="slug"):
        call_command(
            "tenant_create", "--slug", "x", "--name", "X", "--owner-email", "o@x.example.com",
            "--owner-password", OWNER_PASSWORD,
        )  # fmt: skip


def test_suspended_tenant_dashboard_api_and_webhooks_refuse_clearly(make_tenant):
    tenant = make_tenant(name="Suspended Sushi")
    tenant_suspend(tenant=tenant, reason="unpaid")
    client = Client(HTTP_HOST=host_of(tenant))

    page = client.get("/login/")
    assert page.status_code == 403
    assert "Suspended Sushi" in page.content.decode() and "suspended" in page.content.decode()

    for path in ("/api/v1/messages", "/webhooks/twilio/"):
        response = client.post(path, data={})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "tenant_suspended"


def test_the_host_is_looked_up_once_and_a_suspension_still_applies_at_once(make_tenant):
    # Given a tenant whose login page was served once
    tenant = make_tenant(name="Cached Kebab")
    client = Client(HTTP_HOST=host_of(tenant))
    assert client.get("/login/").status_code == 200

    # When it is served again, the host's tenant comes from the process's cache
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/login/").status_code == 200
    assert not [q for q in queries.captured_queries if "tenants_domain" in q["sql"]]

    # Then a suspension and a reactivation still take effect at once in this process
    tenant_suspend(tenant=tenant, reason="unpaid")
    assert client.get("/login/").status_code == 403
    tenant_reactivate(tenant=tenant)
    assert client.get("/login/").status_code == 200
    # and each caller gets a copy: changing one request's tenant changes no other's
    first = tenant_for_host(host_of(tenant))
    first.name = "Changed in one request"
    assert tenant_for_host(host_of(tenant)).name == "Cached Kebab"


def test_active_tenant_login_page_renders(make_tenant):
    tenant = make_tenant(name="Falafel Haifa")
    response = Client(HTTP_HOST=host_of(tenant)).get("/login/")
    assert response.status_code == 200
    assert "Falafel Haifa" in response.content.decode()


def test_unknown_host_gets_a_clear_404(committed_db):
    response = Client(HTTP_HOST="nobody.localhost").get("/login/")
    assert response.status_code == 404
    assert "nobody.localhost" in response.content.decode()
    api = Client(HTTP_HOST="nobody.localhost").get("/api/v1/messages")
    assert api.json()["error"]["code"] == "unknown_host"


def test_dashboard_needs_login_and_shows_the_tenant(make_tenant):
    tenant = make_tenant(name="Shawarma Akko")
    client = Client(HTTP_HOST=host_of(tenant))
    assert client.get("/").status_code == 302
    with schema_context(tenant.schema_name):
        assert client.login(email=f"owner@{tenant.slug}.example.com", password=OWNER_PASSWORD)
    response = client.get("/")
    assert response.status_code == 200
    assert "Shawarma Akko" in response.content.decode()


def test_another_tenants_session_cookie_is_worthless(make_tenant):
    pizza, sushi = make_tenant(), make_tenant()
    pizza_client = Client(HTTP_HOST=host_of(pizza))
    with schema_context(pizza.schema_name):
        assert pizza_client.login(email=f"owner@{pizza.slug}.example.com", password=OWNER_PASSWORD)
    assert pizza_client.get("/").status_code == 200
    cookie = pizza_client.cookies["sessionid"].value

    sushi_client = Client(HTTP_HOST=host_of(sushi))
    sushi_client.cookies["sessionid"] = cookie
    assert sushi_client.get("/").status_code == 302  # back to the login page


# --- pooled connections ---------------------------------------------------------------


@pytest.fixture
def one_connection_web_server(committed_db, process_logs):
    """The real web server with a pool of ONE connection: every request, whatever its
    tenant, runs on the PostgreSQL connection the request before it used. Yields its URL
    and the connection's application_name (to find it in pg_stat_activity)."""
    port, name = free_port(), f"pool-isolation-{uuid.uuid4().hex[:8]}"
    env = process_env()
    env.update(
        DATABASE_URL=f"{env['DATABASE_URL']}?application_name={name}",
        DATABASE_POOL_MAX_SIZE="1",
    )
    log_path = process_logs / f"{name}.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--lifespan", "off", "--no-access-log"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            if server.poll() is not None:
                raise AssertionError(f"the web server exited:\n{log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{url}/health/", timeout=2).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        try:
            wait_until(answers, timeout=60, what="the one-connection web server")
            yield url, name
        finally:
            server.terminate()
            server.wait(timeout=20)


def test_a_pooled_connection_never_serves_one_tenant_in_anothers_schema(
    make_tenant, one_connection_web_server
):
    # Given two tenants, each signed in through a server whose pool holds one connection
    url, connection_name = one_connection_web_server
    pizza, sushi = make_tenant(), make_tenant()
    emails = {tenant.pk: owner_email(tenant) for tenant in (pizza, sushi)}
    cookies = {
        tenant.pk: login(url, tenant, email=emails[tenant.pk]).cookies["sessionid"]
        for tenant in (pizza, sushi)
    }

    # When both tenants' dashboards are requested, interleaved and concurrently
    def dashboard(number: int):
        tenant = (pizza, sushi)[number % 2]
        response = httpx.get(
            f"{url}/",
            headers={"Host": host_of(tenant), "Cookie": f"sessionid={cookies[tenant.pk]}"},
            timeout=30,
        )
        return tenant, response

    with ThreadPoolExecutor(8) as threads:
        answers = list(threads.map(dashboard, range(120)))

    # Then each was answered from its own schema only: the session and the user (rows of
    # the tenant's schema) were found, and the other tenant's user never shows
    for tenant, response in answers:
        other = sushi if tenant is pizza else pizza
        assert response.status_code == 200, (tenant.slug, response.status_code)
        page = response.text
        assert emails[tenant.pk] in page and tenant.name in page
        assert emails[other.pk] not in page and other.name not in page
    # and each login's session row was written to its own tenant's schema
    for tenant, other in ((pizza, sushi), (sushi, pizza)):
        with schema_context(tenant.schema_name):
            from django.contrib.sessions.models import Session

            assert Session.objects.filter(session_key=cookies[tenant.pk]).exists()
            assert not Session.objects.filter(session_key=cookies[other.pk]).exists()
    # all through one PostgreSQL connection, reused by both tenants in turn
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [connection_name],
        )
        assert cursor.fetchone()[0] >= 1


def test_a_database_error_while_resolving_the_tenant_is_a_503_never_a_500(make_tenant, monkeypatch):
    # Given a database that fails (too many clients, no free pooled connection...) while
    # the host's tenant is looked up, before any view runs
    from django.db import OperationalError

    from tenants.middleware import TenantMiddleware

    tenant = make_tenant()

    def unavailable(self, domain_model, hostname):
        raise OperationalError("sorry, too many clients already")

    monkeypatch.setattr(TenantMiddleware, "get_tenant", unavailable)
    client = Client(HTTP_HOST=host_of(tenant), raise_request_exception=False)

    # Then machines (webhooks, the API) get a JSON 503 with Retry-After
    for path in ("/webhooks/twilio/", "/api/v1/messages"):
        response = client.post(path, data={})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "unavailable"
        assert int(response["Retry-After"]) > 0
    # and people a page that says so
    page = client.get("/login/")
    assert page.status_code == 503 and int(page["Retry-After"]) > 0
    assert "unavailable" in page.content.decode()
