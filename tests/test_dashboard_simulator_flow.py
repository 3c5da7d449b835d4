"""The phone simulator end to end through the dashboard's own pages, with a real session
runner and a real Celery worker: add a sandbox session from the sessions page, scan its
QR code from the simulator, write as a customer, and read the bot's answer in the
simulator's transcript, as the phone received it."""

from __future__ import annotations

import pytest
from django.test import Client

from sessions_app.models import Status, WhatsAppSession
from tests.conftest import host_of, owner_email, wait_until
from tests.test_dashboard_pages import signed_in

pytestmark = pytest.mark.integration

CUSTOMER = "+972527654321"
OWNER = "+972501234567"


def test_a_customer_writes_in_the_simulator_and_sees_the_bots_answer(
    make_tenant, session_runner, celery_worker
):
    tenant = make_tenant(name="Falafel Place", language="en")
    owner: Client = signed_in(tenant, owner_email(tenant))
    assert owner.post("/menu/", {"name_he": "פלאפל", "name_en": "Falafel", "price": "28",
                                 "available": "on"}).status_code == 302  # fmt: skip
    added = owner.post(
        "/sessions/add/",
        {"name": "Orders", "provider": "sandbox", "owner_numbers": OWNER,
         "customer_mode": "ordering", "humanization_profile": "instant", "start_now": "on"},
    )  # fmt: skip
    assert added.status_code == 302
    session = WhatsAppSession.objects.get(tenant=tenant, name="Orders")

    # The runner shows a QR code; the simulator scans it as the owner's phone.
    wait_until(
        lambda: WhatsAppSession.objects.get(pk=session.pk).qr_payload,
        timeout=45,
        what="a QR code for the sandbox session",
    )
    scanned = owner.post(
        f"/simulator/{session.public_id}/scan/", {"phone": OWNER}, HTTP_X_REQUESTED_WITH="fetch"
    )
    assert scanned.status_code == 202, scanned.content
    wait_until(
        lambda: WhatsAppSession.objects.get(pk=session.pk).status == Status.CONNECTED,
        timeout=30,
        what="the session connected after the scan",
    )

    # A customer writes from the simulator; the bot's answer reaches that phone.
    written = owner.post(
        f"/simulator/{session.public_id}/write/",
        {"phone": CUSTOMER, "text": "hi", "name": "Dana"},
        HTTP_X_REQUESTED_WITH="fetch",
    )
    assert written.status_code == 201

    def transcript():
        return owner.get(f"/simulator/{session.public_id}/messages/", {"phone": CUSTOMER}).json()[
            "messages"
        ]

    messages = wait_until(
        lambda: (rows := transcript()) and any(m["direction"] == "out" for m in rows) and rows,
        timeout=60,
        what="the bot's answer on the customer's simulated phone",
    )
    assert messages[0]["direction"] == "in" and messages[0]["text"] == "hi"
    assert messages[0]["delivered"] is True  # the business received it
    answer = next(m for m in messages if m["direction"] == "out")
    assert "Falafel" in answer["text"] or "פלאפל" in answer["text"], answer["text"]
    # Nothing of it shows on another number's phone.
    page = owner.get("/simulator/", {"session": session.public_id, "phone": OWNER})
    assert answer["text"] not in page.content.decode()
    assert Client(HTTP_HOST=host_of(tenant)).get("/simulator/").status_code == 302
