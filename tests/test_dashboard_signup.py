"""Sign-up on the public host (validation, subdomain availability, landing signed in on
the new dashboard) and password reset by email, through Django's test client against
the real database and Redis."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core import mail
from django.db import connection
from django.test import Client

from tenants.models import Tenant
from tests.conftest import OWNER_PASSWORD, host_of, owner_email, tenant_drop

PASSWORD = "Falafel-Tuesday-81!"


@pytest.fixture
def public(committed_db):
    return Client(HTTP_HOST=settings.BASE_DOMAIN)


@pytest.fixture
def signed_up(committed_db):
    """Tenants a test signs up: dropped afterwards."""
    slugs: list[str] = []
    yield slugs
    connection.set_schema_to_public()
    for tenant in Tenant.objects.filter(slug__in=slugs):
        tenant_drop(tenant)


def new_slug() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


def test_the_signup_page_is_on_the_public_host_only(public, make_tenant):
    assert public.get("/signup/").status_code == 200
    tenant = make_tenant()
    assert Client(HTTP_HOST=host_of(tenant)).get("/signup/").status_code == 404


def test_subdomain_availability_is_checked_as_you_type(public, make_tenant):
    taken = make_tenant()
    free = public.get("/signup/check/", {"slug": new_slug()}).json()
    assert free["available"] is True and free["errors"] == []
    busy = public.get("/signup/check/", {"slug": taken.slug}).json()
    assert busy["available"] is False and "already taken" in busy["errors"][0]
    reserved = public.get("/signup/check/", {"slug": "admin"}).json()
    assert reserved["available"] is False and "reserved" in reserved["errors"][0]
    malformed = public.get("/signup/check/", {"slug": "-x"}).json()
    assert malformed["available"] is False


def test_signup_shows_every_problem_and_creates_nothing(public, make_tenant):
    taken = make_tenant()
    response = public.post(
        "/signup/",
        {"name": "", "slug": taken.slug, "email": "not-an-email", "password": "123",
         "language": "he"},
    )  # fmt: skip
    assert response.status_code == 400
    page = response.content.decode()
    assert "already taken" in page
    assert "Enter a valid email address" in page or "כתובת" in page
    connection.set_schema_to_public()
    assert not Tenant.objects.filter(name="").exists()


def test_signup_password_rules_come_from_django(public, signed_up):
    slug = new_slug()
    response = public.post(
        "/signup/",
        {"name": "Falafel", "slug": slug, "email": "me@example.com", "password": "password",
         "language": "en"},
        HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    assert response.status_code == 400
    assert "too common" in response.content.decode()
    assert not Tenant.objects.filter(slug=slug).exists()


def test_signup_lands_signed_in_on_the_new_dashboard(public, signed_up):
    slug = new_slug()
    signed_up.append(slug)
    response = public.post(
        "/signup/",
        {"name": "Falafel King", "slug": slug.upper(), "email": "Owner@Falafel.example",
         "password": PASSWORD, "language": "en"},
    )  # fmt: skip
    assert response.status_code == 302, response.content[:1000]
    link = urlsplit(response["Location"])
    assert link.hostname == f"{slug}.{settings.BASE_DOMAIN}"
    assert link.path.startswith("/welcome/")
    connection.set_schema_to_public()
    tenant = Tenant.objects.get(slug=slug)
    assert tenant.name == "Falafel King" and tenant.language == "en"

    browser = Client(HTTP_HOST=link.netloc)
    landed = browser.get(link.path)
    assert landed.status_code == 302 and landed["Location"] == "/"
    assert browser.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    home = browser.get("/")
    assert home.status_code == 200
    assert "Falafel King" in home.content.decode()
    assert "owner@falafel.example" in home.content.decode()
    assert browser.get("/settings/").status_code == 200  # the new user is the owner

    # The link works once only.
    again = Client(HTTP_HOST=link.netloc).get(link.path)
    assert again.status_code == 302 and again["Location"].startswith("/login/")


def test_a_login_link_signs_nobody_in_on_another_tenants_host(public, signed_up, make_tenant):
    slug = new_slug()
    signed_up.append(slug)
    response = public.post(
        "/signup/",
        {"name": "Shawarma", "slug": slug, "email": "me@shawarma.example", "password": PASSWORD,
         "language": "he"},
    )  # fmt: skip
    path = urlsplit(response["Location"]).path
    connection.set_schema_to_public()
    other = make_tenant()
    intruder = Client(HTTP_HOST=host_of(other))
    assert intruder.get(path)["Location"].startswith("/login/")
    assert intruder.get("/").status_code == 302  # still not signed in


def test_password_reset_by_email(make_tenant):
    tenant = make_tenant()
    email = owner_email(tenant)
    client = Client(HTTP_HOST=host_of(tenant))
    assert client.get("/login/").content.decode().count("/password-reset/") == 1
    sent = client.post("/password-reset/", {"email": email.upper()})
    assert sent.status_code == 302 and sent["Location"] == "/password-reset/sent/"
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [email]
    link = re.search(r"https?://(\S+?)(/password-reset/\S+/)", mail.outbox[0].body)
    assert link[1] == host_of(tenant)  # the link goes to this tenant's own host
    form = client.get(link[2], follow=True)
    assert b"new_password1" in form.content
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": PASSWORD, "new_password2": PASSWORD}
    )
    assert done.status_code == 302 and done["Location"] == "/password-reset/done/"
    fresh = Client(HTTP_HOST=host_of(tenant))
    ok = fresh.post("/login/", {"username": email, "password": PASSWORD})
    assert ok.status_code == 302
    old = Client(HTTP_HOST=host_of(tenant)).post(
        "/login/", {"username": email, "password": OWNER_PASSWORD}
    )
    assert old.status_code == 200  # the old password no longer works


def test_password_reset_for_an_unknown_email_sends_nothing_and_says_the_same(make_tenant):
    tenant = make_tenant()
    other = make_tenant()
    client = Client(HTTP_HOST=host_of(tenant))
    # Another tenant's owner is unknown here: each tenant has its own users.
    sent = client.post("/password-reset/", {"email": owner_email(other)})
    assert sent.status_code == 302 and sent["Location"] == "/password-reset/sent/"
    assert mail.outbox == []
