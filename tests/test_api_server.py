"""The REST API through the real web server (uvicorn): concurrent retries with one
Idempotency-Key, and a property-based run over the OpenAPI schema (schemathesis)."""

from __future__ import annotations

import itertools
import threading
import uuid

import httpx
import pytest
import schemathesis
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from messaging.models import Contact, Conversation, Message
from messaging.webhooks import webhook_endpoint_create
from orders.models import Order
from orders.services import menu_item_create, order_create, order_transition
from sessions_app.services import session_create
from tenants.api_keys import api_key_create
from tests.conftest import host_of

CUSTOMER = "+972501112233"


def test_concurrent_retries_with_one_idempotency_key_send_one_message(make_tenant, web_server):
    # Given a session and a key
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Desk", provider="sandbox")
    _, raw = api_key_create(tenant=tenant, name="POS", scopes=["send"])
    body = {"session": str(session.public_id), "to": CUSTOMER, "text": "Order 7 is ready"}
    headers = {
        "Host": host_of(tenant),
        "Authorization": f"Bearer {raw}",
        "Idempotency-Key": "order-7-ready",
    }
    barrier = threading.Barrier(8)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(base_url=web_server, timeout=30) as client:
            barrier.wait()
            response = client.post("/api/v1/messages", json=body, headers=headers)
        with lock:
            answers.append(response)

    # When eight clients send the same request with the same key at the same moment
    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every answer is a success naming the same message, and there is one message
    assert all(a.status_code in (200, 201) for a in answers), [a.text[:200] for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    with schema_context(tenant.schema_name):
        assert Message.objects.filter(direction="out").count() == 1


# --- property-based: generated requests against the schema ---------------------------


@pytest.fixture
def populated(make_tenant):
    """A tenant with one of everything, so generated requests reach real rows too."""
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Desk", provider="sandbox")
    with schema_context(tenant.schema_name):
        contact = Contact.objects.create(phone=CUSTOMER, push_name="Dana")
        conversation = Conversation.objects.create(contact=contact, session_id=session.pk)
        message = Message.objects.create(
            conversation=conversation,
            session_id=session.pk,
            direction="in",
            text="hi",
            status="received",
            provider_message_id=f"in-{uuid.uuid4().hex}",
        )
        item = menu_item_create(name_he="פיצה", price_minor=4500)
        order = order_create(
            contact=contact,
            session_id=session.pk,
            lines=[{"menu_item": item, "quantity": 1}],
            fulfilment="pickup",
        )
        order_transition(order_id=order.pk, to="CONFIRMED", actor_kind="customer")
        order = Order.objects.get(pk=order.pk)
        endpoint, _ = webhook_endpoint_create(
            url="https://hooks.example.com/x", events=["message.new"]
        )
    return {
        "tenant": tenant,
        "session_id": str(session.public_id),
        "message_id": str(message.public_id),
        "conversation_id": str(conversation.pk),
        "order_id": str(order.public_id),
        "item_id": str(item.pk),
        "endpoint_id": str(endpoint.pk),
    }


def _schema(web_server, tenant) -> dict:
    response = httpx.get(
        f"{web_server}/api/schema/?format=json", headers={"Host": host_of(tenant)}, timeout=30
    )
    assert response.status_code == 200
    return response.json()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_generated_requests_get_no_500_and_no_answer_outside_the_schema(populated, web_server):
    # Given the schema the server publishes, and a tenant with rows to act on; requests
    # are generated to fit the schema (positive) and to break it (negative)
    tenant = populated["tenant"]
    schema = schemathesis.openapi.from_dict(_schema(web_server, tenant))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40
    failures: list[str] = []

    for operation, mode in itertools.product(operations, list(schemathesis.GenerationMode)):
        # One key per run: the runs stay under the per-key rate limit
        _, raw = api_key_create(
            tenant=tenant, name=f"fuzz {operation.label}"[:80], scopes=["read", "send", "manage"]
        )
        headers = {"Host": host_of(tenant), "Authorization": f"Bearer {raw}"}

        @given(case=operation.as_strategy(mode), real_rows=st.booleans(), headers=st.just(headers))
        @settings(
            max_examples=10,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case, real_rows, headers):
            # Often the path names real rows; otherwise whatever was generated
            if case.path_parameters and real_rows:
                for name in case.path_parameters:
                    if name in populated:
                        case.path_parameters[name] = populated[name]
            response = case.call(base_url=web_server, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS)

        try:
            exercise()
        except Exception as error:  # collect every operation's problem, then fail once
            failures.append(f"{operation.label} ({mode.value}): {str(error)[:1500]}")

    # Then nothing answered 500, or outside what the schema says
    assert not failures, "\n\n".join(failures)
