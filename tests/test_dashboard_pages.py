"""Dashboard pages through Django's test client against the real database and Redis:
who may open what (owner, staff, another tenant, anonymous), sessions actions, the phone
simulator, settings saving with their errors shown, the menu and the team page."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from sessions_app.models import (
    DesiredState,
    Provider,
    SandboxMessage,
    SessionCommand,
    Status,
    WhatsAppSession,
)
from sessions_app.services import session_create, session_status_set
from tests.conftest import OWNER_PASSWORD, host_of, owner_email

STAFF_PASSWORD = "Staff-Password-77!"


def signed_in(tenant, email, password=OWNER_PASSWORD) -> Client:
    """A signed-in client reading English (the default language is Hebrew)."""
    client = Client(HTTP_HOST=host_of(tenant))
    client.cookies["django_language"] = "en"
    response = client.post("/login/", {"username": email, "password": password})
    assert response.status_code == 302, response.content[:500]
    return client


def another_tenant(make_tenant):
    # A request leaves the connection in the tenant's schema; tenants are made in public.
    connection.set_schema_to_public()
    return make_tenant()


def make_staff(tenant, email="staff@example.com"):
    with schema_context(tenant.schema_name):
        return get_user_model().objects.create_user(email=email, password=STAFF_PASSWORD)


@pytest.fixture
def shop(make_tenant):
    return make_tenant(name="Pizza Roma", language="en")


@pytest.fixture
def owner(shop):
    return signed_in(shop, owner_email(shop))


@pytest.fixture
def staff(shop):
    user = make_staff(shop)
    return signed_in(shop, user.email, STAFF_PASSWORD)


@pytest.fixture
def sandbox(shop):
    return session_create(
        tenant=shop, name="Front desk", provider=Provider.SANDBOX, owner_numbers=["+972501234567"]
    )


# --- who may open what ----------------------------------------------------------------

OWNER_PAGES = ["/sessions/", "/simulator/", "/settings/", "/menu/", "/team/"]
EVERYONE_PAGES = ["/", "/orders/", "/inbox/", "/log/"]


@pytest.mark.parametrize("path", OWNER_PAGES + EVERYONE_PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(shop, path):
    response = Client(HTTP_HOST=host_of(shop)).get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("path", OWNER_PAGES)
def test_staff_are_refused_settings_keys_and_sessions(staff, path):
    response = staff.get(path)
    assert response.status_code == 403
    assert b"Only the business owner" in response.content


def test_staff_are_refused_owner_actions_too(staff, sandbox):
    response = staff.post(f"/sessions/{sandbox.public_id}/start/")
    assert response.status_code == 403
    sandbox.refresh_from_db()
    assert sandbox.desired_state == DesiredState.STOPPED


@pytest.mark.parametrize("path", EVERYONE_PAGES)
def test_staff_open_orders_inbox_and_log(staff, path):
    assert staff.get(path).status_code == 200


def test_staff_navigation_shows_only_their_pages(staff):
    page = staff.get("/").content.decode()
    assert 'href="/orders/"' in page and 'href="/inbox/"' in page and 'href="/log/"' in page
    assert 'href="/settings/"' not in page and 'href="/sessions/"' not in page


@pytest.mark.parametrize("path", OWNER_PAGES + EVERYONE_PAGES)
def test_owners_open_every_page(owner, path):
    assert owner.get(path).status_code == 200


def test_another_tenants_session_is_not_found(owner, make_tenant):
    other = another_tenant(make_tenant)
    theirs = session_create(tenant=other, name="Theirs", provider=Provider.SANDBOX)
    assert owner.get(f"/sessions/{theirs.public_id}/history/").status_code == 404
    assert owner.post(f"/sessions/{theirs.public_id}/start/").status_code == 404
    assert (
        owner.get(f"/simulator/{theirs.public_id}/messages/?phone=+972501111111").status_code == 404
    )
    theirs.refresh_from_db()
    assert theirs.desired_state == DesiredState.STOPPED


def test_another_tenants_login_does_not_open_this_dashboard(shop, make_tenant):
    other = another_tenant(make_tenant)
    client = signed_in(other, owner_email(other))
    client.defaults["HTTP_HOST"] = host_of(shop)
    assert client.get("/sessions/").status_code == 302


# --- sessions ---------------------------------------------------------------------------


def test_owner_adds_a_sandbox_session_and_starts_it(owner, shop):
    response = owner.post(
        "/sessions/add/",
        {
            "name": "Counter",
            "provider": "sandbox",
            "owner_numbers": "+972501234567, 0527654321",
            "customer_mode": "ordering",
            "humanization_profile": "fast",
            "start_now": "on",
        },
    )
    assert response.status_code == 302
    session = WhatsAppSession.objects.get(tenant=shop, name="Counter")
    assert session.desired_state == DesiredState.RUNNING
    assert session.owner_numbers == ["+972501234567", "+972527654321"]
    assert session.customer_mode == "ordering"
    page = owner.get("/sessions/").content.decode()
    assert f'data-session="{session.public_id}"' in page


def test_adding_a_session_shows_every_problem_by_field(owner, sandbox):
    response = owner.post(
        "/sessions/add/",
        {
            "name": "Front desk",
            "provider": "sandbox",
            "owner_numbers": "not a number",
            "customer_mode": "silent",
            "humanization_profile": "normal",
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "You already have a session called" in page
    assert "is not a phone number" in page
    assert WhatsAppSession.objects.filter(name="Front desk").count() == 1


def test_a_twilio_session_with_wrong_credentials_says_what_was_wrong(owner, shop, twilio_standin):
    sid, _token = twilio_standin.add_account()
    response = owner.post(
        "/sessions/add/",
        {
            "name": "Official",
            "provider": "twilio",
            "customer_mode": "silent",
            "humanization_profile": "normal",
            "twilio_account_sid": sid,
            "twilio_auth_token": "wrong-token",
            "twilio_from_number": "+14155238886",
        },
    )
    assert response.status_code == 400
    assert "Twilio did not accept this account SID and auth token" in response.content.decode()
    assert not WhatsAppSession.objects.filter(tenant=shop, name="Official").exists()


def test_a_twilio_session_with_right_credentials_is_saved_and_connected(
    owner, shop, twilio_standin
):
    sid, token = twilio_standin.add_account()
    response = owner.post(
        "/sessions/add/",
        {
            "name": "Official",
            "provider": "twilio",
            "customer_mode": "silent",
            "humanization_profile": "normal",
            "twilio_account_sid": sid,
            "twilio_auth_token": token,
            "twilio_from_number": "+14155238886",
            "start_now": "on",
        },
    )
    assert response.status_code == 302
    session = WhatsAppSession.objects.get(tenant=shop, name="Official")
    assert session.status == Status.CONNECTED
    assert token not in owner.get("/sessions/").content.decode()


def test_start_stop_restart_and_logout_buttons(owner, sandbox):
    assert owner.post(f"/sessions/{sandbox.public_id}/start/").status_code == 302
    sandbox.refresh_from_db()
    assert sandbox.desired_state == DesiredState.RUNNING
    owner.post(f"/sessions/{sandbox.public_id}/stop/")
    sandbox.refresh_from_db()
    assert sandbox.desired_state == DesiredState.STOPPED
    owner.post(f"/sessions/{sandbox.public_id}/restart/")  # stopped: a restart starts it
    sandbox.refresh_from_db()
    assert sandbox.desired_state == DesiredState.RUNNING
    owner.post(f"/sessions/{sandbox.public_id}/stop/")
    owner.post(f"/sessions/{sandbox.public_id}/logout/")  # no runner holds it
    sandbox.refresh_from_db()
    assert sandbox.status == Status.LOGGED_OUT
    assert sandbox.history.filter(to_status=Status.LOGGED_OUT).exists()


def test_a_card_action_from_the_page_script_answers_with_the_new_card(owner, sandbox):
    response = owner.post(f"/sessions/{sandbox.public_id}/start/", HTTP_X_REQUESTED_WITH="fetch")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith("<article") and f'data-session="{sandbox.public_id}"' in html
    assert "/stop/" in html  # running now: the card offers Stop


def test_the_card_shows_the_qr_code_while_waiting_for_a_scan(owner, sandbox):
    from datetime import timedelta

    from django.utils import timezone

    from sessions_app.services import session_qr_set

    session_qr_set(
        session_id=sandbox.pk,
        payload=f"sandbox://link?session={sandbox.public_id}&code=abc",
        expires_at=timezone.now() + timedelta(seconds=60),
    )
    html = owner.get(f"/sessions/{sandbox.public_id}/card/").content.decode()
    assert "<svg" in html and 'data-status="WAIT_QR"' in html
    assert 'data-expires-at="20' in html


def test_pairing_code_form_asks_the_runner(owner, shop):
    session = session_create(tenant=shop, name="Phone", provider=Provider.NEONIZE)
    owner.post(f"/sessions/{session.public_id}/pair/", {"phone_number": "050-123-4567"})
    command = SessionCommand.objects.get(session=session)
    assert command.kind == SessionCommand.Kind.PAIR_PHONE
    assert command.payload == {"phone_number": "+972501234567"}


def test_status_history_is_one_click_away(owner, sandbox):
    session_status_set(session_id=sandbox.pk, status=Status.STARTING, reason="Runner took it")
    page = owner.get("/sessions/").content.decode()
    assert f"/sessions/{sandbox.public_id}/history/" in page
    history = owner.get(f"/sessions/{sandbox.public_id}/history/").content.decode()
    assert "Runner took it" in history and "STARTING" in history


def test_editing_a_session_validates_and_saves(owner, sandbox):
    url = f"/sessions/{sandbox.public_id}/edit/"
    bad = owner.post(url, {"owner_numbers": "12", "customer_mode": "ordering",
                           "humanization_profile": "normal"})  # fmt: skip
    assert bad.status_code == 400 and "not a phone number" in bad.content.decode()
    good = owner.post(url, {"owner_numbers": "+972529999999", "customer_mode": "ordering",
                            "humanization_profile": "slow"})  # fmt: skip
    assert good.status_code == 302
    sandbox.refresh_from_db()
    assert sandbox.owner_numbers == ["+972529999999"] and sandbox.customer_mode == "ordering"


# --- the phone simulator ----------------------------------------------------------------


def test_simulator_writes_as_a_customer(owner, sandbox):
    response = owner.post(
        f"/simulator/{sandbox.public_id}/write/",
        {"phone": "052-765-4321", "text": "Hi, one pizza please", "name": "Dana"},
        HTTP_X_REQUESTED_WITH="fetch",
    )
    assert response.status_code == 201
    row = SandboxMessage.objects.get(session=sandbox)
    assert (row.direction, row.phone, row.text, row.push_name) == (
        "in", "+972527654321", "Hi, one pizza please", "Dana"
    )  # fmt: skip
    transcript = owner.get(
        f"/simulator/{sandbox.public_id}/messages/", {"phone": "+972527654321"}
    ).json()
    assert [m["text"] for m in transcript["messages"]] == ["Hi, one pizza please"]


def test_simulator_shows_what_the_business_sent_that_phone_only(owner, sandbox):
    for phone, text in (("+972527654321", "Your order is confirmed"), ("+972520000000", "Other")):
        SandboxMessage.objects.create(
            session=sandbox, direction="out", phone=phone, provider_message_id=text, text=text
        )
    page = owner.get("/simulator/", {"session": sandbox.public_id, "phone": "+972527654321"})
    html = page.content.decode()
    assert "Your order is confirmed" in html and "Other" not in html


def test_simulator_refuses_an_empty_message_or_a_bad_number(owner, sandbox):
    url = f"/simulator/{sandbox.public_id}/write/"
    empty = owner.post(url, {"phone": "+972527654321", "text": ""}, HTTP_X_REQUESTED_WITH="fetch")
    assert empty.status_code == 400 and "text" in empty.json()["errors"]
    bad = owner.post(url, {"phone": "hello", "text": "Hi"}, HTTP_X_REQUESTED_WITH="fetch")
    assert bad.status_code == 400 and "phone" in bad.json()["errors"]
    assert not SandboxMessage.objects.filter(session=sandbox).exists()


def test_simulator_scans_the_current_qr_code(owner, sandbox):
    from datetime import timedelta

    from django.utils import timezone

    from sessions_app.services import session_qr_set

    session_qr_set(
        session_id=sandbox.pk,
        payload=f"sandbox://link?session={sandbox.public_id}&code=the-code",
        expires_at=timezone.now() + timedelta(seconds=60),
    )
    response = owner.post(
        f"/simulator/{sandbox.public_id}/scan/",
        {"phone": "+972501234567"},
        HTTP_X_REQUESTED_WITH="fetch",
    )
    assert response.status_code == 202
    command = SessionCommand.objects.get(session=sandbox)
    assert command.kind == SessionCommand.Kind.SANDBOX_SCAN
    assert command.payload == {"code": "the-code", "phone_number": "+972501234567"}


def test_simulator_refuses_a_qr_code_of_another_session(owner, sandbox, shop):
    other = session_create(tenant=shop, name="Other", provider=Provider.SANDBOX)
    response = owner.post(
        f"/simulator/{sandbox.public_id}/scan/",
        {"phone": "+972501234567", "link": f"sandbox://link?session={other.public_id}&code=x"},
        HTTP_X_REQUESTED_WITH="fetch",
    )
    assert response.status_code == 400
    assert "another session" in str(response.json()["errors"])
    assert not SessionCommand.objects.filter(session__in=[sandbox, other]).exists()


# --- settings ---------------------------------------------------------------------------


def test_ordering_settings_save_and_show_errors(owner, shop):
    from orders.models import OrderSettings

    form = {
        "rating_delay_minutes": "45",
        "confirmed_too_long_minutes": "15",
        "promo_text": "Thanks! 10% off next time: PIZZA10",
        "apology_text": "Sorry, we will do better.",
        "support_contact": "+972501234567",
        "hours_0": "09:00-14:00, 18:00-23:00",
        "hours_4": "25:00-26:00",
    }
    bad = owner.post("/settings/ordering/", form)
    assert bad.status_code == 400
    assert "25:00-26:00 is not a range like 09:00-14:00." in bad.content.decode()
    form["hours_4"] = "12:00-02:00"
    assert owner.post("/settings/ordering/", form).status_code == 302
    with schema_context(shop.schema_name):
        settings = OrderSettings.current()
        assert settings.rating_delay_minutes == 45
        assert settings.promo_text.startswith("Thanks!")
        assert settings.opening_hours["0"] == [["09:00", "14:00"], ["18:00", "23:00"]]
        assert settings.opening_hours["4"] == [["12:00", "02:00"]]
        assert settings.opening_hours["1"] == []


def test_bot_pause_button(owner, shop):
    from orders.models import OrderSettings

    owner.post("/settings/bot-pause/", {"paused": "1"})
    with schema_context(shop.schema_name):
        assert OrderSettings.current().bot_paused is True
    owner.post("/settings/bot-pause/", {"paused": "0"})
    with schema_context(shop.schema_name):
        assert OrderSettings.current().bot_paused is False


def test_limits_save_and_refuse_zero(owner, shop):
    from messaging.models import MessagingSettings
    from tenants.models import Tenant  # noqa: F401

    with schema_context(shop.schema_name):
        from django.forms.models import model_to_dict

        data = {k: v for k, v in model_to_dict(MessagingSettings.current()).items() if k != "id"}
    data["outbound_per_tenant_per_minute"] = 0
    bad = owner.post("/settings/limits/", {**data, "limits_enabled": "on"})
    assert bad.status_code == 400 and "Use at least 1." in bad.content.decode()
    data["outbound_per_tenant_per_minute"] = 120
    assert owner.post("/settings/limits/", {**data, "limits_enabled": "on"}).status_code == 302
    with schema_context(shop.schema_name):
        assert MessagingSettings.current().outbound_per_tenant_per_minute == 120


def test_owner_numbers_and_customer_mode_per_session(owner, sandbox):
    prefix = f"s{sandbox.pk}"
    response = owner.post(
        f"/settings/sessions/{sandbox.public_id}/",
        {f"{prefix}-owner_numbers": "+972521111111", f"{prefix}-customer_mode": "ordering",
         f"{prefix}-humanization_profile": "instant"},
    )  # fmt: skip
    assert response.status_code == 302
    sandbox.refresh_from_db()
    assert sandbox.owner_numbers == ["+972521111111"]
    assert sandbox.customer_mode == "ordering"


def test_webhook_endpoint_secret_is_shown_once_and_its_log_opens(owner, shop):
    from messaging.models import WebhookEndpoint

    bad = owner.post("/settings/webhooks/add/", {"url": "ftp://nope", "events": []})
    assert bad.status_code == 400
    response = owner.post(
        "/settings/webhooks/add/",
        {"url": "https://hooks.example.com/in", "events": ["message.new", "order.updated"]},
    )
    assert response.status_code == 201
    secret = re.search(r'data-role="secret">(whsec_[^<]+)<', response.content.decode())[1]
    with schema_context(shop.schema_name):
        endpoint = WebhookEndpoint.objects.get()
        assert str(endpoint.secret) == secret
    assert secret not in owner.get("/settings/").content.decode()
    owner.post(f"/settings/webhooks/{endpoint.pk}/test/")
    log = owner.get(f"/settings/webhooks/{endpoint.pk}/deliveries/")
    assert log.status_code == 200 and "webhook.test" in log.content.decode()


def test_api_key_is_shown_once_and_can_be_revoked(owner, shop):
    from tenants.models import ApiKey

    bad = owner.post("/settings/api-keys/add/", {"name": "", "scopes": []})
    assert bad.status_code == 400
    response = owner.post("/settings/api-keys/add/", {"name": "Shop site", "scopes": ["read"]})
    assert response.status_code == 201
    raw = re.search(r'data-role="api-key">(wak_[^<]+)<', response.content.decode())[1]
    key = ApiKey.objects.get(tenant=shop)
    assert raw.startswith(key.prefix)
    assert raw not in owner.get("/settings/").content.decode()
    owner.post(f"/settings/api-keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_another_tenants_api_key_cannot_be_revoked_here(owner, make_tenant):
    from tenants.api_keys import api_key_create

    other = another_tenant(make_tenant)
    key, _raw = api_key_create(tenant=other, name="Theirs", scopes=["read"])
    assert owner.post(f"/settings/api-keys/{key.pk}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


# --- menu -------------------------------------------------------------------------------


def test_menu_items_are_added_edited_and_hidden(owner, shop):
    from orders.models import MenuItem

    bad = owner.post("/menu/", {"name_he": "", "price": "12.345"})
    assert bad.status_code == 400
    added = owner.post("/menu/", {"name_he": "פיצה", "name_en": "Pizza", "price": "42.50",
                                  "category": "Pizza", "available": "on"})  # fmt: skip
    assert added.status_code == 302
    with schema_context(shop.schema_name):
        item = MenuItem.objects.get()
        assert item.price_minor == 4250 and item.available
    assert "42.50" in owner.get("/menu/").content.decode()
    owner.post(f"/menu/{item.pk}/edit/", {"name_he": "פיצה", "price": "45", "available": "on"})
    owner.post(f"/menu/{item.pk}/toggle/")
    with schema_context(shop.schema_name):
        item.refresh_from_db()
        assert item.price_minor == 4500 and not item.available


# --- team -------------------------------------------------------------------------------


def test_owner_invites_staff_who_chooses_a_password_and_signs_in(owner, shop):
    response = owner.post("/team/", {"email": "Waiter@Example.com", "name": "Avi"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"http://\S+/password-reset/\S+/", mail.outbox[0].body)[0]
    path = link.split(host_of(shop), 1)[1]
    invited = Client(HTTP_HOST=host_of(shop))
    form_page = invited.get(path, follow=True)
    assert form_page.status_code == 200 and b"new_password1" in form_page.content
    set_url = form_page.redirect_chain[-1][0] if form_page.redirect_chain else path
    done = invited.post(set_url, {"new_password1": STAFF_PASSWORD, "new_password2": STAFF_PASSWORD})
    assert done.status_code == 302
    staff = signed_in(shop, "waiter@example.com", STAFF_PASSWORD)
    assert staff.get("/settings/").status_code == 403
    duplicate = owner.post("/team/", {"email": "waiter@example.com"})
    assert duplicate.status_code == 400 and b"already has an account" in duplicate.content


# --- languages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "direction", "sessions", "simulator"),
    [
        ("he", "rtl", "חיבורים", "סימולטור טלפון"),
        ("ar", "rtl", "الجلسات", "محاكي الهاتف"),
        ("en", "ltr", "Sessions", "Phone simulator"),
    ],
)
def test_pages_are_translated_and_right_to_left_in_hebrew_and_arabic(
    owner, sandbox, language, direction, sessions, simulator
):
    owner.cookies["django_language"] = language
    page = owner.get("/simulator/").content.decode()
    assert f'<html lang="{language}" dir="{direction}">' in page
    assert sessions in page and simulator in page


def test_session_statuses_are_shown_in_the_readers_language(owner, sandbox):
    session_status_set(session_id=sandbox.pk, status=Status.LOGGED_OUT, reason="From the phone")
    owner.cookies["django_language"] = "he"
    card = owner.get(f"/sessions/{sandbox.public_id}/card/").content.decode()
    assert 'data-status="LOGGED_OUT">התנתק<' in card
    owner.cookies["django_language"] = "ar"
    card = owner.get(f"/sessions/{sandbox.public_id}/card/").content.decode()
    assert 'data-status="LOGGED_OUT">تم تسجيل الخروج<' in card


def test_a_refused_card_action_answers_with_the_card_and_the_reason(owner, shop):
    twilio = session_create(
        tenant=shop, name="Official", provider=Provider.TWILIO,
        twilio_account_sid="AC" + "0" * 32, twilio_auth_token="token",
        twilio_from_number="+14155238886", check_credentials=False,
    )  # fmt: skip
    response = owner.post(
        f"/sessions/{twilio.public_id}/pair/",
        {"phone_number": "+972501234567"},
        HTTP_X_REQUESTED_WITH="fetch",
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert html.startswith("<article") and 'data-role="error"' in html
    assert "has no runner to ask" in html
    assert not SessionCommand.objects.filter(session=twilio).exists()


def test_a_pairing_request_from_the_card_answers_with_the_card(owner, shop):
    phone = session_create(tenant=shop, name="Phone", provider=Provider.NEONIZE)
    response = owner.post(
        f"/sessions/{phone.public_id}/pair/",
        {"phone_number": "+972501234567"},
        HTTP_X_REQUESTED_WITH="fetch",
    )
    assert response.status_code == 202
    assert response.content.decode().startswith("<article")
    assert SessionCommand.objects.filter(session=phone, kind="pair_phone").exists()
