"""Tenants: provisioning, isolation between schemas, the one-step command, suspension."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django_tenants.utils import schema_context, schema_exists

from tenants.models import Domain, Tenant
from tenants.services import NewTenant, tenant_create, tenant_suspend
from tests.conftest import OWNER_PASSWORD, host_of

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
