"""The REST API in-process (Django's test client on the tenant's host, real PostgreSQL and
Redis): keys, scopes, the error envelope, and every endpoint's success and error cases."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db.models import F
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from messaging.models import (
    Contact,
    Conversation,
    Message,
    WebhookDelivery,
    WebhookEndpoint,
)
from orders.models import MenuItem, Order
from orders.selectors import tenant_timezone
from orders.services import menu_item_create, order_create, order_transition
from sessions_app.models import SessionCommand, Status, WhatsAppSession
from sessions_app.services import session_create, session_qr_set
from tenants.api_keys import api_key_create, api_key_revoke
from tests.conftest import OWNER_PASSWORD, host_of

ALL = ["read", "send", "manage"]
CUSTOMER = "+972501112233"


class Api:
    """A client of one tenant's API with one key."""

    def __init__(self, tenant, raw_key: str | None):
        self.tenant = tenant
        self.raw_key = raw_key
        headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"} if raw_key else {}
        self.client = Client(HTTP_HOST=host_of(tenant), **headers)

    def get(self, path, **query):
        return self.client.get(path, query)

    def post(self, path, body=None, **headers):
        return self.client.post(
            path, json.dumps(body or {}), content_type="application/json", **headers
        )

    def patch(self, path, body):
        return self.client.patch(path, json.dumps(body), content_type="application/json")

    def delete(self, path):
        return self.client.delete(path)


@pytest.fixture
def tenant(make_tenant):
    return make_tenant()


@pytest.fixture
def api(tenant):
    _, raw = api_key_create(tenant=tenant, name="Integrator", scopes=ALL)
    return Api(tenant, raw)


def key_api(tenant, scopes) -> Api:
    _, raw = api_key_create(tenant=tenant, name=f"k-{'-'.join(scopes)}", scopes=scopes)
    return Api(tenant, raw)


def sandbox(tenant, name="Front desk") -> WhatsAppSession:
    return session_create(tenant=tenant, name=name, provider="sandbox")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


def receive(tenant, session, text="Hi", phone=CUSTOMER) -> Message:
    """A message a customer wrote, stored as the inbound path stores it."""
    with schema_context(tenant.schema_name):
        contact, _ = Contact.objects.get_or_create(phone=phone, defaults={"push_name": "Dana"})
        conversation, _ = Conversation.objects.get_or_create(contact=contact, session_id=session.pk)
        message = Message.objects.create(
            conversation=conversation,
            session_id=session.pk,
            direction="in",
            kind="text",
            text=text,
            status="received",
            provider_message_id=f"in-{uuid.uuid4().hex}",
            routed_at=timezone.now(),
        )
        Conversation.objects.filter(pk=conversation.pk).update(
            last_message_at=message.created_at, unread_count=F("unread_count") + 1
        )
        return message


# --- authentication -------------------------------------------------------------------


def test_no_key_is_401_with_the_envelope_and_the_bearer_challenge(tenant):
    response = Api(tenant, None).get("/api/v1/sessions")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_key_is_401(tenant):
    assert_error(
        Api(tenant, "wak_00000000_nope").get("/api/v1/sessions"), 401, "authentication_failed"
    )


def test_a_revoked_key_is_refused_like_a_wrong_one(tenant):
    key, raw = api_key_create(tenant=tenant, name="Old", scopes=ALL)
    assert Api(tenant, raw).get("/api/v1/sessions").status_code == 200
    api_key_revoke(key=key)

    revoked = Api(tenant, raw).get("/api/v1/sessions")
    wrong = Api(tenant, raw[:-2] + "xx").get("/api/v1/sessions")

    assert_error(revoked, 401, "authentication_failed")
    assert revoked.json() == wrong.json()


def test_a_key_on_another_tenants_host_is_refused_exactly_like_a_wrong_key(make_tenant):
    # Given a key of one tenant, and another tenant
    mine, other = make_tenant(), make_tenant()
    _, raw = api_key_create(tenant=mine, name="POS", scopes=ALL)

    # When it is used on the other tenant's host, and a made-up key is too
    foreign = Api(other, raw).get("/api/v1/sessions")
    wrong = Api(other, "wak_12345678_" + "x" * 43).get("/api/v1/sessions")

    # Then both get the same answer, byte for byte
    assert_error(foreign, 401, "authentication_failed")
    assert (foreign.status_code, foreign.content) == (wrong.status_code, wrong.content)
    assert foreign["WWW-Authenticate"] == wrong["WWW-Authenticate"]


