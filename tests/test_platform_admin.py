"""The public host's platform admin: operators list, create and suspend tenants."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_tenants.utils import schema_context

from tenants.models import Tenant
from tests.conftest import OWNER_PASSWORD, tenant_drop

User = get_user_model()


@pytest.fixture
def operator(committed_db):
    with schema_context("public"):
        user = User.objects.create_superuser(email="ops@example.com", password=OWNER_PASSWORD)
    client = Client(HTTP_HOST="localhost")
    assert client.login(email="ops@example.com", password=OWNER_PASSWORD)
    yield client
    with schema_context("public"):
        user.delete()


def test_operator_creates_a_tenant_with_its_owner_from_the_admin(operator):
    try:
        response = operator.post(
            "/admin/tenants/tenant/add/",
            {
                "name": "Admin Pizza", "slug": "admin-pizza", "timezone": "Asia/Jerusalem",
                "language": "he", "owner_email": "owner@admin-pizza.example.com",
                "owner_password": OWNER_PASSWORD,
            },
        )  # fmt: skip
        assert response.status_code == 302, response.content.decode()[:2000]
        tenant = Tenant.objects.get(slug="admin-pizza")
        assert tenant.domains.get().domain == "admin-pizza.localhost"
        with schema_context(tenant.schema_name):
            assert User.objects.get().check_password(OWNER_PASSWORD)
        listing = operator.get("/admin/tenants/tenant/")
        assert "Admin Pizza" in listing.content.decode()
    finally:
        for tenant in Tenant.objects.filter(slug="admin-pizza"):
            tenant_drop(tenant)


def test_admin_form_shows_validation_errors_instead_of_creating(operator):
    response = operator.post(
        "/admin/tenants/tenant/add/",
        {
            "name": "Bad", "slug": "Bad Slug", "timezone": "Asia/Jerusalem", "language": "he",
            "owner_email": "owner@bad.example.com", "owner_password": "short",
        },
    )  # fmt: skip
    assert response.status_code == 200
    body = response.content.decode()
    assert "lowercase letters" in body
    assert not Tenant.objects.filter(name="Bad").exists()


def test_operator_suspends_a_tenant_with_the_admin_action(operator, make_tenant):
    tenant = make_tenant()
    response = operator.post(
        "/admin/tenants/tenant/",
        {"action": "suspend", "_selected_action": [tenant.pk]},
    )
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert not tenant.is_active
    assert "ops@example.com" in tenant.suspended_reason


def test_tenant_owner_cannot_use_the_platform_admin(make_tenant):
    tenant = make_tenant()
    client = Client(HTTP_HOST="localhost")
    assert not client.login(email=f"owner@{tenant.slug}.example.com", password=OWNER_PASSWORD)
    assert client.get("/admin/").status_code == 302
