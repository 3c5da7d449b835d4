"""The ordering bot end to end, through real processes: a sandbox session held by a real
session runner, a real Celery worker routing inbound messages to the bot, and real Celery
beat running the orders sweep (every second here; the rating delay set to 0 minutes).

A simulated phone writes (sandbox_phone_writes); what the phone received is read back
from the sandbox transcript (SandboxMessage), in order.
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest
from django_tenants.utils import schema_context

from messaging.models import MessagingSettings
from orders.models import Order, OrderSettings, OrderStatus
from orders.services import menu_item_create, order_transition
from sessions_app.models import DesiredState, SandboxMessage, Status, WhatsAppSession
from sessions_app.providers.sandbox import sandbox_phone_writes
from sessions_app.services import session_create
from tests.conftest import ChildProcess, wait_until
from tests.test_session_runner import GroupListener

pytestmark = pytest.mark.integration

CUSTOMER = "+972508880008"
OWNER = "+972509990009"
S = OrderStatus
PROCESS_ENV = {
    "SESSION_SCAN_SECONDS": "0.5",
    "SESSION_LEASE_TTL_SECONDS": "6",
    "ORDERS_SWEEP_SECONDS": "1",
}


@pytest.fixture(scope="module")
def processes(platform, django_db_blocker, process_logs, celery_worker, tmp_path_factory):
    """A session runner and Celery beat for the module (the worker is the suite's)."""
    beat_dir = tmp_path_factory.mktemp("beat")
    with pytest.MonkeyPatch.context() as patch, django_db_blocker.unblock():
        for name, value in PROCESS_ENV.items():
            patch.setenv(name, value)
        runner = ChildProcess(
            f"orders-runner-{uuid.uuid4().hex[:6]}",
            [sys.executable, "manage.py", "run_sessions", "--name", f"orders-{os.getpid()}"],
            process_logs,
        )
        beat = ChildProcess(
            "orders-beat",
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
             "--pidfile", str(beat_dir / "beat.pid")],
            process_logs,
        )  # fmt: skip
    yield {"runner": runner, "beat": beat}
    runner.stop()
    beat.stop()


@pytest.fixture
def restaurant(make_tenant, processes):
    """A tenant with a menu, a connected `ordering` sandbox session and short delays."""
    tenant = make_tenant(name="Falafel Place")
    session = session_create(
        tenant=tenant,
        name="Orders",
        provider="sandbox",
        customer_mode="ordering",
        humanization_profile="instant",
        owner_numbers=[OWNER],
    )
    WhatsAppSession.objects.filter(pk=session.pk).update(
        device_jid=f"97250{uuid.uuid4().int % 10**7:07d}@sandbox",
        desired_state=DesiredState.RUNNING,
    )
    with schema_context(tenant.schema_name):
        menu_item_create(name_he="פלאפל", name_en="Falafel", price_minor=2800, sort_order=1)
        menu_item_create(name_he="שווארמה", name_en="Shawarma", price_minor=4250, sort_order=2)
        OrderSettings.objects.update_or_create(
            pk=1,
            defaults={
                "rating_delay_minutes": 0,
                "promo_text": "תודה! קוד הנחה להזמנה הבאה: SAVE10",
                "apology_text": "We are very sorry.",
                "support_contact": "03-5551234",
            },
        )
        # A whole order is a dozen replies to one customer within a minute: more than the
        # default per-recipient limits allow without waiting (see the README).
        MessagingSettings.objects.update_or_create(
            pk=1, defaults={"outbound_burst": 0, "outbound_per_recipient_per_minute": 60}
        )

    def connected():
        return WhatsAppSession.objects.get(pk=session.pk).status == Status.CONNECTED

    wait_until(connected, timeout=45, what="the sandbox session connected",
               child=processes["runner"])  # fmt: skip
    yield tenant, WhatsAppSession.objects.select_related("tenant").get(pk=session.pk)
    WhatsAppSession.objects.filter(pk=session.pk).update(desired_state=DesiredState.STOPPED)


def _received(session, phone: str = CUSTOMER) -> list[str]:
    return list(
        SandboxMessage.objects.filter(session=session, phone=phone, direction="out")
        .order_by("created_at", "id")
        .values_list("text", flat=True)
    )


def _wait_received(session, count: int, phone: str = CUSTOMER) -> list[str]:
    return wait_until(
        lambda: (texts := _received(session, phone)) and len(texts) >= count and texts,
        timeout=40,
        what=f"{count} messages on {phone}'s phone",
    )


class Phone:
    def __init__(self, session):
        self.session = session
        self.count = 0

    def writes(self, text: str) -> str:
        """Write, and wait for the one answer; returns it."""
        sandbox_phone_writes(
            session_id=self.session.pk, phone_number=CUSTOMER, text=text, push_name="Dana"
        )
        return self.expect()

    def expect(self) -> str:
        self.count += 1
        return _wait_received(self.session, self.count)[self.count - 1]


