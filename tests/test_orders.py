"""Orders: the state machine (every legal and illegal move), the row lock under two real
connections, what each transition leaves behind, the menu services, money and the day's
selectors. Real PostgreSQL and Redis; rows are committed."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from messaging.models import Contact, Message, WebhookDelivery, WebhookEndpoint
from orders.events import order_as_event
from orders.models import MenuItem, Order, OrderEvent, OrderSettings, OrderStatus
from orders.money import money_decimal, money_format
from orders.selectors import orders_of_day, orders_summary
from orders.services import (
    TRANSITIONS,
    IllegalTransition,
    OrderError,
    menu_item_create,
    menu_item_delete,
    menu_item_update,
    order_create,
    order_next_status,
    order_rate,
    order_transition,
    ordering_bot_pause_set,
)
from sessions_app.services import session_create
from tests.conftest import module_tenant
from tests.test_session_runner import GroupListener

S = OrderStatus
CUSTOMER = "+972501110001"
OWNER = "+972502220002"

LEGAL_DELIVERY = {
    (S.DRAFT, S.CONFIRMED), (S.DRAFT, S.CANCELLED),
    (S.CONFIRMED, S.PREPARING), (S.CONFIRMED, S.CANCELLED),
    (S.PREPARING, S.OUT_FOR_DELIVERY), (S.PREPARING, S.CANCELLED),
    (S.OUT_FOR_DELIVERY, S.DELIVERED),
    (S.DELIVERED, S.RATED),
}  # fmt: skip
LEGAL_PICKUP = (LEGAL_DELIVERY - {(S.PREPARING, S.OUT_FOR_DELIVERY)}) | {(S.PREPARING, S.DELIVERED)}
ALL_PAIRS = [(a, b) for a in S.values for b in S.values]


@pytest.fixture(scope="module")
def tenant(platform, django_db_blocker):
    with module_tenant(django_db_blocker) as tenant:
        yield tenant


@pytest.fixture
def shop(tenant, committed_db):
    """The tenant's schema with a menu and a customer; orders are removed afterwards."""
    session = session_create(
        tenant=tenant,
        name=f"Front {uuid.uuid4().hex[:6]}",
        provider="sandbox",
        owner_numbers=[OWNER],
        humanization_profile="instant",
    )
    with schema_context(tenant.schema_name):
        falafel = menu_item_create(name_he="פלאפל", name_en="Falafel", price_minor=2800)
        salad = menu_item_create(name_he="סלט", name_en="Salad", price_minor=1950)
        contact, _ = Contact.objects.get_or_create(phone=CUSTOMER, defaults={"language": "en"})
        yield {
            "tenant": tenant,
            "session": session,
            "falafel": falafel,
            "salad": salad,
            "contact": contact,
        }
        Order.objects.all().delete()
        MenuItem.objects.all().delete()
        Message.objects.all().delete()
        WebhookEndpoint.objects.all().delete()
        OrderSettings.objects.all().delete()
    session.delete()


def _order(shop, *, status=S.DRAFT, fulfilment="delivery", rating=None) -> Order:
    order = order_create(
        contact=shop["contact"],
        session_id=shop["session"].pk,
        lines=[{"menu_item": shop["falafel"], "quantity": 2}],
        fulfilment=fulfilment,
        address="Herzl 1, Tel Aviv" if fulfilment == "delivery" else "",
    )
    Order.objects.filter(pk=order.pk).update(status=status, rating=rating)
    order.refresh_from_db()
    return order


def _move(order: Order, to: str) -> Order:
    if to == S.RATED:
        return order_rate(order_id=order.pk, rating=5)
    note = "out of falafel" if to == S.CANCELLED else ""
    return order_transition(order_id=order.pk, to=to, actor_kind="staff", note=note)


# --- the table ------------------------------------------------------------------------


@pytest.mark.parametrize("fulfilment", ["delivery", "pickup"])
@pytest.mark.parametrize(("current", "to"), ALL_PAIRS)
def test_every_move_is_legal_exactly_when_the_table_says_so(shop, fulfilment, current, to):
    # Given an order in `current`
    legal = (current, to) in (LEGAL_DELIVERY if fulfilment == "delivery" else LEGAL_PICKUP)
    order = _order(shop, status=current, fulfilment=fulfilment)

    # When anyone asks for `to`
    if legal:
        moved = _move(order, to)
        # Then a legal move changes the status, stamps its time and leaves one event
        assert moved.status == to
        (event,) = OrderEvent.objects.filter(order=order)
        assert (event.from_status, event.to_status) == (current, to)
        stamp = {"CANCELLED": "cancelled_at", "OUT_FOR_DELIVERY": "out_for_delivery_at"}.get(
            to, f"{to.lower()}_at"
        )
        assert getattr(Order.objects.get(pk=order.pk), stamp) is not None
    else:
        with pytest.raises(IllegalTransition) as raised:
            _move(order, to)
        # Then an illegal one says what is allowed, and changes nothing
        assert raised.value.current == current and raised.value.requested == to
        assert to not in raised.value.allowed
        assert Order.objects.get(pk=order.pk).status == current
        assert not OrderEvent.objects.filter(order=order).exists()


