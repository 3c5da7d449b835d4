"""Conversation turns per second through the ordering bot.

A turn is what happens to one customer message after the inbound path stored it: the
routing (owner? takeover? per-customer limit?), the bot's turn under the conversation's
row lock (state, menu, cart), the reply stored `queued` with message_send, and after
commit its hand-off to the session's outbox and the dashboard event. Each customer
writes a whole order: greeting, "1 x 2", "2", "3", "done", "1" (delivery), an address,
"yes" (the order is created and confirmed: the confirmation is queued too).

Figures: turns per second from one process, and from THREADS threads at once; the
median and 95th percentile of one turn from one process (and the 95th with THREADS
threads competing for the database) (target: p95 under 100 ms; the seed documents ask
for a reply within 2 s end to end, humanisation aside). Runs on the bench database and on
Redis database 13; no runner takes the sends out of the outbox, so only the bot is timed.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from bench.common import Figure, fresh_database, percentile, redis_database_url

CUSTOMERS = int(os.environ.get("BENCH_ORDERING_CUSTOMERS", "60"))
THREADS = 4
REDIS_DB = 13
SCRIPT = ["Hi", "1 x 2", "2", "3", "done", "1", "Herzl 10, Tel Aviv", "yes"]


def _bench_redis() -> None:
    os.environ["REDIS_URL"] = redis_database_url(REDIS_DB)


def _setup():
    from django_tenants.utils import schema_context

    from messaging.models import MessagingSettings
    from orders.services import menu_item_create
    from sessions_app.services import session_create
    from tenants.services import NewTenant, tenant_create

    tenant = tenant_create(
        NewTenant(
            slug=f"bench{uuid.uuid4().hex[:8]}",
            name="Bench Falafel",
            owner_email="owner@bench.example.com",
            owner_password="Correct-Horse-42!",
        )
    )
    session = session_create(
        tenant=tenant, name="Orders", provider="sandbox", customer_mode="ordering",
        humanization_profile="instant",
    )  # fmt: skip
    with schema_context(tenant.schema_name):
        MessagingSettings.objects.update_or_create(
            pk=1,
            defaults={"duplicate_window_seconds": 0, "inbound_per_customer_per_minute": 1000},
        )
        for index, (name, price) in enumerate(
            [("Falafel", 2800), ("Shawarma", 4250), ("Salad", 1950), ("Lemonade", 1200)]
        ):
            menu_item_create(name_he=name, name_en=name, price_minor=price, sort_order=index)
    return tenant, session


def _stored(session, phone: str, text: str) -> int:
    """The inbound message as the inbound path leaves it (not timed)."""
    from messaging.models import Contact, Conversation, Message

    contact, _ = Contact.objects.get_or_create(phone=phone)
    conversation, _ = Conversation.objects.get_or_create(contact=contact, session_id=session.pk)
    return Message.objects.create(
        conversation=conversation, session_id=session.pk, direction="in", text=text,
        provider_message_id=f"BENCH{uuid.uuid4().hex}", status="received",
    ).pk  # fmt: skip


def _customers(schema: str, session, phones: list[str], durations: list[float]) -> None:
    from django.db import connection
    from django_tenants.utils import schema_context

    from messaging.routing import inbound_route_message

    try:
        with schema_context(schema):
            for phone in phones:
                for text in SCRIPT:
                    message_id = _stored(session, phone, text)
                    started = time.perf_counter()
                    route = inbound_route_message(message_id=message_id)
                    durations.append(time.perf_counter() - started)
                    if route != "ordering":
                        raise RuntimeError(f"routed to {route}, not to the bot")
    finally:
        connection.close()


def _phones(prefix: int, count: int) -> list[str]:
    return [f"+97252{prefix}{n:06d}" for n in range(count)]


def run() -> list[Figure]:
    _bench_redis()
    fresh_database()
    from django_tenants.utils import schema_context

    from messaging.models import Message
    from orders.models import Order

    tenant, session = _setup()
    schema = tenant.schema_name

    # warm up (imports, catalogues, first queries)
    _customers(schema, session, _phones(9, 2), [])

    serial: list[float] = []
    began = time.perf_counter()
    _customers(schema, session, _phones(1, CUSTOMERS), serial)
    serial_rate = len(serial) / (time.perf_counter() - began)

    parallel: list[float] = []
    per_thread = max(1, CUSTOMERS // THREADS)
    threads = [
        threading.Thread(
            target=_customers, args=(schema, session, _phones(2 + i, per_thread), parallel)
        )
        for i in range(THREADS)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parallel_rate = len(parallel) / (time.perf_counter() - began)

    with schema_context(schema):
        orders = Order.objects.filter(status="CONFIRMED").count()
        replies = Message.objects.filter(direction="out", status="queued").count()
    expected_orders = 2 + CUSTOMERS + per_thread * THREADS
    if orders != expected_orders or replies < expected_orders * len(SCRIPT):
        raise RuntimeError(f"{orders} orders and {replies} replies: the bot lost some turns")
    return [
        Figure("turns per second (1 process)", round(serial_rate, 1), "turns/s"),
        Figure(f"turns per second ({THREADS} threads)", round(parallel_rate, 1), "turns/s"),
        Figure(
            "turn p50, 1 process (inbound stored -> reply queued)",
            percentile(serial, 0.5) * 1000,
            "ms",
        ),
        Figure(
            "turn p95, 1 process (inbound stored -> reply queued)",
            percentile(serial, 0.95) * 1000,
            "ms",
            "< 100 ms",
        ),
        Figure(f"turn p95, {THREADS} threads at once", percentile(parallel, 0.95) * 1000, "ms"),
        Figure("orders confirmed through the bot", orders, "orders"),
    ]
