"""No secret and no message body in any log line, across a whole order flow.

The flow runs through the real processes (session runner, Celery worker and beat, the
web server) and touches every kind of secret the product holds: an owner registers a
PIN on WhatsApp, a customer orders and gives an address, staff advance the order, a
Twilio session sends with its auth token, an integrator calls the API with a key, and a
webhook endpoint with its secret receives the events. Then every line those processes
and this one logged is read back.
"""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from django_tenants.utils import schema_context

from messaging.outbound import message_send
from messaging.webhooks import webhook_endpoint_create
from orders.models import OrderStatus
from sessions_app.models import Status
from sessions_app.providers.sandbox import sandbox_phone_writes
from sessions_app.services import session_connected, session_create
from tenants.api_keys import api_key_create
from tests.conftest import host_of, wait_until
from tests.test_ordering_bot_e2e import (  # noqa: F401 - fixtures used by name
    OWNER,
    Phone,
    _advance,
    _order,
    _received,
    processes,
    restaurant,
)
from tests.twilio_standin import shared_standin

pytestmark = pytest.mark.integration

PIN = "482716"
ADDRESS = "Rehov Sodi 77, apartment 13, ring twice"
TWILIO_TEXT = "Your table for four is ready at the window seat tonight"


def _owner_writes(session, text: str, answers_before: int) -> str:
    sandbox_phone_writes(session_id=session.pk, phone_number=OWNER, text=text, push_name="Avi")
    texts = wait_until(
        lambda: len(t := _received(session, OWNER)) > answers_before and t,
        timeout=40,
        what=f"the owner menu's answer to message {answers_before + 1}",
    )
    return texts[answers_before]


def test_an_order_flow_logs_no_pin_token_secret_or_message_body(
    restaurant,  # noqa: F811
    web_server,
    process_logs,
    caplog,
):
    caplog.set_level(logging.DEBUG)
    tenant, session = restaurant

    # An owner registers on WhatsApp: name, PIN, PIN again
    for answers, text in enumerate(("hello", "Avi", PIN, PIN)):
        _owner_writes(session, text, answers)

    # A customer orders for delivery to a private address; staff advance it
    phone = Phone(session)
    phone.writes("שלום")
    phone.writes("1 2")
    phone.writes("סיום")
    phone.writes("משלוח")
    assert ADDRESS in phone.writes(ADDRESS)
    phone.writes("כן")
    order = _order(tenant)
    _advance(tenant, order, phone, OrderStatus.PREPARING)

    # An integrator calls the API with a key; a webhook endpoint has a secret
    _key, raw_key = api_key_create(tenant=tenant, name="POS", scopes=["read", "send"])
    with schema_context(tenant.schema_name):
        _endpoint, webhook_secret = webhook_endpoint_create(
            url="http://127.0.0.1:9/hooks", events=["message.new", "order.updated"]
        )
    api = httpx.get(
        f"{web_server}/api/v1/orders",
        headers={"Host": host_of(tenant), "Authorization": f"Bearer {raw_key}"},
        timeout=10,
    )
    assert api.status_code == 200, api.text[:300]
    bad_key = httpx.get(
        f"{web_server}/api/v1/orders",
        headers={"Host": host_of(tenant), "Authorization": f"Bearer {raw_key}x"},
        timeout=10,
    )
    assert bad_key.status_code == 401

    # A Twilio session sends with its auth token
    account_sid, auth_token = shared_standin().add_account()
    twilio = session_create(
        tenant=tenant,
        name="Twilio line",
        provider="twilio",
        twilio_account_sid=account_sid,
        twilio_auth_token=auth_token,
        twilio_from_number="+14155550123",
        check_credentials=False,  # this process talks to no Twilio; the worker does
    )
    session_connected(session_id=twilio.pk, phone_number="+14155550123")
    with schema_context(tenant.schema_name):
        sent = message_send(session=twilio, to="+972507770007", text=TWILIO_TEXT)

    def twilio_sent():
        with schema_context(tenant.schema_name):
            sent.refresh_from_db()
            return sent.status in ("sent", "delivered", "read")

    wait_until(twilio_sent, timeout=40, what="the Twilio send")
    assert twilio.__class__.objects.get(pk=twilio.pk).status == Status.CONNECTED

    # Then: every line logged by the processes and by this test holds none of them
    logged = "\n".join(path.read_text(errors="replace") for path in process_logs.glob("*.log"))
    logged += "\n" + "\n".join(record.getMessage() for record in caplog.records)
    assert len(logged) > 1000, "the processes logged nothing: the check would prove nothing"
    forbidden = {
        "the owner's PIN": re.compile(rf"(?<!\d){PIN}(?!\d)"),
        "the API key": re.compile(re.escape(raw_key[8:])),
        "the webhook secret": re.compile(re.escape(webhook_secret.split("_", 1)[-1])),
        "the Twilio auth token": re.compile(re.escape(auth_token)),
        "the customer's address (a message body)": re.compile(re.escape(ADDRESS[:20])),
        "a Twilio message body": re.compile(re.escape(TWILIO_TEXT[:24])),
    }
    leaks = [what for what, pattern in forbidden.items() if pattern.search(logged)]
    assert leaks == []