def test_the_table_names_every_status():
    assert set(TRANSITIONS) == set(S.values)
    assert TRANSITIONS[S.RATED] == () and TRANSITIONS[S.CANCELLED] == ()


def test_illegal_transition_is_an_order_error_with_a_clear_message(shop):
    order = _order(shop, status=S.DELIVERED)
    with pytest.raises(OrderError, match="DELIVERED cannot become PREPARING; allowed: RATED"):
        order_transition(order_id=order.pk, to=S.PREPARING, actor_kind="staff")


def test_cancelling_needs_a_reason_which_the_customer_is_told(shop):
    order = _order(shop, status=S.CONFIRMED)
    with pytest.raises(OrderError, match="reason"):
        order_transition(order_id=order.pk, to=S.CANCELLED, actor_kind="owner", note="  ")
    assert Order.objects.get(pk=order.pk).status == S.CONFIRMED

    order_transition(order_id=order.pk, to=S.CANCELLED, actor_kind="owner", note="Kitchen closed")

    message = Message.objects.get(idempotency_key=f"order-{order.public_id}-CANCELLED")
    assert message.text == f"Order #{order.number} was cancelled. Reason: Kitchen closed"
    assert Order.objects.get(pk=order.pk).cancel_reason == "Kitchen closed"


def test_rated_needs_a_rating_through_order_rate(shop):
    order = _order(shop, status=S.DELIVERED)
    with pytest.raises(OrderError, match="rating"):
        order_transition(order_id=order.pk, to=S.RATED, actor_kind="staff")
    with pytest.raises(ValidationError):
        order_rate(order_id=order.pk, rating=6)
    with pytest.raises(ValidationError):
        order_rate(order_id=order.pk, rating=4.5)


def test_unknown_actor_kind_and_unknown_order_are_refused(shop):
    order = _order(shop)
    with pytest.raises(OrderError, match="actor kind"):
        order_transition(order_id=order.pk, to=S.CONFIRMED, actor_kind="robot")
    with pytest.raises(OrderError, match="no order"):
        order_transition(order_id=10**9, to=S.CONFIRMED, actor_kind="staff")


@pytest.mark.parametrize(
    ("status", "fulfilment", "expected"),
    [
        (S.DRAFT, "delivery", S.CONFIRMED),
        (S.CONFIRMED, "delivery", S.PREPARING),
        (S.PREPARING, "delivery", S.OUT_FOR_DELIVERY),
        (S.PREPARING, "pickup", S.DELIVERED),
        (S.OUT_FOR_DELIVERY, "delivery", S.DELIVERED),
        (S.DELIVERED, "delivery", None),
        (S.RATED, "pickup", None),
        (S.CANCELLED, "delivery", None),
    ],
)
def test_next_status_follows_the_happy_path(status, fulfilment, expected):
    assert order_next_status(Order(status=status, fulfilment=fulfilment)) == expected


# --- concurrency ----------------------------------------------------------------------


