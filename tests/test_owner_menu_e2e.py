"""The owner menu end to end: a sandbox session held by a real session runner, inbound
routing, replies, broadcasts and reminders through a real Celery worker.

The owner and the customers are simulated phones (the sandbox's network); everything
between them and the database is the real product.
"""

import sys
import time
import uuid
from datetime import timedelta

import pytest
from django_tenants.utils import schema_context

from messaging.models import BulkSend, Contact, Message
from messaging.owner_models import OwnerAccount, OwnerReminder
from sessions_app.models import DesiredState, SandboxMessage, Status, WhatsAppSession
from sessions_app.providers.sandbox import sandbox_phone_writes
from sessions_app.services import session_create
from tests.conftest import ChildProcess, wait_until

pytestmark = pytest.mark.integration

OWNER = "+972501111111"
CUSTOMERS = ["+972502000001", "+972502000002", "+972502000003"]
PIN = "4826"
WAIT = 60  # seconds for one reply through runner and worker on a busy machine


class Phone:
    """A simulated phone talking to the business: writes, and reads what it got."""

    def __init__(self, session: WhatsAppSession, number: str, runner: ChildProcess):
        self.session, self.number, self.runner = session, number, runner
        self.read = 0

    def received(self) -> list[str]:
        return list(
            SandboxMessage.objects.filter(
                session_id=self.session.pk,
                direction=SandboxMessage.Direction.FROM_BUSINESS,
                phone=self.number,
            )
            .order_by("created_at", "id")
            .values_list("text", flat=True)
        )

    def write(self, text: str) -> None:
        sandbox_phone_writes(session_id=self.session.pk, phone_number=self.number, text=text)

    def expect(self, fragment: str, *, timeout: float = WAIT) -> str:
        """Wait for a message (after those read so far) holding `fragment`; return it."""

        def arrived():
            texts = self.received()
            for index in range(self.read, len(texts)):
                if fragment in texts[index]:
                    self.read = index + 1
                    return texts[index]
            return None

        return wait_until(
            arrived, timeout=timeout, what=f"{fragment!r} on {self.number}", child=self.runner
        )

    def says(self, text: str, expected: str) -> str:
        self.write(text)
        return self.expect(expected)


@pytest.fixture
def live_shop(make_tenant, process_logs, monkeypatch, celery_worker):
    """A connected sandbox session (real runner) with three customers who ordered today,
    the third of them opted out."""
    from orders.services import menu_item_create, order_create, order_transition

    monkeypatch.setenv("SESSION_SCAN_SECONDS", "0.5")
    tenant = make_tenant(language="en")
    session = session_create(
        tenant=tenant,
        name="Main",
        provider="sandbox",
        owner_numbers=[OWNER],
        customer_mode="ordering",
        humanization_profile="instant",
    )
    WhatsAppSession.objects.filter(pk=session.pk).update(
        device_jid="972509990000@sandbox", desired_state=DesiredState.RUNNING
    )
    session = WhatsAppSession.objects.select_related("tenant").get(pk=session.pk)
    orders = []
    with schema_context(tenant.schema_name):
        item = menu_item_create(name_he="פיצה", name_en="Pizza", price_minor=4500)
        for phone in CUSTOMERS:
            contact = Contact.objects.create(phone=phone, push_name=f"Customer {phone[-1]}")
            order = order_create(
                contact=contact,
                session_id=session.pk,
                lines=[{"menu_item": item, "quantity": 1}],
                fulfilment="pickup",
            )
            order_transition(order_id=order.pk, to="CONFIRMED", actor_kind="customer")
            orders.append(order)
        Contact.objects.filter(phone=CUSTOMERS[2]).update(opted_out=True)
    runner = ChildProcess(
        f"owner-runner-{uuid.uuid4().hex[:6]}",
        [sys.executable, "manage.py", "run_sessions"],
        process_logs,
    )
    try:
        wait_until(
            lambda: WhatsAppSession.objects.get(pk=session.pk).status == Status.CONNECTED,
            timeout=WAIT,
            what="the sandbox session connected",
            child=runner,
        )
        yield session, runner, orders
    finally:
        WhatsAppSession.objects.filter(pk=session.pk).update(desired_state=DesiredState.STOPPED)
        runner.stop()


