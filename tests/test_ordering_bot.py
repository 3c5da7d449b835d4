"""The ordering bot: parsing and the conversation as pure functions; turns against the
database (replies queued through message_send, orders created and confirmed); rating
prompts, answers and reminders; late-order alerts; quiet conversations. Real PostgreSQL
and Redis, committed rows; the end-to-end runs through real processes are in
tests/test_ordering_bot_e2e.py."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.translation import override
from django_tenants.utils import schema_context

from messaging.models import Contact, Conversation, Message, MessagingSettings
from orders.bot import ordering_bot_handle
from orders.bot_flow import BotInput, MenuEntry, bot_step
from orders.bot_parsing import Selection, command_of, language_of, rating_of, selections_of
from orders.hours import hours_lines, is_open
from orders.models import BotConversation, BotState, Order, OrderSettings, OrderStatus
from orders.ratings import rating_prompts_expire, rating_prompts_send
from orders.reminders import bot_conversations_expire, late_orders_flag
from orders.services import menu_item_create, order_create, order_transition
from orders.tasks import orders_tenant_sweep
from sessions_app.services import session_create
from tests.conftest import module_tenant

CUSTOMER = "+972503330003"
OWNER = "+972504440004"
S = OrderStatus


# --- parsing (pure) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 x 3", [Selection(2, 3)]),
        ("2x3", [Selection(2, 3)]),
        ("2 × 3", [Selection(2, 3)]),  # noqa: RUF001
        ("3 2", [Selection(3, 2)]),
        ("1 x 2, 3 1", [Selection(1, 2), Selection(3, 1)]),
        ("1x2\n2x1", [Selection(1, 2), Selection(2, 1)]),
        ("٢ x ٣", [Selection(2, 3)]),
        ("۲ ۳", [Selection(2, 3)]),
        ("4", [Selection(4, None)]),
        ("4, 5", None),
        ("pizza", None),
        ("", None),
    ],
)
def test_selections_are_item_then_quantity_in_any_digits(text, expected):
    assert selections_of(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", (5, "")),
        ("\u0661", (1, "")),  # Arabic-Indic one
        ("\u0665", (5, "")),  # Arabic-Indic five
        ("⭐⭐⭐⭐", (4, "")),
        ("⭐️⭐️⭐️", (3, "")),
        ("★★", (2, "")),
        ("4 great falafel", (4, "great falafel")),
        ("5/5", (5, "")),
        ("0", None),
        ("6", None),
        ("10", None),
        ("⭐⭐⭐⭐⭐⭐", None),
        ("thanks", None),
        ("2 or 3", None),
    ],
)
def test_ratings_are_one_to_five_in_digits_or_stars(text, expected):
    assert rating_of(text) == expected


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("menu", "menu"), ("Menu!", "menu"), ("תפריט", "menu"), ("القائمة", "menu"),
        ("cart", "cart"), ("סל", "cart"), ("السلة", "cart"),
        ("cancel", "cancel"), ("ביטול", "cancel"), ("إلغاء", "cancel"),
        ("help", "help"), ("עזרה", "help"), ("مساعدة", "help"),
        ("human", "human"), ("נציג", "human"), ("موظف", "human"),
        ("menu please with extra", None), ("2 x 3", None),
    ],
)  # fmt: skip
def test_commands_are_understood_in_three_languages(text, command):
    assert command_of(text) == command


def test_language_follows_the_letters_written():
    assert language_of("שלום") == "he"
    assert language_of("مرحبا") == "ar"
    assert language_of("Hi there") == "en"
    assert language_of("٣") == "ar"
    assert language_of("3 x 2") is None
    assert language_of("2 x 3 ok") == "en"
    assert language_of("👍") is None


# --- opening hours (pure) --------------------------------------------------------------


def test_opening_hours_with_a_range_past_midnight():
    from datetime import datetime

    hours = {"0": [["11:00", "15:00"], ["18:00", "02:00"]], "4": [["09:00", "14:00"]]}
    monday = datetime(2026, 11, 23)  # a Monday
    assert is_open(hours, monday.replace(hour=12))
    assert not is_open(hours, monday.replace(hour=16))
    assert is_open(hours, monday.replace(hour=23, minute=30))
    assert is_open(hours, (monday + timedelta(days=1)).replace(hour=1, minute=59))
    assert not is_open(hours, (monday + timedelta(days=1)).replace(hour=2))
    assert not is_open(hours, (monday + timedelta(days=6)).replace(hour=12))  # Sunday
    assert is_open({}, monday)  # no hours set: always open
    with override("en"):
        lines = hours_lines(hours)
    assert lines[0] == "Sunday: closed"
    assert lines[1] == "Monday: 11:00-15:00, 18:00-02:00"


# --- the conversation (pure) -----------------------------------------------------------

MENU = [
    MenuEntry(1, 11, "Falafel", 2800, "Mains"),
    MenuEntry(2, 12, "Salad", 1950, "Mains"),
    MenuEntry(3, 13, "Lemonade", 1200, "Drinks"),
]


def _step(state, context, text, language="en"):
    with override(language):
        return bot_step(
            BotInput(
                state=state,
                context=context,
                text=text,
                menu=MENU,
                currency="ILS",
                business_name="Falafel Place",
            )
        )


def test_a_whole_order_as_pure_steps():
    turn = _step(BotState.IDLE, {}, "hi")
    assert turn.state == BotState.ITEMS
    assert turn.replies[0].splitlines()[:5] == [
        "Hello, welcome to Falafel Place!",
        "Our menu:",
        "*Mains*",
        "1. Falafel — 28.00 ₪",
        "2. Salad — 19.50 ₪",
    ]
    turn = _step(turn.state, turn.context, "1 x 2, 3 1")
    assert turn.context["cart"] == [{"item_id": 11, "quantity": 2}, {"item_id": 13, "quantity": 1}]
    turn = _step(turn.state, turn.context, "2")
    assert (turn.state, turn.replies) == (BotState.QUANTITY, ["How many Salad?"])
    turn = _step(turn.state, turn.context, "٢")
    assert turn.state == BotState.ITEMS
    assert "Total: 107.00 ₪" in turn.replies[0]  # 2*28 + 12 + 2*19.50
    turn = _step(turn.state, turn.context, "done")
    assert turn.state == BotState.FULFILMENT and "Delivery or pickup?" in turn.replies[0]
    turn = _step(turn.state, turn.context, "1")
    assert turn.state == BotState.ADDRESS
    turn = _step(turn.state, turn.context, "Herzl 1, Tel Aviv")
    assert turn.state == BotState.CONFIRM
    assert "Delivery to: Herzl 1, Tel Aviv" in turn.replies[0]
    turn = _step(turn.state, turn.context, "yes")
    assert (turn.state, turn.action, turn.context) == (BotState.IDLE, "confirm_order", {})


def test_pickup_skips_the_address_and_no_goes_back_to_choosing():
    context = {"cart": [{"item_id": 12, "quantity": 1}]}
    turn = _step(BotState.FULFILMENT, context, "איסוף", "he")
    assert turn.state == BotState.CONFIRM and "איסוף עצמי מאיתנו" in turn.replies[0]
    turn = _step(turn.state, turn.context, "לא", "he")
    assert turn.state == BotState.ITEMS and turn.context["cart"] == context["cart"]


@pytest.mark.parametrize("state", list(BotState))
def test_commands_work_in_every_state(state):
    context = {"cart": [{"item_id": 11, "quantity": 1}], "pending_item": 12}
    assert _step(state, context, "help").replies[0].startswith("I take orders here.")
    assert _step(state, context, "נציג", "he").action == "human"
    menu = _step(state, context, "menu")
    assert menu.state == BotState.ITEMS and "pending_item" not in menu.context
    assert menu.context["cart"] == context["cart"]
    cart = _step(state, context, "سلة", "ar")
    assert cart.replies[0].startswith("سلتك:")
    cancelled = _step(state, context, "cancel")
    assert (cancelled.state, cancelled.context) == (BotState.IDLE, {})


def test_wrong_answers_get_a_hint_and_keep_the_state():
    assert _step(BotState.ITEMS, {}, "9").replies == [
        "There is no item 9 on the menu. Choose 1 to 3."
    ]
    assert _step(BotState.ITEMS, {}, "1 x 99").replies == ["How many? Send a number from 1 to 50."]
    assert _step(BotState.ITEMS, {}, "pizza").replies[0].startswith("Sorry, I did not understand.")
    assert _step(BotState.ITEMS, {}, "done").replies[0].startswith("Your cart is empty.")
    assert _step(BotState.ADDRESS, {"cart": []}, "12").state == BotState.ADDRESS
    assert _step(BotState.CONFIRM, {"cart": []}, "maybe").state == BotState.CONFIRM


# --- turns against the database --------------------------------------------------------


@pytest.fixture(scope="module")
def tenant(platform, django_db_blocker):
    with module_tenant(django_db_blocker) as tenant:
        yield tenant


@pytest.fixture
def shop(tenant, committed_db):
    session = session_create(
        tenant=tenant,
        name=f"Front {uuid.uuid4().hex[:6]}",
        provider="sandbox",
        owner_numbers=[OWNER],
        customer_mode="ordering",
        humanization_profile="instant",
    )
    with schema_context(tenant.schema_name):
        MessagingSettings.objects.update_or_create(pk=1, defaults={"duplicate_window_seconds": 0})
        menu_item_create(name_he="פלאפל", name_en="Falafel", name_ar="فلافل", price_minor=2800)
        menu_item_create(name_he="סלט", name_en="Salad", name_ar="سلطة", price_minor=1950)
        yield session
        Order.objects.all().delete()
        BotConversation.objects.all().delete()
        Message.objects.all().delete()
        Conversation.objects.all().delete()
        Contact.objects.all().delete()
        OrderSettings.objects.all().delete()
        from orders.models import MenuItem

        MenuItem.objects.all().delete()
    session.delete()


def _writes(session, text: str, phone: str = CUSTOMER) -> list[str]:
    """The customer's message stored as the inbound path stores it, then handled; the
    texts the bot queued in answer."""
    contact, _ = Contact.objects.get_or_create(phone=phone, defaults={"push_name": "Dana"})
    conversation, _ = Conversation.objects.get_or_create(contact=contact, session_id=session.pk)
    message = Message.objects.create(
        conversation=conversation,
        session_id=session.pk,
        direction="in",
        text=text,
        provider_message_id=f"IN{uuid.uuid4().hex}",
        status="received",
    )
    message = Message.objects.select_related("conversation__contact").get(pk=message.pk)
    before = set(Message.objects.filter(direction="out").values_list("pk", flat=True))
    ordering_bot_handle(session=session, message=message)
    return list(
        Message.objects.filter(direction="out", conversation=conversation)
        .exclude(pk__in=before)
        .order_by("created_at", "id")
        .values_list("text", flat=True)
    )


def test_an_english_order_through_the_bot_is_created_and_confirmed(shop):
    greeting = _writes(shop, "Hi")
    assert greeting[0].startswith("Hello Dana, welcome to Falafel Place!\nOur menu:")
    _writes(shop, "1 x 2")
    _writes(shop, "done")
    _writes(shop, "2")  # pickup
    confirm = _writes(shop, "yes")

    order = Order.objects.get()
    assert (order.status, order.fulfilment, order.total_minor) == (S.CONFIRMED, "pickup", 5600)
    assert order.events.get().actor_kind == "customer"
    assert confirm == [
        f"Order #{order.number} is confirmed. Thank you!\n2 × Falafel — 56.00 ₪\n"  # noqa: RUF001
        "Total: 56.00 ₪\nPickup from us"
    ]
    assert BotConversation.objects.get().state == BotState.IDLE


def test_an_arabic_customer_orders_in_arabic_with_arabic_indic_digits(shop):
    _writes(shop, "مرحبا")
    assert _writes(shop, "٢ x ٣")[0].startswith("أُضيف إلى سلتك.")
    _writes(shop, "تم")
    assert _writes(shop, "توصيل") == ["إلى أين نوصل؟ أرسل العنوان."]
    _writes(shop, "شارع الجبل 5، الناصرة")
    (confirmed,) = _writes(shop, "نعم")
    order = Order.objects.get()
    assert order.address == "شارع الجبل 5، الناصرة" and order.total_minor == 3 * 1950
    assert confirmed.startswith(f"تم تأكيد الطلب #{order.number}.")
    assert Contact.objects.get(phone=CUSTOMER).language == "ar"


def test_human_hands_the_conversation_to_staff(shop):
    _writes(shop, "שלום")
    assert _writes(shop, "נציג") == ["נציג מהצוות שלנו יענה לך כאן בקרוב."]
    assert Conversation.objects.get(contact__phone=CUSTOMER).human_takeover


def test_outside_opening_hours_or_paused_the_bot_answers_with_the_hours(shop):
    OrderSettings.objects.update_or_create(
        pk=1, defaults={"opening_hours": {str(d): [["00:00", "00:01"]] for d in range(7)}}
    )
    (reply,) = _writes(shop, "Hello")
    assert reply.startswith("We are closed now.\nOur opening hours:\nSunday: 00:00-00:01")
    assert BotConversation.objects.get().state == BotState.IDLE
    OrderSettings.objects.filter(pk=1).update(opening_hours={}, bot_paused=True)
    assert _writes(shop, "Hello again") == [
        "We are not taking orders on WhatsApp right now.\nPlease try again later."
    ]
    OrderSettings.objects.filter(pk=1).update(bot_paused=False)
    assert _writes(shop, "Hello once more")[0].startswith("Hello Dana")


def test_the_same_message_is_answered_once(shop):
    contact = Contact.objects.create(phone=CUSTOMER)
    conversation = Conversation.objects.create(contact=contact, session_id=shop.pk)
    message = Message.objects.create(
        conversation=conversation, session_id=shop.pk, direction="in", text="hi",
        provider_message_id="IN-once", status="received",
    )  # fmt: skip
    message = Message.objects.select_related("conversation__contact").get(pk=message.pk)
    ordering_bot_handle(session=shop, message=message)
    ordering_bot_handle(session=shop, message=message)
    assert Message.objects.filter(direction="out").count() == 1


def test_two_messages_handled_out_of_order_are_both_answered(shop):
    contact = Contact.objects.create(phone=CUSTOMER)
    conversation = Conversation.objects.create(contact=contact, session_id=shop.pk)
    first, second = (
        Message.objects.create(
            conversation=conversation, session_id=shop.pk, direction="in", text=text,
            provider_message_id=f"IN-{text}", status="received",
        )
        for text in ("hi", "menu")
    )  # fmt: skip
    for message in (second, first):  # two workers: the later message is handled first
        message = Message.objects.select_related("conversation__contact").get(pk=message.pk)
        ordering_bot_handle(session=shop, message=message)
    assert Message.objects.filter(direction="out").count() == 2


def test_a_quiet_conversation_expires_with_a_notice(shop):
    _writes(shop, "hi")
    _writes(shop, "1 x 1")
    BotConversation.objects.update(last_activity_at=timezone.now() - timedelta(minutes=31))

    assert bot_conversations_expire() == 1
    assert bot_conversations_expire() == 0  # a second run finds nothing

    conversation = BotConversation.objects.get()
    assert conversation.state == BotState.IDLE and "cart" not in conversation.context
    notice = Message.objects.filter(direction="out").order_by("-id").first()
    assert notice.text.startswith("Your unfinished order has expired.")


def test_a_message_after_the_quiet_period_starts_over_with_the_notice(shop):
    _writes(shop, "hi")
    _writes(shop, "1 x 1")
    BotConversation.objects.update(last_activity_at=timezone.now() - timedelta(minutes=31))
    notice, greeting = _writes(shop, "hello")
    assert notice.startswith("Your unfinished order has expired.")
    assert greeting.startswith("Hello Dana, welcome to Falafel Place!")
    assert BotConversation.objects.get().context.get("cart") == []


# --- ratings ------------------------------------------------------------------------------


def _delivered(session, *, minutes_ago=31, phone=CUSTOMER) -> Order:
    contact, _ = Contact.objects.get_or_create(phone=phone, defaults={"language": "en"})
    from orders.models import MenuItem

    order = order_create(
        contact=contact,
        session_id=session.pk,
        lines=[{"menu_item": MenuItem.objects.first(), "quantity": 1}],
        fulfilment="pickup",
    )
    for to in (S.CONFIRMED, S.PREPARING, S.DELIVERED):
        order_transition(order_id=order.pk, to=to, actor_kind="staff")
    Order.objects.filter(pk=order.pk).update(
        delivered_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    return Order.objects.get(pk=order.pk)


def _prompts(order) -> list[Message]:
    return list(Message.objects.filter(idempotency_key=f"rating-prompt-{order.public_id}"))


def test_the_rating_prompt_waits_for_the_delay_and_is_sent_once(shop):
    early = _delivered(shop, minutes_ago=5)
    due = _delivered(shop, minutes_ago=31, phone="+972505550005")

    assert rating_prompts_send() == 1
    assert rating_prompts_send() == 0  # safe to run twice

    assert _prompts(early) == []
    (prompt,) = _prompts(due)
    assert prompt.text == (
        f"How was order #{due.number}? Reply with a number from 1 (bad) to 5 (excellent)."
    )
    assert Order.objects.get(pk=due.pk).rating_prompt == "sent"


def test_with_no_delay_the_prompt_still_follows_the_delivered_message(shop):
    OrderSettings.objects.update_or_create(pk=1, defaults={"rating_delay_minutes": 0})
    order = _delivered(shop, minutes_ago=0)

    assert rating_prompts_send() == 0
    assert rating_prompts_send(now=timezone.now() + timedelta(seconds=11)) == 1
    texts = Message.objects.filter(conversation__contact__phone=CUSTOMER).order_by("id")
    assert [t.text.split("!")[0] for t in texts] == [
        f"Order #{order.number} is confirmed. Thank you",
        f"Order #{order.number} is being prepared.",
        f"Order #{order.number} is ready for pickup. Enjoy",
        f"How was order #{order.number}? Reply with a number from 1 (bad) to 5 (excellent).",
    ]


def test_a_reply_of_five_stars_rates_the_order_and_gets_the_promo(shop):
    OrderSettings.objects.update_or_create(pk=1, defaults={"promo_text": "Next time 10% off!"})
    order = _delivered(shop)
    rating_prompts_send()
    assert _writes(shop, "⭐⭐⭐⭐⭐") == ["Next time 10% off!"]
    order.refresh_from_db()
    assert (order.status, order.rating) == (S.RATED, 5)


def test_anything_else_gets_one_reminder_then_the_bot_carries_on(shop):
    order = _delivered(shop)
    rating_prompts_send()
    assert _writes(shop, "what?") == [
        "Please reply with just a number from 1 to 5 to rate your order."
    ]
    assert _writes(shop, "hello")[0].startswith("Hello")  # no second reminder
    assert Order.objects.get(pk=order.pk).status == S.DELIVERED
    BotConversation.objects.all().delete()
    # Arabic-Indic digits are Arabic: the apology is in Arabic from now on
    assert _writes(shop, "٢") == ["نأسف لأن طلبك لم يكن كما ينبغي."]
    order.refresh_from_db()
    assert (order.status, order.rating) == (S.RATED, 2)
    alert = Message.objects.get(conversation__contact__phone=OWNER)
    assert f"#{order.number}" in alert.text and "2/5" in alert.text


def test_no_answer_within_a_day_is_never_asked_again(shop):
    order = _delivered(shop)
    rating_prompts_send()
    Order.objects.filter(pk=order.pk).update(
        rating_prompted_at=timezone.now() - timedelta(hours=25)
    )
    assert rating_prompts_expire() == 1
    assert rating_prompts_send() == 0
    assert len(_prompts(order)) == 1
    assert _writes(shop, "5")[0].startswith("Hello")  # no longer a rating
    assert Order.objects.get(pk=order.pk).status == S.DELIVERED


def test_twilio_outside_the_window_uses_the_template_or_is_skipped(tenant, committed_db,
                                                                    twilio_standin):  # fmt: skip
    sid, token = twilio_standin.add_account()
    session = session_create(
        tenant=tenant, name=f"Twilio {uuid.uuid4().hex[:6]}", provider="twilio",
        twilio_account_sid=sid, twilio_auth_token=token, twilio_from_number="+14155550100",
        customer_mode="ordering",
    )  # fmt: skip
    try:
        with schema_context(tenant.schema_name):
            menu_item_create(name_he="פלאפל", price_minor=2800)
            # no message from the customer in 24 hours, no template: skipped
            first = _delivered(session)
            rating_prompts_send()
            assert Order.objects.get(pk=first.pk).rating_prompt == "skipped"
            assert _prompts(first) == []
            # with an approved template: the template is sent
            OrderSettings.objects.update_or_create(
                pk=1, defaults={"rating_template_sid": "HX" + "1" * 32}
            )
            second = _delivered(session, phone="+972506660006")
            rating_prompts_send()
            (prompt,) = _prompts(second)
            assert prompt.payload["template_sid"] == "HX" + "1" * 32
            assert prompt.payload["template_variables"] == {"1": str(second.number)}
            # inside the window (the customer wrote today): plain text
            third = _delivered(session, phone="+972507770007")
            contact = third.contact
            conversation, _ = Conversation.objects.get_or_create(
                contact=contact, session_id=session.pk
            )
            Message.objects.create(
                conversation=conversation, session_id=session.pk, direction="in", text="hi",
                provider_message_id="SMin", status="received",
            )  # fmt: skip
            rating_prompts_send()
            (prompt,) = _prompts(third)
            assert prompt.payload == {} and prompt.text.startswith("How was order")
    finally:
        with schema_context(tenant.schema_name):
            Order.objects.all().delete()
            Message.objects.all().delete()
            Conversation.objects.all().delete()
            Contact.objects.all().delete()
            OrderSettings.objects.all().delete()
            from orders.models import MenuItem

            MenuItem.objects.all().delete()
        session.delete()


# --- staff reminders -----------------------------------------------------------------


def test_an_order_confirmed_too_long_alerts_the_owner_once_and_is_late(shop):
    contact = Contact.objects.create(phone=CUSTOMER)
    from orders.models import MenuItem

    order = order_create(
        contact=contact, session_id=shop.pk, fulfilment="pickup",
        lines=[{"menu_item": MenuItem.objects.first(), "quantity": 1}],
    )  # fmt: skip
    order_transition(order_id=order.pk, to=S.CONFIRMED, actor_kind="customer")
    assert late_orders_flag() == 0  # not late yet
    Order.objects.filter(pk=order.pk).update(confirmed_at=timezone.now() - timedelta(minutes=11))

    assert late_orders_flag() == 1
    assert late_orders_flag() == 0

    assert Order.objects.get(pk=order.pk).is_late
    (alert,) = Message.objects.filter(conversation__contact__phone=OWNER)
    assert alert.text == f"הזמנה #{order.number} ממתינה כבר 10 דקות ועדיין לא בהכנה."
    order_transition(order_id=order.pk, to=S.PREPARING, actor_kind="staff")
    assert not Order.objects.get(pk=order.pk).is_late


def test_the_tenant_sweep_runs_every_job(shop):
    _delivered(shop)
    assert orders_tenant_sweep() == {
        "prompted": 1,
        "prompts_closed": 0,
        "late": 0,
        "conversations_expired": 0,
    }