def test_two_staff_advancing_at_once_make_one_transition(shop):
    # Given a committed CONFIRMED order, and two threads with their own connections
    order = _order(shop, status=S.CONFIRMED)
    schema = shop["tenant"].schema_name
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def advance(label: str) -> None:
        try:
            with schema_context(schema):
                barrier.wait(timeout=10)
                try:
                    order_transition(
                        order_id=order.pk, to=S.PREPARING, actor_kind="staff", actor_label=label
                    )
                    outcomes.append("moved")
                except IllegalTransition as error:
                    outcomes.append(f"refused in {error.current}")
        finally:
            connection.close()

    # When both press "advance" at the same moment
    threads = [threading.Thread(target=advance, args=(f"staff {n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then exactly one transition happened; the other saw PREPARING under the lock
    assert sorted(outcomes) == ["moved", "refused in PREPARING"]
    assert Order.objects.get(pk=order.pk).status == S.PREPARING
    assert OrderEvent.objects.filter(order=order).count() == 1
    assert Message.objects.filter(idempotency_key=f"order-{order.public_id}-PREPARING").count() == 1


# --- what a transition leaves behind --------------------------------------------------


def test_a_transition_records_who_and_tells_customer_dashboard_and_webhooks_after_commit(shop):
    # Given a draft order, a dashboard listening and a webhook endpoint for orders
    order = _order(shop)
    listener = GroupListener(shop["tenant"])
    WebhookEndpoint.objects.create(
        url="https://hooks.example.com/orders", secret="s3cret", events=["order.updated"]
    )

    # When the customer confirms it
    order_transition(order_id=order.pk, to=S.CONFIRMED, actor_kind="customer", actor_label=CUSTOMER)

    # Then the event says who
    event = OrderEvent.objects.get(order=order)
    assert (event.actor_kind, event.actor_label) == ("customer", CUSTOMER)
    # and the customer got the summary and total, in English (their language)
    message = Message.objects.get(idempotency_key=f"order-{order.public_id}-CONFIRMED")
    assert message.status == "queued" and message.conversation.contact.phone == CUSTOMER
    assert message.text.splitlines() == [
        f"Order #{order.number} is confirmed. Thank you!",
        "2 × Falafel — 56.00 ₪",  # noqa: RUF001
        "Total: 56.00 ₪",
        "Delivery to: Herzl 1, Tel Aviv",
    ]
    # and the dashboards and the webhooks got order.updated
    events = [e for e in listener.drain() if e["type"] == "order.updated"]
    assert events and events[-1]["order"]["status"] == "CONFIRMED"
    assert events[-1]["order"]["number"] == order.number
    delivery = WebhookDelivery.objects.get(event_type="order.updated")
    assert delivery.payload["status"] == "CONFIRMED"


def test_a_rolled_back_transition_tells_nobody(shop):
    from django.db import transaction

    order = _order(shop)
    with pytest.raises(RuntimeError), transaction.atomic():
        order_transition(order_id=order.pk, to=S.CONFIRMED, actor_kind="staff")
        raise RuntimeError("the caller failed")
    assert Order.objects.get(pk=order.pk).status == S.DRAFT
    assert not Message.objects.filter(idempotency_key__startswith=f"order-{order.public_id}")


def test_customer_messages_are_in_the_customers_language(shop):
    Contact.objects.filter(pk=shop["contact"].pk).update(language="ar")
    order = _order(shop, status=S.CONFIRMED)
    order_transition(order_id=order.pk, to=S.PREPARING, actor_kind="staff")
    message = Message.objects.get(idempotency_key=f"order-{order.public_id}-PREPARING")
    assert message.text == f"الطلب #{order.number} قيد التحضير."
    Contact.objects.filter(pk=shop["contact"].pk).update(language="")  # the tenant's: Hebrew
    order_transition(order_id=order.pk, to=S.OUT_FOR_DELIVERY, actor_kind="staff")
    message = Message.objects.get(idempotency_key=f"order-{order.public_id}-OUT_FOR_DELIVERY")
    assert message.text == f"הזמנה #{order.number} בדרך אליך."
    Contact.objects.filter(pk=shop["contact"].pk).update(language="en")


def test_pickup_orders_are_ready_for_pickup_instead_of_delivered(shop):
    order = _order(shop, status=S.PREPARING, fulfilment="pickup")
    order_transition(order_id=order.pk, to=S.DELIVERED, actor_kind="staff")
    message = Message.objects.get(idempotency_key=f"order-{order.public_id}-DELIVERED")
    assert message.text == f"Order #{order.number} is ready for pickup. Enjoy!"


def test_a_high_rating_gets_the_promo_text(shop):
    OrderSettings.objects.update_or_create(pk=1, defaults={"promo_text": "10% off: CODE10"})
    order = _order(shop, status=S.DELIVERED)
    rated = order_rate(order_id=order.pk, rating=5, comment="great")
    assert (rated.status, rated.rating, rated.rating_comment) == (S.RATED, 5, "great")
    message = Message.objects.get(idempotency_key=f"order-{order.public_id}-RATED")
    assert message.text == "10% off: CODE10"
    assert not Message.objects.filter(conversation__contact__phone=OWNER).exists()


def test_a_low_rating_gets_an_apology_with_support_and_alerts_the_owner(shop):
    OrderSettings.objects.update_or_create(
        pk=1, defaults={"apology_text": "We are sorry.", "support_contact": "03-1234567"}
    )
    order = _order(shop, status=S.DELIVERED)
    order_rate(order_id=order.pk, rating=2)
    message = Message.objects.get(idempotency_key=f"order-{order.public_id}-RATED")
    assert message.text == "We are sorry.\nPlease contact us: 03-1234567"
    alert = Message.objects.get(conversation__contact__phone=OWNER)
    assert alert.text.startswith(f"הזמנה #{order.number} דורגה 2/5")


# --- creating orders, money ------------------------------------------------------------


def test_order_totals_are_exact_integers_and_numbers_count_up(shop):
    first = order_create(
        contact=shop["contact"],
        session_id=shop["session"].pk,
        lines=[
            {"menu_item": shop["salad"], "quantity": 3},
            {"menu_item": shop["falafel"].pk, "quantity": 1},
        ],
        fulfilment="pickup",
    )
    second = _order(shop)
    assert first.total_minor == 3 * 1950 + 2800 == 8650
    assert isinstance(first.total_minor, int)
    assert second.number == first.number + 1
    assert money_format(first.total_minor, "ILS") == "86.50 ₪"
    assert str(money_decimal(8650, "ILS")) == "86.50"
    assert str(money_decimal(1234, "KWD")) == "1.234"
    with pytest.raises(TypeError):
        money_decimal(12.5, "ILS")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"lines": []}, "lines"),
        ({"lines": [{"menu_item": 10**9, "quantity": 1}]}, "lines"),
        ({"quantity": 0}, "lines"),
        ({"quantity": 51}, "lines"),
        ({"address": ""}, "address"),
        ({"fulfilment": "drone"}, "fulfilment"),
    ],
)
def test_an_invalid_order_is_refused_by_field(shop, fields, field):
    lines = fields.pop(
        "lines", [{"menu_item": shop["falafel"], "quantity": fields.pop("quantity", 1)}]
    )
    kwargs = {"fulfilment": "delivery", "address": "Herzl 1", **fields}
    with pytest.raises(ValidationError) as raised:
        order_create(contact=shop["contact"], session_id=shop["session"].pk, lines=lines, **kwargs)
    assert field in raised.value.message_dict
    assert not Order.objects.exists()


