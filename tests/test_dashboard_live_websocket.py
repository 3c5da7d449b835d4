"""The dashboard websocket against the real server (uvicorn) and channels-redis: what the
live pages hear, and who may listen.

A tenant's socket hears the events of that tenant's services (a message sent, an order
moved, a conversation taken over) and never another tenant's; anyone who is not a
signed-in, active user of the host's (active) tenant is refused with a code the browser
can tell apart (4401 not signed in, 4403 forbidden).
"""

from __future__ import annotations

import json
import socket
import uuid
from urllib.parse import urlparse

import pytest
from django.contrib.auth import get_user_model
from django_tenants.utils import schema_context
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tenants.services import tenant_suspend
from tests.conftest import OWNER_PASSWORD, host_of, login
from tests.test_dashboard_live import confirmed_order, sandbox

pytestmark = pytest.mark.integration
User = get_user_model()


def dashboard_socket(web_server: str, host: str, cookie: str | None):
    port = urlparse(web_server).port
    headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
    return connect(
        f"ws://{host}:{port}/ws/dashboard/",
        sock=socket.create_connection(("127.0.0.1", port)),
        origin=f"http://{host}:{port}",
        additional_headers=headers,
        proxy=None,
        open_timeout=10,
    )


def user_cookie(web_server, tenant, *, role="staff") -> str:
    email = f"{role}-{uuid.uuid4().hex[:6]}@{tenant.slug}.example.com"
    with schema_context(tenant.schema_name):
        User.objects.create_user(email=email, password=OWNER_PASSWORD, role=role)
    return login(web_server, tenant, email=email).cookies["sessionid"]


def next_event(ws, *, of_type: str, timeout: float = 10) -> dict:
    """The next event of `of_type` (skipping others, such as conversation updates)."""
    while True:
        event = json.loads(ws.recv(timeout=timeout))
        if event["type"] == of_type:
            return event


def hears_nothing(ws, within: float = 1.5) -> None:
    with pytest.raises(TimeoutError):
        ws.recv(timeout=within)


def close_code(web_server, host, cookie) -> int:
    with dashboard_socket(web_server, host, cookie) as ws, pytest.raises(ConnectionClosed):
        ws.recv(timeout=10)
    return ws.close_code


def test_each_tenants_socket_hears_only_its_own_messages_and_orders(make_tenant, web_server):
    # Given two tenants, each with a staff member's dashboard open
    pizza, sushi = make_tenant(), make_tenant()
    pizza_session, sushi_session = sandbox(pizza), sandbox(sushi)
    pizza_cookie, sushi_cookie = user_cookie(web_server, pizza), user_cookie(web_server, sushi)

    with (
        dashboard_socket(web_server, host_of(pizza), pizza_cookie) as pizza_ws,
        dashboard_socket(web_server, host_of(sushi), sushi_cookie) as sushi_ws,
    ):
        assert next_event(pizza_ws, of_type="hello")["tenant"] == pizza.slug
        assert next_event(sushi_ws, of_type="hello")["tenant"] == sushi.slug

        # When pizza sends a message (the outbound service publishes after commit)
        from messaging.outbound import message_send

        with schema_context(pizza.schema_name):
            message = message_send(session=pizza_session, to="+972501231234", text="Pizza!")

        # Then pizza's log hears it, with what a row needs, and sushi's hears nothing
        event = next_event(pizza_ws, of_type="message.new")
        assert event["message"]["id"] == str(message.public_id)
        assert event["message"]["text"] == "Pizza!" and event["message"]["direction"] == "out"
        assert event["message"]["contact"]["phone"] == "+972501231234"
        hears_nothing(sushi_ws)

        # And when sushi's order is confirmed, only sushi's board hears it
        order = confirmed_order(sushi, sushi_session)
        event = next_event(sushi_ws, of_type="order.updated")
        assert (event["order"]["pk"], event["order"]["status"]) == (order.pk, "CONFIRMED")
        hears_nothing(pizza_ws)


def test_staff_and_owner_sockets_both_hear_a_conversation_taken_over(make_tenant, web_server):
    from messaging.conversations import conversation_takeover_set
    from messaging.models import Contact, Conversation

    tenant = make_tenant()
    session = sandbox(tenant)
    with schema_context(tenant.schema_name):
        contact = Contact.objects.create(phone="+972507770000")
        conversation = Conversation.objects.create(contact=contact, session_id=session.pk)
    staff, owner = user_cookie(web_server, tenant), user_cookie(web_server, tenant, role="owner")

    with (
        dashboard_socket(web_server, host_of(tenant), staff) as staff_ws,
        dashboard_socket(web_server, host_of(tenant), owner) as owner_ws,
    ):
        next_event(staff_ws, of_type="hello")
        next_event(owner_ws, of_type="hello")
        with schema_context(tenant.schema_name):
            conversation_takeover_set(conversation=conversation, human=True)
        for ws in (staff_ws, owner_ws):
            event = next_event(ws, of_type="conversation.updated")
            assert event["conversation"] == {
                **event["conversation"],
                "id": conversation.pk,
                "human_takeover": True,
            }