def _order(tenant) -> Order:
    with schema_context(tenant.schema_name):
        return Order.objects.get()


def _advance(tenant, order: Order, phone: Phone, to: str) -> str:
    with schema_context(tenant.schema_name):
        order_transition(order_id=order.pk, to=to, actor_kind="staff", actor_label="kitchen")
    return phone.expect()


def _rated(tenant) -> Order:
    def rated():
        order = _order(tenant)
        return order if order.status == S.RATED else None

    return wait_until(rated, timeout=30, what="the order RATED")


def test_a_hebrew_order_from_greeting_to_rated_with_promo(restaurant):
    tenant, session = restaurant
    listener = GroupListener(tenant)
    phone = Phone(session)

    # Greeting -> menu -> items -> cart -> delivery -> address -> confirm, in Hebrew
    assert phone.writes("שלום").splitlines()[:4] == [
        "שלום Dana, ברוכים הבאים לFalafel Place!",
        "התפריט שלנו:",
        "1. פלאפל — 28.00 ₪",
        "2. שווארמה — 42.50 ₪",
    ]
    assert phone.writes("2 x 2").startswith("נוסף לסל.\nהסל שלך:\n2 × שווארמה — 85.00 ₪")  # noqa: RUF001
    assert phone.writes("1").startswith("כמה פלאפל?")
    assert phone.writes("3").endswith('שלחו מנות נוספות, או "סיום" כדי להמשיך.')
    assert "משלוח או איסוף עצמי?" in phone.writes("סיום")
    assert phone.writes("משלוח") == "לאן לשלוח? שלחו את הכתובת."
    assert "משלוח אל: הרצל 10, תל אביב" in phone.writes("הרצל 10, תל אביב")
    confirmation = phone.writes("כן")

    # The order is confirmed, exact total, and on the live board at once
    order = _order(tenant)
    assert order.status == S.CONFIRMED and order.total_minor == 2 * 4250 + 3 * 2800 == 16900
    assert confirmation.splitlines() == [
        f"הזמנה #{order.number} אושרה. תודה!",
        "2 × שווארמה — 85.00 ₪",  # noqa: RUF001
        "3 × פלאפל — 84.00 ₪",  # noqa: RUF001
        'סה"כ: 169.00 ₪',
        "משלוח אל: הרצל 10, תל אביב",
    ]
    wait_until(
        lambda: any(
            e["type"] == "order.updated" and e["order"]["status"] == "CONFIRMED"
            for e in listener.drain()
        ),
        timeout=10,
        what="order.updated on the board",
    )

    # Staff advance through every status; the customer hears of each
    assert _advance(tenant, order, phone, S.PREPARING) == f"הזמנה #{order.number} בהכנה."
    assert _advance(tenant, order, phone, S.OUT_FOR_DELIVERY) == (
        f"הזמנה #{order.number} בדרך אליך."
    )
    assert _advance(tenant, order, phone, S.DELIVERED) == (f"הזמנה #{order.number} נמסרה. בתיאבון!")

    # The scheduled job prompts for a rating; 5 -> the promo, RATED
    assert phone.expect() == (
        f"איך הייתה הזמנה #{order.number}? השיבו במספר מ-1 (גרוע) עד 5 (מצוין)."
    )
    assert phone.writes("5") == "תודה! קוד הנחה להזמנה הבאה: SAVE10"
    rated = _rated(tenant)
    assert rated.rating == 5
    # every message reached the phone once, in order
    assert len(_received(session)) == phone.count == 13


def test_an_english_order_picked_up_and_rated_two_gets_an_apology_and_alerts_the_owner(
    restaurant,
):
    tenant, session = restaurant
    phone = Phone(session)

    assert phone.writes("Hi there").startswith("Hello Dana, welcome to Falafel Place!")
    assert phone.writes("1 2").startswith("Added to your cart.\nYour cart:\n2 × Falafel")  # noqa: RUF001
    assert phone.writes("done").endswith("Reply 1 for delivery or 2 for pickup.")
    assert phone.writes("pickup").endswith(
        'Reply "yes" to confirm the order, or "no" to change it.'
    )
    confirmation = phone.writes("yes")
    order = _order(tenant)
    assert confirmation.startswith(f"Order #{order.number} is confirmed. Thank you!")
    assert "Total: 56.00 ₪" in confirmation

    assert (
        _advance(tenant, order, phone, S.PREPARING) == f"Order #{order.number} is being prepared."
    )
    assert _advance(tenant, order, phone, S.DELIVERED) == (
        f"Order #{order.number} is ready for pickup. Enjoy!"
    )
    assert phone.expect().startswith(f"How was order #{order.number}?")
    assert phone.writes("2") == "We are very sorry.\nPlease contact us: 03-5551234"

    rated = _rated(tenant)
    assert rated.rating == 2
    (alert,) = _wait_received(session, 1, phone=OWNER)
    assert alert == f"הזמנה #{order.number} דורגה 2/5 על ידי Dana {CUSTOMER}."