def test_menu_items_are_validated_by_field_and_can_be_updated_and_deleted(shop):
    with pytest.raises(ValidationError) as raised:
        menu_item_create(name_he="", price_minor=100)
    assert "name_he" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        menu_item_create(name_he="שקשוקה", price_minor=12.5)
    assert "price_minor" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        menu_item_create(name_he="שקשוקה", price_minor=100, colour="red")
    assert "colour" in raised.value.message_dict

    item = menu_item_create(name_he="שקשוקה", price_minor=3900, category="בוקר")
    menu_item_update(item=item, price_minor=4200, available=False)
    assert MenuItem.objects.get(pk=item.pk).price_minor == 4200
    order = _order(shop)
    menu_item_delete(item=shop["falafel"])
    assert order.lines.get().name == "פלאפל"  # the order keeps what was ordered


def test_pausing_the_bot_is_stored(shop):
    assert ordering_bot_pause_set(paused=True, actor_kind="owner", actor_label=OWNER).bot_paused
    assert OrderSettings.current().bot_paused
    assert not ordering_bot_pause_set(paused=False, actor_kind="staff").bot_paused


# --- selectors and the event's shape --------------------------------------------------


def test_orders_of_day_and_summary_count_the_tenants_local_day(shop):
    confirmed = _order(shop, status=S.CONFIRMED)
    rated = _order(shop, status=S.RATED, rating=4)
    cancelled = _order(shop, status=S.CANCELLED)
    _order(shop)  # a draft is not an order yet
    yesterday = _order(shop, status=S.CONFIRMED)
    Order.objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - timedelta(days=1))

    today = list(orders_of_day())
    assert [o.pk for o in today] == [cancelled.pk, rated.pk, confirmed.pk]
    assert [o.pk for o in orders_of_day(status=S.CONFIRMED)] == [confirmed.pk]
    summary = orders_summary()
    assert summary == {
        "count": 2,
        "revenue_minor": 2 * 5600,
        "currency": "ILS",
        "average_rating": 4.0,
        "waiting": 1,
        "cancelled": 1,
    }


def test_order_as_event_is_json_safe(shop):
    import json

    order = _order(shop, status=S.PREPARING)
    event = order_as_event(Order.objects.get(pk=order.pk))
    assert json.loads(json.dumps(event)) == event
    assert event["total_minor"] == 5600 and event["total_display"] == "56.00 ₪"
    assert event["next_status"] == S.OUT_FOR_DELIVERY
    assert event["lines"] == [
        {"name": "פלאפל", "quantity": 2, "unit_price_minor": 2800, "total_minor": 5600, "notes": ""}
    ]