def test_anonymous_and_other_tenants_sockets_are_refused(make_tenant, web_server):
    pizza, sushi = make_tenant(), make_tenant()
    pizza_cookie = user_cookie(web_server, pizza)

    assert close_code(web_server, host_of(pizza), None) == 4401
    assert close_code(web_server, host_of(pizza), "not-a-session") == 4401
    # pizza's session cookie on sushi's host: sushi's schema has no such session
    assert close_code(web_server, host_of(sushi), pizza_cookie) == 4401
    # a host that is no tenant at all
    assert close_code(web_server, "nobody.localhost", pizza_cookie) == 4403


def test_a_deactivated_user_or_a_changed_password_ends_the_socket_access(make_tenant, web_server):
    tenant = make_tenant()
    gone, changed = user_cookie(web_server, tenant), user_cookie(web_server, tenant)
    with schema_context(tenant.schema_name):
        users = list(User.objects.filter(role="staff").order_by("date_joined"))
        users[0].is_active = False
        users[0].save(update_fields=["is_active"])
        users[1].set_password("Another-Horse-43!")
        users[1].save(update_fields=["password"])
    assert close_code(web_server, host_of(tenant), gone) == 4401
    assert close_code(web_server, host_of(tenant), changed) == 4401


def test_a_suspended_tenants_socket_is_forbidden(make_tenant, web_server):
    tenant = make_tenant()
    cookie = user_cookie(web_server, tenant)
    tenant_suspend(tenant=tenant, reason="unpaid")
    assert close_code(web_server, host_of(tenant), cookie) == 4403


def test_a_dashboard_left_idle_keeps_hearing_events(make_tenant, web_server):
    """The channel layer's blocking read (BZPOPMIN, 5 s) must not trip the Redis client's
    own read timeout: a socket nobody writes to for a while stays alive."""
    import time

    from dashboard.realtime import tenant_event_publish

    tenant = make_tenant()
    with dashboard_socket(web_server, host_of(tenant), user_cookie(web_server, tenant)) as ws:
        next_event(ws, of_type="hello")
        time.sleep(12)  # longer than two blocking reads with nothing to read
        tenant_event_publish(schema_name=tenant.schema_name, event={"type": "order.updated"})
        assert next_event(ws, of_type="order.updated") == {"type": "order.updated"}


def test_the_sockets_left_open_keep_hearing_when_others_of_their_tenant_close(
    make_tenant, web_server
):
    """One group membership per process is shared by a tenant's sockets: closing some
    (even the first one, which joined the group) never cuts the others off."""
    from dashboard.realtime import tenant_event_publish

    tenant = make_tenant()
    cookie = user_cookie(web_server, tenant)
    sockets = [dashboard_socket(web_server, host_of(tenant), cookie) for _ in range(3)]
    try:
        for ws in sockets:
            next_event(ws, of_type="hello")
        sockets[0].close()
        sockets[1].close()
        tenant_event_publish(schema_name=tenant.schema_name, event={"type": "order.updated"})
        assert next_event(sockets[2], of_type="order.updated") == {"type": "order.updated"}

        # All closed, then a new one: the tenant's membership is made again
        sockets[2].close()
        with dashboard_socket(web_server, host_of(tenant), cookie) as again:
            next_event(again, of_type="hello")
            tenant_event_publish(
                schema_name=tenant.schema_name, event={"type": "message.new", "n": 2}
            )
            assert next_event(again, of_type="message.new") == {"type": "message.new", "n": 2}
    finally:
        for ws in sockets:
            ws.close()


def test_a_socket_answers_ping_and_ignores_what_it_cannot_read(make_tenant, web_server):
    tenant = make_tenant()
    with dashboard_socket(web_server, host_of(tenant), user_cookie(web_server, tenant)) as ws:
        next_event(ws, of_type="hello")
        ws.send("this is not json")
        ws.send(json.dumps(["nor", "an", "object"]))
        ws.send(json.dumps({"type": "ping"}))
        assert next_event(ws, of_type="pong") == {"type": "pong"}