def test_another_tenants_session_is_not_found(make_tenant):
    mine, other = make_tenant(), make_tenant()
    theirs = sandbox(other)
    _, raw = api_key_create(tenant=mine, name="POS", scopes=ALL)

    assert_error(Api(mine, raw).get(f"/api/v1/sessions/{theirs.public_id}"), 404, "not_found")
    response = Api(mine, raw).post(
        "/api/v1/messages", {"session": str(theirs.public_id), "to": CUSTOMER, "text": "hi"}
    )
    assert "session" in assert_error(response, 400, "validation_error")["details"]


def test_using_a_key_records_its_last_use(tenant):
    key, raw = api_key_create(tenant=tenant, name="POS", scopes=ALL)
    Api(tenant, raw).get("/api/v1/sessions")
    key.refresh_from_db()
    assert key.last_used_at is not None


# --- scopes ---------------------------------------------------------------------------


def test_a_read_key_reads_but_cannot_send_or_manage(tenant):
    session = sandbox(tenant)
    reader = key_api(tenant, ["read"])

    assert reader.get("/api/v1/sessions").status_code == 200
    send = reader.post(
        "/api/v1/messages", {"session": str(session.public_id), "to": CUSTOMER, "text": "hi"}
    )
    error = assert_error(send, 403, "insufficient_scope")
    assert error["details"] == {"required": "send", "held": ["read"]}
    assert_error(
        reader.post(f"/api/v1/sessions/{session.public_id}/stop"), 403, "insufficient_scope"
    )


def test_a_send_key_sends_but_cannot_manage_sessions(tenant):
    session = sandbox(tenant)
    sender = key_api(tenant, ["send"])

    sent = sender.post(
        "/api/v1/messages", {"session": str(session.public_id), "to": CUSTOMER, "text": "hi"}
    )
    assert sent.status_code == 201, sent.content
    assert_error(sender.delete(f"/api/v1/sessions/{session.public_id}"), 403, "insufficient_scope")
    assert_error(sender.get("/api/v1/sessions"), 403, "insufficient_scope")  # no read


# --- the error envelope ---------------------------------------------------------------