def test_an_owner_runs_the_business_from_the_phone(live_shop):
    session, runner, orders = live_shop
    owner = Phone(session, OWNER, runner)
    first_customer = Phone(session, CUSTOMERS[0], runner)
    schema = session.tenant.schema_name

    # Registration: name, then the PIN twice
    owner.says("Hi", "What is your name?")
    owner.says("Dana", "Choose a PIN of 4 to 6 digits.")
    owner.says(PIN, "Write the same PIN again.")
    owner.says(PIN, "Main menu")

    # Today's orders, grouped by status
    listing = owner.says("1", "Today's orders (3)")
    assert "*Confirmed* (3)" in listing
    assert all(f"#{order.number}" in listing for order in orders)

    # Advance an order: its customer hears of it
    order = orders[0]
    before = len(first_customer.received())
    owner.says("2", "Which order moves on?")
    owner.says(str(order.number), "from Confirmed to Preparing?")
    owner.says("1", f"Order #{order.number} is now Preparing")
    wait_until(
        lambda: len(first_customer.received()) > before,
        timeout=WAIT,
        what="the customer's status message",
        child=runner,
    )
    with schema_context(schema):
        order.refresh_from_db()
        assert order.status == "PREPARING"
        event = order.events.order_by("-created_at", "-id").first()
        assert (event.actor_kind, event.actor_label) == ("owner", f"Dana ({OWNER})")

    # Broadcast to the three customers, one of whom opted out
    owner.says("5", "Write the message to send.")
    owner.says("Pizza night: two for one!", "Who gets it?")
    owner.says("1", "It goes to 3 people. 1 of them opted out")
    owner.says("1", "Sending to 3 people")
    owner.expect("Broadcast: sent ")
    report = owner.expect("Broadcast finished: sent 2 of 3.")
    assert "Not sent (opted out or a duplicate): 1." in report
    got = {
        phone: "Pizza night: two for one!" in Phone(session, phone, runner).received()
        for phone in CUSTOMERS
    }
    assert got == {CUSTOMERS[0]: True, CUSTOMERS[1]: True, CUSTOMERS[2]: False}
    with schema_context(schema):
        job = BulkSend.objects.get()
        assert (job.sent, job.suppressed, job.state) == (2, 1, "done")

    # A reminder a few seconds ahead arrives, once
    owner.says("7", "New reminder")
    owner.says("1", "What should I remind you of?")
    owner.says("Call the supplier", "When?")
    owner.says("in 8 seconds", "Remind you on")
    owner.says("1", "Reminder set for")
    owner.expect("⏰ Reminder: Call the supplier")
    with schema_context(schema):
        reminder = OwnerReminder.objects.get()
        assert reminder.state == "sent"
        assert reminder.sent_at >= reminder.due_at - timedelta(seconds=1)
    time.sleep(3)  # a second delivery would show up by now
    assert owner.received().count("⏰ Reminder: Call the supplier") == 1

    # Logout: the PIN is asked again
    owner.says("/logout", "You are logged out.")
    owner.says("/menu", "Please enter your PIN.")
    owner.says(PIN, "Main menu")

    # The PIN never stayed in the message log
    with schema_context(schema):
        texts = Message.objects.filter(direction="in").values_list("text", flat=True)
        assert not [text for text in texts if PIN in text]
        assert list(texts).count("••••") == 3


def test_a_customer_writing_menu_gets_the_customer_flow(live_shop):
    session, runner, _orders = live_shop
    customer = Phone(session, CUSTOMERS[1], runner)
    before = len(customer.received())

    customer.write("/menu")

    replies = wait_until(
        lambda: customer.received()[before:] or None,
        timeout=WAIT,
        what="the ordering bot's answer",
        child=runner,
    )
    assert not [r for r in replies if "Main menu" in r or "PIN" in r or "your name" in r]
    with schema_context(session.tenant.schema_name):
        assert not OwnerAccount.objects.exists()