def test_an_unknown_address_is_404_in_the_envelope(api):
    assert_error(api.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(api.get("/api/v1/sessions/not-a-uuid"), 404, "not_found")
    assert_error(api.get("/api/v1/messages/bulk/a%0Ab/"), 404, "not_found")  # found by fuzzing


def test_a_wrong_method_is_405_in_the_envelope(api):
    assert_error(api.delete("/api/v1/messages"), 405, "method_not_allowed")


def test_malformed_json_is_a_400_parse_error(api):
    response = api.client.post("/api/v1/sessions", "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_an_unsupported_content_type_is_415(api):
    response = api.client.post("/api/v1/sessions", "x", content_type="text/csv")
    assert_error(response, 415, "unsupported_media_type")


def test_validation_errors_name_every_field(api):
    response = api.post("/api/v1/sessions", {"provider": "fax", "owner_numbers": "x"})
    details = assert_error(response, 400, "validation_error")["details"]
    assert {"name", "provider", "owner_numbers"} <= set(details)
    assert all(isinstance(m, list) and isinstance(m[0], str) for m in details.values())


def test_a_suspended_tenant_and_an_unknown_host_answer_in_the_envelope(api, tenant):
    from tenants.services import tenant_suspend

    unknown = Client(HTTP_HOST="nobody.localhost").get("/api/v1/sessions")
    assert_error(unknown, 404, "unknown_host")
    tenant_suspend(tenant=tenant)
    assert_error(api.get("/api/v1/sessions"), 403, "tenant_suspended")


def test_the_rate_limit_answers_429_with_retry_after(api, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    answers = [api.get("/api/v1/sessions") for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    error = assert_error(answers[3], 429, "rate_limited")
    assert 1 <= int(answers[3]["Retry-After"]) <= 60
    assert error["details"]["retry_after"] == int(answers[3]["Retry-After"])


def test_the_rate_limit_counts_each_key_apart(tenant, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    first, second = key_api(tenant, ["read"]), key_api(tenant, ["read"])
    for _ in range(2):
        first.get("/api/v1/sessions")
    assert first.get("/api/v1/sessions").status_code == 429
    assert second.get("/api/v1/sessions").status_code == 200


# --- a dashboard user's browser session -----------------------------------------------


def _signed_in(tenant, role="owner") -> Client:
    email = f"{role}-{uuid.uuid4().hex[:6]}@{tenant.slug}.example.com"
    with schema_context(tenant.schema_name):
        get_user_model().objects.create_user(email=email, password=OWNER_PASSWORD, role=role)
        client = Client(HTTP_HOST=host_of(tenant), enforce_csrf_checks=True)
        assert client.login(email=email, password=OWNER_PASSWORD)
    return client


def test_a_signed_in_user_reads_and_writes_with_the_csrf_token(tenant):
    client = _signed_in(tenant)
    assert client.get("/api/v1/sessions").status_code == 200

    body = json.dumps({"name": "Desk", "provider": "sandbox"})
    refused = client.post("/api/v1/sessions", body, content_type="application/json")
    assert_error(refused, 403, "permission_denied")
    assert "CSRF" in refused.json()["error"]["message"]

    token = "a" * 32  # any well-formed token, the same in the cookie and the header
    client.cookies["csrftoken"] = token
    created = client.post(
        "/api/v1/sessions", body, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert created.status_code == 201, created.content


def test_a_staff_user_cannot_manage(tenant):
    client = _signed_in(tenant, role="staff")
    client.cookies["csrftoken"] = "b" * 32
    response = client.post(
        "/api/v1/sessions",
        json.dumps({"name": "Desk", "provider": "sandbox"}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN="b" * 32,
    )
    assert_error(response, 403, "insufficient_scope")


# --- sessions -------------------------------------------------------------------------


def test_sessions_create_list_get_update_delete(api, tenant):
    created = api.post(
        "/api/v1/sessions",
        {"name": "Desk", "provider": "sandbox", "owner_numbers": ["050-123-4567"]},
    )
    assert created.status_code == 201, created.content
    session = created.json()
    assert session["status"] == "STOPPED" and session["owner_numbers"] == ["+972501234567"]
    path = f"/api/v1/sessions/{session['id']}"

    listed = api.get("/api/v1/sessions").json()
    assert [s["id"] for s in listed["results"]] == [session["id"]]
    assert listed["next_cursor"] is None
    assert api.get(path).json()["name"] == "Desk"

    updated = api.patch(path, {"name": "Front", "customer_mode": "ordering"})
    assert updated.status_code == 200, updated.content
    assert (updated.json()["name"], updated.json()["customer_mode"]) == ("Front", "ordering")
    bad = api.patch(path, {"owner_numbers": ["12"], "name": ""})
    assert {"owner_numbers", "name"} <= set(assert_error(bad, 400, "validation_error")["details"])

    assert api.delete(path).status_code == 204
    assert_error(api.get(path), 404, "not_found")


def test_sessions_duplicate_name_is_a_field_error(api, tenant):
    sandbox(tenant, "Desk")
    response = api.post("/api/v1/sessions", {"name": "Desk", "provider": "sandbox"})
    assert "name" in assert_error(response, 400, "validation_error")["details"]


def test_a_twilio_session_with_credentials_twilio_refuses_is_a_400(api, twilio_standin):
    sid, _ = twilio_standin.add_account()
    response = api.post(
        "/api/v1/sessions",
        {
            "name": "Twilio",
            "provider": "twilio",
            "twilio_account_sid": sid,
            "twilio_auth_token": "f" * 32,
            "twilio_from_number": "+14155550123",
        },
    )
    details = assert_error(response, 400, "validation_error")["details"]
    assert "twilio_auth_token" in details
    assert "f" * 32 not in response.content.decode()


def test_a_twilio_session_never_shows_its_token(api, twilio_standin):
    sid, token = twilio_standin.add_account()
    response = api.post(
        "/api/v1/sessions",
        {
            "name": "Twilio",
            "provider": "twilio",
            "twilio_account_sid": sid,
            "twilio_auth_token": token,
            "twilio_from_number": f"+1415{uuid.uuid4().int % 10**7:07d}",
        },
    )
    assert response.status_code == 201, response.content
    assert token not in response.content.decode()
    assert response.json()["has_twilio_auth_token"] is True


def test_start_stop_restart_logout(api, tenant):
    session = sandbox(tenant)
    path = f"/api/v1/sessions/{session.public_id}"

    started = api.post(f"{path}/start")
    assert started.status_code == 200 and started.json()["desired_state"] == "running"
    stopped = api.post(f"{path}/stop")
    assert stopped.status_code == 200 and stopped.json()["desired_state"] == "stopped"
    restarted = api.post(f"{path}/restart")
    assert restarted.status_code == 200 and restarted.json()["desired_state"] == "running"
    api.post(f"{path}/stop")
    logged_out = api.post(f"{path}/logout")
    assert logged_out.status_code == 202
    assert logged_out.json()["session"]["status"] == Status.LOGGED_OUT


def test_deleting_a_session_a_runner_holds_is_409(api, tenant):
    from sessions_app import leases

    session = sandbox(tenant)
    assert leases.lease_acquire(session.pk, "runner-x")
    try:
        response = api.delete(f"/api/v1/sessions/{session.public_id}")
        assert_error(response, 409, "session_running")
    finally:
        leases.lease_release(session.pk, "runner-x")


def test_qr_gives_raw_svg_png_and_seconds_left(api, tenant):
    session = sandbox(tenant)
    assert_error(api.get(f"/api/v1/sessions/{session.public_id}/qr"), 409, "no_qr")

    session_qr_set(
        session_id=session.pk,
        payload="sandbox://pair/abc",
        expires_at=timezone.now() + timedelta(seconds=40),
    )
    qr = api.get(f"/api/v1/sessions/{session.public_id}/qr").json()

    assert qr["qr"] == "sandbox://pair/abc"
    assert qr["svg"].startswith("<svg")
    assert qr["png_data_url"].startswith("data:image/png;base64,iVBOR")
    assert 30 <= qr["expires_in_seconds"] <= 40


def test_pair_code_queues_a_command_for_the_runner(api, tenant):
    session = sandbox(tenant)
    response = api.post(
        f"/api/v1/sessions/{session.public_id}/pair-code", {"phone_number": "050-123-4567"}
    )
    assert response.status_code == 202, response.content
    command = SessionCommand.objects.get(pk=response.json()["command"]["id"])
    assert command.payload == {"phone_number": "+972501234567"}

    bad = api.post(f"/api/v1/sessions/{session.public_id}/pair-code", {"phone_number": "nope"})
    assert_error(bad, 400, "validation_error")
    missing = api.post(f"/api/v1/sessions/{session.public_id}/pair-code", {})
    assert "phone_number" in assert_error(missing, 400, "validation_error")["details"]


def test_health_counts_the_last_24_hours(api, tenant):
    session = sandbox(tenant)
    receive(tenant, session, "one")
    receive(tenant, session, "two")
    with schema_context(tenant.schema_name):
        from messaging.outbound import message_send

        failed = message_send(session=session, to=CUSTOMER, text="later")
        Message.objects.filter(pk=failed.pk).update(status="failed")
        sent = message_send(session=session, to=CUSTOMER, text="sent")
        Message.objects.filter(pk=sent.pk).update(status="delivered")
        old = message_send(session=session, to=CUSTOMER, text="old")
        Message.objects.filter(pk=old.pk).update(
            status="sent", created_at=timezone.now() - timedelta(hours=25)
        )

    health = api.get(f"/api/v1/sessions/{session.public_id}/health").json()

    assert health["messages_last_24h"] == {"sent": 1, "received": 2, "failed": 1}
    assert health["status"] == "STOPPED" and health["last_activity_at"]


# --- messages -------------------------------------------------------------------------


def test_send_a_text_returns_it_queued_and_it_can_be_read_back(api, tenant):
    session = sandbox(tenant)
    response = api.post(
        "/api/v1/messages", {"session": str(session.public_id), "to": "050-111-2233", "text": "Hi"}
    )
    assert response.status_code == 201, response.content
    message = response.json()
    assert message["status"] == "queued" and message["direction"] == "out"
    assert message["contact"]["phone"] == CUSTOMER
    assert message["session"] == str(session.public_id)

    again = api.get(f"/api/v1/messages/{message['id']}").json()
    assert again["id"] == message["id"] and again["created_at"]


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"kind": "image", "media_url": "https://example.com/a.jpg", "text": "cap"}, "image"),
        ({"kind": "video", "media_url": "https://example.com/a.mp4"}, "video"),
        ({"kind": "audio", "media_url": "https://example.com/a.ogg"}, "audio"),
        ({"kind": "document", "media_url": "https://example.com/menu.pdf"}, "document"),
        ({"kind": "location", "location": {"latitude": 32.08, "longitude": 34.78}}, "location"),
        ({"kind": "contact", "contact": {"display_name": "Roma"}}, "contact"),
    ],
)
def test_send_every_kind(api, tenant, body, kind):
    session = sandbox(tenant)
    response = api.post(
        "/api/v1/messages", {"session": str(session.public_id), "to": CUSTOMER, **body}
    )
    assert response.status_code == 201, response.content
    assert response.json()["kind"] == kind


def test_reply_and_reaction_quote_a_message(api, tenant):
    session = sandbox(tenant)
    inbound = receive(tenant, session, "Menu?")
    base = {"session": str(session.public_id), "to": CUSTOMER}

    reply = api.post(
        "/api/v1/messages", {**base, "text": "Here", "reply_to": str(inbound.public_id)}
    )
    assert reply.status_code == 201, reply.content
    assert reply.json()["reply_to"] == str(inbound.public_id)

    reaction = api.post(
        "/api/v1/messages",
        {
            **base,
            "kind": "reaction",
            "reaction": {"emoji": "👍", "message": str(inbound.public_id)},
        },
    )
    assert reaction.status_code == 201, reaction.content
    assert reaction.json()["payload"]["target_id"] == inbound.provider_message_id

    unknown = api.post("/api/v1/messages", {**base, "text": "x", "reply_to": str(uuid.uuid4())})
    assert "reply_to" in assert_error(unknown, 400, "validation_error")["details"]


def test_send_an_uploaded_document(api, tenant):
    from django.core.files.uploadedfile import SimpleUploadedFile

    session = sandbox(tenant)
    response = api.client.post(
        "/api/v1/messages",
        {
            "session": str(session.public_id),
            "to": CUSTOMER,
            "kind": "document",
            "text": "Our menu",
            "file": SimpleUploadedFile("menu.pdf", b"%PDF-1.4 menu", "application/pdf"),
        },
    )
    assert response.status_code == 201, response.content
    url = response.json()["media_url"]
    assert "/api/v1/media/" in url and url.endswith("/menu.pdf")

    # The provider fetches it at that address, without a key
    path = url.split(host_of(tenant), 1)[1]
    fetched = Client(HTTP_HOST=host_of(tenant)).get(path)
    assert fetched.status_code == 200
    assert b"".join(fetched.streaming_content) == b"%PDF-1.4 menu"
    assert_error(Client(HTTP_HOST=host_of(tenant)).get(path + "x"), 404, "not_found")


def test_send_validation_errors_are_by_field(api, tenant):
    session = sandbox(tenant)
    base = {"session": str(session.public_id)}
    assert (
        "to"
        in assert_error(
            api.post("/api/v1/messages", {**base, "to": "nope", "text": "x"}),
            400,
            "validation_error",
        )["details"]
    )
    assert (
        "text"
        in assert_error(
            api.post("/api/v1/messages", {**base, "to": CUSTOMER}), 400, "validation_error"
        )["details"]
    )
    assert (
        "media_url"
        in assert_error(
            api.post("/api/v1/messages", {**base, "to": CUSTOMER, "kind": "image"}),
            400,
            "validation_error",
        )["details"]
    )
    assert (
        "session"
        in assert_error(
            api.post("/api/v1/messages", {"session": "x", "to": CUSTOMER, "text": "x"}),
            400,
            "validation_error",
        )["details"]
    )


def test_an_idempotency_key_returns_the_first_message_and_sends_once(api, tenant):
    session = sandbox(tenant)
    body = {"session": str(session.public_id), "to": CUSTOMER, "text": "Order 104 is ready"}

    first = api.post("/api/v1/messages", body, HTTP_IDEMPOTENCY_KEY="order-104-ready")
    second = api.post("/api/v1/messages", body, HTTP_IDEMPOTENCY_KEY="order-104-ready")

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    with schema_context(tenant.schema_name):
        assert Message.objects.filter(direction="out").count() == 1
    bad = api.post("/api/v1/messages", body, HTTP_IDEMPOTENCY_KEY="has space")
    assert "Idempotency-Key" in assert_error(bad, 400, "validation_error")["details"]


def test_idempotency_keys_of_two_api_keys_do_not_collide(tenant):
    session = sandbox(tenant)
    body = {"session": str(session.public_id), "to": CUSTOMER, "text": "hello"}
    one, two = key_api(tenant, ["send"]), key_api(tenant, ["send"])
    a = one.post("/api/v1/messages", body, HTTP_IDEMPOTENCY_KEY="same")
    b = two.post("/api/v1/messages", {**body, "text": "other"}, HTTP_IDEMPOTENCY_KEY="same")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


def test_messages_list_pages_by_cursor(api, tenant):
    session = sandbox(tenant)
    for index in range(5):
        receive(tenant, session, f"m{index}")
    first = api.get("/api/v1/messages", limit=2).json()
    second = api.get("/api/v1/messages", limit=2, before=first["next_cursor"]).json()
    third = api.get("/api/v1/messages", limit=2, before=second["next_cursor"]).json()
    texts = [m["text"] for page in (first, second, third) for m in page["results"]]
    assert texts == ["m4", "m3", "m2", "m1", "m0"]
    assert third["next_cursor"] is None
    assert (
        "before"
        in assert_error(api.get("/api/v1/messages", before="garbage!"), 400, "validation_error")[
            "details"
        ]
    )
    assert (
        "limit"
        in assert_error(api.get("/api/v1/messages", limit=0), 400, "validation_error")["details"]
    )


def test_dead_letters_are_listed_and_retried(api, tenant):
    session = sandbox(tenant)
    with schema_context(tenant.schema_name):
        from messaging.outbound import message_send

        message = message_send(session=session, to=CUSTOMER, text="lost")
        Message.objects.filter(pk=message.pk).update(
            status="failed", dead_letter=True, failed_at=timezone.now(), attempts=6
        )

    letters = api.get("/api/v1/messages/dead-letters").json()["results"]
    assert [m["id"] for m in letters] == [str(message.public_id)]

    retried = api.post(f"/api/v1/messages/{message.public_id}/retry")
    assert retried.status_code == 200, retried.content
    assert retried.json()["status"] == "queued" and retried.json()["dead_letter"] is False
    assert api.get("/api/v1/messages/dead-letters").json()["results"] == []
    assert_error(api.post(f"/api/v1/messages/{message.public_id}/retry"), 400, "validation_error")


def test_bulk_send_returns_a_job_whose_progress_can_be_read(api, tenant):
    session = sandbox(tenant)
    response = api.post(
        "/api/v1/messages/bulk",
        {
            "session": str(session.public_id),
            "items": [
                {"to": "+972501110001", "text": "Hi 1"},
                {"to": "+972501110002", "text": "Hi 2", "delay_seconds": 5},
            ],
        },
    )
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["total"] == 2 and job["state"] in ("pending", "running", "done")
    assert job["session"] == str(session.public_id)

    progress = api.get(f"/api/v1/messages/bulk/{job['id']}")
    assert progress.status_code == 200 and progress.json()["id"] == job["id"]
    assert_error(api.get(f"/api/v1/messages/bulk/{uuid.uuid4()}"), 404, "not_found")
    empty = api.post("/api/v1/messages/bulk", {"session": str(session.public_id), "items": []})
    assert "items" in assert_error(empty, 400, "validation_error")["details"]


# --- conversations --------------------------------------------------------------------


def test_conversations_filter_page_read_and_take_over(api, tenant):
    session = sandbox(tenant)
    for index in range(3):
        receive(tenant, session, f"c{index}")
    receive(tenant, session, "other", phone="+972501119999")

    listed = api.get("/api/v1/conversations", session=str(session.public_id)).json()["results"]
    assert len(listed) == 2 and all(c["unread_count"] > 0 for c in listed)
    conversation = next(c for c in listed if c["contact"]["phone"] == CUSTOMER)
    path = f"/api/v1/conversations/{conversation['id']}"

    page = api.get(f"{path}/messages", limit=2).json()
    rest = api.get(f"{path}/messages", limit=2, before=page["next_cursor"]).json()
    assert [m["text"] for m in page["results"] + rest["results"]] == ["c2", "c1", "c0"]

    assert api.post(f"{path}/read").json()["unread_count"] == 0
    unread = api.get("/api/v1/conversations", unread="true").json()["results"]
    assert [c["contact"]["phone"] for c in unread] == ["+972501119999"]

    assert api.post(f"{path}/takeover").json()["human_takeover"] is True
    taken = api.get("/api/v1/conversations", taken_over="true").json()["results"]
    assert [c["id"] for c in taken] == [conversation["id"]]
    assert api.post(f"{path}/handback").json()["human_takeover"] is False
    assert_error(api.get("/api/v1/conversations/999999"), 404, "not_found")
    assert (
        "unread"
        in assert_error(api.get("/api/v1/conversations", unread="maybe"), 400, "validation_error")[
            "details"
        ]
    )


# --- orders and the menu --------------------------------------------------------------


@pytest.fixture
def order(tenant):
    session = sandbox(tenant)
    receive(tenant, session, "hi")
    with schema_context(tenant.schema_name):
        item = menu_item_create(name_he="פיצה", name_en="Pizza", price_minor=4500)
        made = order_create(
            contact=Contact.objects.get(phone=CUSTOMER),
            session_id=session.pk,
            lines=[{"menu_item": item, "quantity": 2}],
            fulfilment="pickup",
        )
        order_transition(order_id=made.pk, to="CONFIRMED", actor_kind="customer")
        return Order.objects.get(pk=made.pk)


def test_orders_list_filter_and_get(api, tenant, order):
    listed = api.get("/api/v1/orders").json()["results"]
    assert [o["number"] for o in listed] == [order.number]
    assert listed[0]["total_minor"] == 9000 and listed[0]["status"] == "CONFIRMED"
    assert api.get("/api/v1/orders", status="PREPARING").json()["results"] == []
    # the tenant's day (Asia/Jerusalem by default), not the server's (UTC)
    today = timezone.localdate(timezone=tenant_timezone(tenant.timezone)).isoformat()
    assert len(api.get("/api/v1/orders", date=today).json()["results"]) == 1
    assert api.get("/api/v1/orders", date="2001-01-01").json()["results"] == []
    assert_error(api.get("/api/v1/orders", date="yesterday"), 400, "validation_error")
    assert api.get(f"/api/v1/orders/{order.public_id}").json()["number"] == order.number


def test_a_transition_moves_the_order_and_records_the_api_key(api, tenant, order):
    response = api.post(f"/api/v1/orders/{order.public_id}/transition", {"to": "PREPARING"})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "PREPARING"
    with schema_context(tenant.schema_name):
        event = Order.objects.get(pk=order.pk).events.order_by("-id").first()
        assert event.actor_kind == "api" and "Integrator" in event.actor_label


def test_an_illegal_transition_is_409_with_what_is_allowed(api, order):
    response = api.post(f"/api/v1/orders/{order.public_id}/transition", {"to": "RATED"})
    error = assert_error(response, 409, "illegal_transition")
    assert error["details"] == {
        "current": "CONFIRMED",
        "requested": "RATED",
        "allowed": ["PREPARING", "CANCELLED"],
    }


def test_cancelling_without_a_reason_is_a_400(api, order):
    response = api.post(f"/api/v1/orders/{order.public_id}/transition", {"to": "CANCELLED"})
    assert_error(response, 400, "order_error")
    bad = api.post(f"/api/v1/orders/{order.public_id}/transition", {"to": "EATEN"})
    assert "to" in assert_error(bad, 400, "validation_error")["details"]


def test_menu_items_crud(api, tenant):
    created = api.post("/api/v1/menu-items", {"name_he": "סלט", "price_minor": 3200})
    assert created.status_code == 201, created.content
    path = f"/api/v1/menu-items/{created.json()['id']}"
    assert api.get("/api/v1/menu-items").json()[0]["name_he"] == "סלט"
    assert api.patch(path, {"available": False}).json()["available"] is False
    assert (
        "price_minor"
        in assert_error(api.patch(path, {"price_minor": -1}), 400, "validation_error")["details"]
    )
    assert (
        "name_he"
        in assert_error(
            api.post("/api/v1/menu-items", {"price_minor": 10}), 400, "validation_error"
        )["details"]
    )
    assert api.delete(path).status_code == 204
    with schema_context(tenant.schema_name):
        assert not MenuItem.objects.exists()


# --- webhook endpoints ----------------------------------------------------------------


def test_webhook_endpoints_crud_test_delivery_and_log(api, tenant):
    created = api.post(
        "/api/v1/webhook-endpoints",
        {"url": "https://hooks.example.com/wa", "events": ["message.new", "order.updated"]},
    )
    assert created.status_code == 201, created.content
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_")
    path = f"/api/v1/webhook-endpoints/{endpoint['id']}"
    assert "secret" not in api.get(path).json()
    assert [e["id"] for e in api.get("/api/v1/webhook-endpoints").json()] == [endpoint["id"]]

    changed = api.patch(path, {"events": ["message.status"], "is_active": True})
    assert changed.json()["events"] == ["message.status"]
    bad = api.patch(path, {"events": ["nope"], "url": "ftp://x"})
    assert "events" in assert_error(bad, 400, "validation_error")["details"]

    test = api.post(f"{path}/test")
    assert test.status_code == 202 and test.json()["event_type"] == "webhook.test"
    log = api.get(f"{path}/deliveries").json()
    assert [d["id"] for d in log["results"]] == [test.json()["id"]]
    assert api.get(f"{path}/deliveries", state="delivered").json()["results"] == []

    rotated = api.post(f"{path}/rotate-secret").json()["secret"]
    assert rotated.startswith("whsec_") and rotated != endpoint["secret"]

    assert api.delete(path).status_code == 204
    with schema_context(tenant.schema_name):
        assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


def test_a_webhook_url_that_is_not_a_url_is_a_field_error(api):
    response = api.post(
        "/api/v1/webhook-endpoints", {"url": "not a url", "events": ["message.new"]}
    )
    assert "url" in assert_error(response, 400, "validation_error")["details"]


# --- the schema and the docs ----------------------------------------------------------


def test_the_schema_describes_every_endpoint_and_the_error_format(tenant):
    response = Client(HTTP_HOST=host_of(tenant)).get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in (
        "/api/v1/sessions/{session_id}/qr/",
        "/api/v1/messages/",
        "/api/v1/messages/bulk/",
        "/api/v1/conversations/{conversation_id}/messages/",
        "/api/v1/orders/{order_id}/transition/",
        "/api/v1/webhook-endpoints/{endpoint_id}/deliveries/",
    ):
        assert path in paths, path
    assert "Error" in schema["components"]["schemas"]
    transition = paths["/api/v1/orders/{order_id}/transition/"]["post"]["responses"]
    assert transition["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_swagger_ui_is_served_from_local_static_files(tenant):
    page = Client(HTTP_HOST=host_of(tenant)).get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    bundle = Client(HTTP_HOST=host_of(tenant)).get(
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    )
    assert bundle.status_code == 200
