"""The owner-only menu, its services called in-process against real PostgreSQL and Redis:
PIN registration and login, lockout on a controllable clock, the state machine and its
timeouts, commands in three languages, the menu items, reminders and the audit trail.

The end-to-end runs through a real runner and worker are in test_owner_menu_e2e.py.
"""

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.hashers import identify_hasher
from django_tenants.utils import schema_context

from messaging.models import Contact, Conversation, Message
from messaging.owner_menu import clock, owner_audit_entries, owner_lockouts_active
from messaging.owner_menu.accounts import pin_is_trivial
from messaging.owner_menu.flow import owner_menu_handle
from messaging.owner_menu.reminders import reminder_deliver, reminders_due_run
from messaging.owner_menu.sweep import owner_menu_sweep
from messaging.owner_menu.timeouts import owner_states_expire
from messaging.owner_menu.when import when_parse
from messaging.owner_models import OwnerAccount, OwnerAuditEntry, OwnerReminder
from sessions_app.models import WhatsAppSession
from sessions_app.services import session_create

OWNER = "+972501111111"
PIN = "4826"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """PINs are hashed by Django's password hashers; the suite needs no slow one."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clock():
    clock.clock_reset()
    yield
    clock.clock_reset()


def _shop(make_tenant, **tenant_fields) -> WhatsAppSession:
    tenant = make_tenant(**{"language": "en", **tenant_fields})
    session = session_create(
        tenant=tenant,
        name="Main",
        provider="sandbox",
        owner_numbers=[OWNER],
        customer_mode="ordering",
    )
    return WhatsAppSession.objects.select_related("tenant").get(pk=session.pk)


@pytest.fixture
def shop(make_tenant):
    session = _shop(make_tenant)
    with schema_context(session.tenant.schema_name):
        yield session


def _stored(session, text: str, phone: str = OWNER) -> Message:
    """An inbound message as the inbound service stores it (routing reads it back)."""
    contact, _ = Contact.objects.get_or_create(phone=phone)
    conversation, _ = Conversation.objects.get_or_create(contact=contact, session_id=session.pk)
    message = Message.objects.create(
        conversation=conversation,
        session_id=session.pk,
        direction="in",
        text=text,
        provider_message_id="T" + uuid.uuid4().hex,
        status="received",
    )
    return Message.objects.select_related("conversation__contact").get(pk=message.pk)


def write(session, text: str, phone: str = OWNER) -> str:
    """The owner writes `text`; returns the menu's replies, joined."""
    return "\n---\n".join(owner_menu_handle(session=session, message=_stored(session, text, phone)))


def _register(session, name="Dana", pin=PIN) -> None:
    write(session, "hi")
    write(session, name)
    write(session, pin)
    assert "registered" in write(session, pin)


def _audit(action: str) -> int:
    return OwnerAuditEntry.objects.filter(action=action).count()


# --- registration and PINs ------------------------------------------------------------


def test_registration_asks_the_name_then_the_pin_twice_and_keeps_only_a_hash(shop):
    assert "What is your name?" in write(shop, "hello")
    assert "PIN of 4 to 6 digits" in write(shop, "Dana Levi")
    assert "same PIN again" in write(shop, PIN)
    reply = write(shop, PIN)

    assert "registered and logged in, Dana Levi" in reply
    assert "Main menu" in reply
    account = OwnerAccount.objects.get(phone=OWNER)
    assert account.name == "Dana Levi"
    assert PIN not in account.pin_hash
    assert identify_hasher(account.pin_hash).algorithm  # a Django password hash
    assert account.logged_in
    assert _audit("registered") == 1 and _audit("login") == 1


def test_two_different_pins_start_the_pin_again(shop):
    write(shop, "hi")
    write(shop, "Dana")
    write(shop, PIN)
    assert "The two PINs differ" in write(shop, "4827")
    assert "same PIN again" in write(shop, "5937")
    assert "registered" in write(shop, "5937")


@pytest.mark.parametrize("pin", ["0000", "1234", "4321", "1212", "123456", "987654", "7777"])
def test_trivial_pins_are_refused(shop, pin):
    assert pin_is_trivial(pin)
    write(shop, "hi")
    write(shop, "Dana")
    reply = write(shop, pin)
    assert "too easy to guess" in reply
    assert "PIN of 4 to 6 digits" in reply  # the same question again
    assert OwnerAccount.objects.get(phone=OWNER).state == "register_pin"


@pytest.mark.parametrize("pin", ["4826", "70319", "5829"])
def test_ordinary_pins_are_accepted(pin):
    assert not pin_is_trivial(pin)


def test_pin_messages_are_never_kept_in_clear_in_the_message_log(shop):
    _register(shop, pin="5829")
    write(shop, "/logout")
    write(shop, "1111")  # a wrong PIN
    write(shop, "5829")  # the right one

    texts = list(
        Message.objects.filter(direction="in", conversation__contact__phone=OWNER).values_list(
            "text", flat=True
        )
    )
    assert not [t for t in texts if "5829" in t or "1111" in t]
    assert texts.count("••••") == 4  # twice at registration, twice at login
    account = OwnerAccount.objects.get(phone=OWNER)
    assert "5829" not in str(account.context) + str(account.back)
    assert not [e for e in OwnerAuditEntry.objects.all() if "5829" in str(e.detail)]


# --- login, lockout, logout -----------------------------------------------------------


def test_three_wrong_pins_lock_the_owner_out_for_five_minutes(shop):
    _register(shop)
    write(shop, "/logout")

    assert "Please enter your PIN" in write(shop, "/menu")
    assert "2 attempts left" in write(shop, "1111")
    assert "1 attempt left" in write(shop, "2222")
    assert "Try again in 5 minutes" in write(shop, "3333")
    assert list(owner_lockouts_active()) == [OwnerAccount.objects.get(phone=OWNER)]

    # the right PIN inside the lockout is refused, with the time left
    clock.clock_shift(timedelta(minutes=2, seconds=30))
    reply = write(shop, PIN)
    assert "Try again in 3 minutes" in reply
    assert "Main menu" not in reply
    clock.clock_shift(timedelta(minutes=2))
    assert "Try again in 30 seconds" in write(shop, PIN)
    assert not OwnerAccount.objects.get(phone=OWNER).logged_in

    # five minutes after the lockout, it works
    clock.clock_shift(timedelta(seconds=31))
    assert list(owner_lockouts_active()) == []
    assert "you are logged in" in write(shop, PIN)
    assert (_audit("pin_failed"), _audit("lockout")) == (3, 1)
    lockout = OwnerAuditEntry.objects.get(action="lockout")
    assert lockout.phone == OWNER and "until" in lockout.detail
    assert [e.action for e in owner_audit_entries(limit=2)] == ["login", "lockout"]


def test_a_login_ends_after_30_days_without_activity(shop):
    _register(shop)
    clock.clock_shift(timedelta(days=29))
    assert "Main menu" in write(shop, "/menu")  # still logged in; active again now
    clock.clock_shift(timedelta(days=30, seconds=1))
    assert "Please enter your PIN" in write(shop, "/menu")
    assert "you are logged in" in write(shop, PIN)


def test_logout_asks_the_pin_again(shop):
    _register(shop)
    assert "logged out" in write(shop, "/logout")
    assert "Please enter your PIN" in write(shop, "1")
    assert "Main menu" in write(shop, PIN)
    assert _audit("logout") == 1


# --- the state machine ----------------------------------------------------------------


def test_commands_work_in_hebrew_and_arabic(shop):
    _register(shop)
    assert "Main menu" in write(shop, "/תפריט")
    write(shop, "7")  # reminders
    write(shop, "1")  # new reminder: its text
    assert "One step back" in write(shop, "/ביטול")
    assert OwnerAccount.objects.get(phone=OWNER).state == "reminders"
    assert "/menu" in write(shop, "/مساعدة")
    assert "Main menu" in write(shop, "/قائمة")
    assert "logged out" in write(shop, "/התנתק")
    assert not OwnerAccount.objects.get(phone=OWNER).logged_in


def test_an_owner_writing_a_stop_word_is_not_opted_out(shop):
    _register(shop)
    write(shop, "7")
    Contact.objects.filter(phone=OWNER).update(opted_out=True)  # as inbound does for "cancel"
    assert "One step back" in write(shop, "cancel")
    assert not Contact.objects.get(phone=OWNER).opted_out
    last = Message.objects.filter(direction="out").order_by("-created_at", "-id").first()
    assert last.status == "queued"  # answered, not suppressed


def test_cancel_goes_one_step_back_then_to_idle(shop):
    _register(shop)
    write(shop, "7")
    write(shop, "1")
    write(shop, "Call the supplier")
    assert "What should I remind you of?" in write(shop, "/cancel")
    assert "Reminders:" in write(shop, "/cancel")
    assert "Main menu" in write(shop, "/cancel")
    assert "Nothing was saved" in write(shop, "/cancel")
    assert OwnerAccount.objects.get(phone=OWNER).state == "idle"


def test_invalid_input_gets_a_hint_and_the_same_question(shop):
    _register(shop)
    reply = write(shop, "banana")
    assert "Reply with a number from 1 to 8" in reply
    assert "Main menu" in reply
    write(shop, "7")
    write(shop, "1")
    write(shop, "Call the supplier")
    reply = write(shop, "whenever")
    assert "did not understand that time" in reply
    assert "tomorrow 9:00" in reply  # the question again


def test_the_same_message_is_answered_once(shop):
    message = _stored(shop, "hello")
    assert owner_menu_handle(session=shop, message=message)
    assert owner_menu_handle(session=shop, message=message) == []
    assert OwnerAccount.objects.get(phone=OWNER).state == "register_name"


def test_each_state_expires_after_its_own_timeout(shop):
    _register(shop)  # the main menu is showing: 5 minutes
    account = OwnerAccount.objects.get(phone=OWNER)
    assert account.state == "menu"
    assert account.state_expires_at == account.last_active_at + timedelta(minutes=5)
    write(shop, "7")
    write(shop, "1")  # a text: 3 minutes
    account.refresh_from_db()
    assert account.state_expires_at - account.last_active_at == timedelta(minutes=3)
    write(shop, "Call the supplier")
    write(shop, "tomorrow 9:00")  # a confirmation: 1 minute
    account.refresh_from_db()
    assert account.state == "reminder_confirm"
    assert account.state_expires_at - account.last_active_at == timedelta(minutes=1)


def test_a_timeout_notice_is_sent_once_even_when_the_job_runs_twice(make_tenant):
    # Given two tenants, each with an owner halfway through a step
    sessions = [_shop(make_tenant), _shop(make_tenant)]
    for session in sessions:
        with schema_context(session.tenant.schema_name):
            _register(session)
            write(session, "5")  # broadcast: write the text (3 minutes)

    expiries = []
    for session in sessions:
        with schema_context(session.tenant.schema_name):
            expiries.append(OwnerAccount.objects.get(phone=OWNER).state_expires_at)

    # When the job runs before the timeout, then twice after it
    clock.clock_shift(min(expiries) - clock.now() - timedelta(seconds=1))
    assert owner_menu_sweep()["expired"] == 0
    clock.clock_shift(max(expiries) - clock.now() + timedelta(seconds=1))
    assert owner_menu_sweep()["expired"] == 2
    assert owner_menu_sweep()["expired"] == 0

    # Then each owner got one notice, and the step is gone
    for session in sessions:
        with schema_context(session.tenant.schema_name):
            notices = Message.objects.filter(
                direction="out", text__contains="expired and nothing was saved"
            )
            assert notices.count() == 1
            assert notices.get().status == "queued"
            assert OwnerAccount.objects.get(phone=OWNER).state == "idle"
            # and the owner's next message does not repeat it
            assert "expired" not in write(session, "hello")


def test_two_jobs_at_once_send_one_timeout_notice(shop):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    _register(shop)
    write(shop, "5")
    clock.clock_shift(timedelta(minutes=4))
    schema = shop.tenant.schema_name

    def sweep(_):
        try:
            with schema_context(schema):
                return owner_states_expire()
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(sweep, range(2)))
    assert results == [0, 1]
    assert Message.objects.filter(text__contains="expired and nothing").count() == 1


def test_a_message_after_the_timeout_but_before_the_job_tells_the_owner_once(shop):
    _register(shop)
    write(shop, "5")
    clock.clock_shift(timedelta(minutes=4))
    reply = write(shop, "Hello everyone")  # the step expired: not taken as the broadcast
    assert "Main menu" in reply
    last_two = Message.objects.filter(direction="out").order_by("-created_at", "-id")[:2]
    assert "expired and nothing was saved" in last_two[1].text  # first the notice
    assert owner_states_expire() == 0
    assert Message.objects.filter(text__contains="expired and nothing").count() == 1


# --- the menu items -------------------------------------------------------------------


def _order(session, phone="+972502222222", name="Noa", status="CONFIRMED"):
    from orders.services import menu_item_create, order_create, order_transition

    contact, _ = Contact.objects.get_or_create(phone=phone, defaults={"push_name": name})
    item = menu_item_create(name_he="פיצה", name_en="Pizza", price_minor=4500)
    order = order_create(
        contact=contact, session_id=session.pk, lines=[{"menu_item": item, "quantity": 2}],
        fulfilment="pickup",
    )  # fmt: skip
    if status != "DRAFT":
        order_transition(order_id=order.pk, to="CONFIRMED", actor_kind="customer")
    if status == "PREPARING":
        order_transition(order_id=order.pk, to="PREPARING", actor_kind="staff")
    order.refresh_from_db()
    return order


def test_todays_orders_are_grouped_by_status(shop):
    first = _order(shop)
    second = _order(shop, phone="+972503333333", name="Avi", status="PREPARING")
    _register(shop)
    reply = write(shop, "1")
    assert "Today's orders (2)" in reply
    assert reply.index("*Confirmed* (1)") < reply.index(f"#{first.number} · Noa · 90.00 ₪")
    assert reply.index("*Preparing* (1)") < reply.index(f"#{second.number} · Avi")


def test_advancing_an_order_is_recorded_as_done_by_the_owner(shop):
    from orders.models import OrderEvent

    order = _order(shop)
    _register(shop)
    assert f"#{order.number} Confirmed → Preparing" in write(shop, "2")
    assert "There is no order with that number" in write(shop, "999999")
    assert "from Confirmed to Preparing?" in write(shop, f"#{order.number}")
    assert "is now Preparing" in write(shop, "yes")

    order.refresh_from_db()
    assert order.status == "PREPARING"
    event = OrderEvent.objects.filter(order=order).order_by("-created_at", "-id").first()
    assert (event.actor_kind, event.actor_label) == ("owner", f"Dana ({OWNER})")
    assert OwnerAuditEntry.objects.get(action="transition").detail["to"] == "PREPARING"


def test_cancelling_an_order_needs_a_reason(shop):
    order = _order(shop)
    _register(shop)
    write(shop, "3")
    assert "Why is it cancelled?" in write(shop, str(order.number))
    assert "Out of dough" in write(shop, "Out of dough")
    assert "is cancelled" in write(shop, "1")
    order.refresh_from_db()
    assert order.status == "CANCELLED"
    assert order.cancel_reason == "Out of dough"


def test_the_summary_counts_todays_orders(shop):
    _order(shop)
    _order(shop, phone="+972503333333")
    _register(shop)
    reply = write(shop, "4")
    assert "Orders: 2" in reply
    assert "Revenue: 180.00 ₪" in reply
    assert "Waiting for the kitchen: 2" in reply


def test_pausing_and_resuming_the_ordering_bot(shop):
    from orders.models import OrderSettings

    _register(shop)
    assert "Pause it?" in write(shop, "6")
    assert "paused" in write(shop, "1")
    assert OrderSettings.current().bot_paused
    assert "Resume" in write(shop, "6")
    write(shop, "כן")
    assert not OrderSettings.current().bot_paused
    assert (_audit("bot_paused"), _audit("bot_resumed")) == (1, 1)


def test_the_broadcast_preview_counts_the_audience_and_its_opted_out(shop):
    from messaging.models import BulkSend

    _order(shop, phone="+972502222222")
    _order(shop, phone="+972503333333")
    _order(shop, phone="+972504444444")
    Contact.objects.filter(phone="+972504444444").update(opted_out=True)
    Contact.objects.create(phone="+972505555555")  # never ordered
    _register(shop)
    write(shop, "5")
    assert "Who gets it?" in write(shop, "Two pizzas for one tonight!")
    reply = write(shop, "1")
    assert "It goes to 3 people. 1 of them opted out" in reply
    assert "Two pizzas for one tonight!" in reply
    assert "Sending to 3 people" in write(shop, "1")
    job = BulkSend.objects.get()
    assert job.origin == "owner_menu"
    assert sorted(item["to"] for item in job.items) == [
        "+972502222222",
        "+972503333333",
        "+972504444444",
    ]

    write(shop, "5")
    write(shop, "Open late today")
    assert "It goes to 3 people." in write(shop, "2")  # every contact not opted out


def test_the_owner_chooses_a_language(shop):
    _register(shop)
    write(shop, "8")
    write(shop, "1")
    reply = write(shop, "3")
    assert "من الآن" in reply  # Arabic from now on
    assert "القائمة الرئيسية" in write(shop, "/menu")
    write(shop, "8")
    write(shop, "1")
    assert "מעכשיו" in write(shop, "1")
    assert "תפריט ראשי" in write(shop, "/menu")


def test_the_tenants_language_is_the_default(make_tenant):
    session = _shop(make_tenant, language="he")
    with schema_context(session.tenant.schema_name):
        assert "מה שמך?" in write(session, "שלום")


# --- reminders ------------------------------------------------------------------------


def test_a_reminder_is_confirmed_in_the_tenants_time_zone_and_listed(shop):
    _register(shop)
    write(shop, "7")
    write(shop, "1")
    write(shop, "Call the supplier")
    reply = write(shop, "tomorrow 9:00")
    tomorrow = (clock.now().astimezone(ZoneInfo("Asia/Jerusalem")) + timedelta(days=1)).date()
    assert f"{tomorrow:%d/%m/%Y} 09:00 (Asia/Jerusalem)" in reply
    assert "Reminder set" in write(shop, "1")

    reminder = OwnerReminder.objects.get()
    assert reminder.due_at == datetime(
        tomorrow.year, tomorrow.month, tomorrow.day, 9, tzinfo=ZoneInfo("Asia/Jerusalem")
    )
    assert reminder.task_queued_at is None  # far ahead: the sweep queues it later
    write(shop, "7")
    assert "Call the supplier" in write(shop, "2")

    write(shop, "7")
    write(shop, "3")
    assert "is cancelled" in write(shop, "1")
    assert OwnerReminder.objects.get().state == "cancelled"
    assert (_audit("reminder_created"), _audit("reminder_cancelled")) == (1, 1)


def test_a_due_reminder_is_delivered_once(shop):
    _register(shop)
    write(shop, "7")
    write(shop, "1")
    write(shop, "Order napkins")
    write(shop, "in 2 hours")
    write(shop, "1")
    reminder = OwnerReminder.objects.get()

    assert reminders_due_run() == 0  # not due yet
    assert reminder_deliver(reminder_id=reminder.pk) is False
    clock.clock_shift(timedelta(hours=2))
    assert reminder_deliver(reminder_id=reminder.pk) is True
    assert reminder_deliver(reminder_id=reminder.pk) is False
    assert reminders_due_run() == 0

    reminder.refresh_from_db()
    assert reminder.state == "sent"
    sent = Message.objects.filter(direction="out", text__startswith="⏰")
    assert sent.count() == 1
    assert sent.get().pk == reminder.message_id
    assert sent.get().text == "⏰ Reminder: Order napkins"


def test_a_reminder_missed_by_its_task_is_delivered_by_the_sweep(shop):
    _register(shop)
    write(shop, "7")
    write(shop, "1")
    write(shop, "Order napkins")
    write(shop, "in 5 minutes")
    write(shop, "1")
    assert OwnerReminder.objects.get().task_queued_at is not None  # due soon: a task now
    clock.clock_shift(timedelta(minutes=6))
    assert reminders_due_run() == 1
    assert reminders_due_run() == 0
    assert OwnerReminder.objects.get().state == "sent"


# --- natural times ---------------------------------------------------------------------

_NOW = datetime(2026, 11, 24, 14, 0, tzinfo=ZoneInfo("Asia/Jerusalem"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tomorrow 9:00", "2026-11-25 09:00"),
        ("tomorrow at 9pm", "2026-11-25 21:00"),
        ("in 2 hours", "2026-11-24 16:00"),
        ("in an hour and a half", "2026-11-24 15:30"),
        ("in 30 min", "2026-11-24 14:30"),
        ("מחר ב-9", "2026-11-25 09:00"),
        ("מחר בשעה 8 בבוקר", "2026-11-25 08:00"),
        ("בעוד שעתיים", "2026-11-24 16:00"),
        ("בעוד חצי שעה", "2026-11-24 14:30"),
        ("היום ב18:30", "2026-11-24 18:30"),
        ("بعد ساعتين", "2026-11-24 16:00"),
        ("بعد \u0665 دقائق", "2026-11-24 14:05"),  # an Arabic-Indic 5
        ("غدًا الساعة 9 مساء", "2026-11-25 21:00"),
        ("25/12 18:30", "2026-12-25 18:30"),
        ("25.12.2026 9:00", "2026-12-25 09:00"),
        ("2026-12-25 09:00", "2026-12-25 09:00"),
        ("1/1 8:00", "2027-01-01 08:00"),
        ("21:30", "2026-11-24 21:30"),
        ("9:00", "2026-11-25 09:00"),  # passed today: tomorrow
    ],
)
def test_natural_times_in_three_languages(text, expected):
    moment = when_parse(text, now=_NOW, tz="Asia/Jerusalem")
    assert moment is not None, text
    assert moment.astimezone(ZoneInfo("Asia/Jerusalem")).strftime("%Y-%m-%d %H:%M") == expected


@pytest.mark.parametrize("text", ["", "banana", "tomorrow", "31/02 9:00", "25:00", "in hours"])
def test_what_is_not_a_time_is_none(text):
    assert when_parse(text, now=_NOW, tz="Asia/Jerusalem") is None


# --- catalogues -----------------------------------------------------------------------


def _msgids() -> list[str]:
    import re
    from pathlib import Path

    po = Path(__file__).resolve().parent.parent / "messaging/locale/en/LC_MESSAGES/django.po"
    ids = []
    for block in po.read_text(encoding="utf-8").split("\n\n")[1:]:
        match = re.search(r'^msgid ((?:".*"\n?)+)', block, re.M)
        if match and "msgid_plural" not in block:
            ids.append("".join(re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(1))))
    return [i.replace('\\"', '"').replace("\\n", "\n") for i in ids if i]


@pytest.mark.parametrize("language", ["he", "ar"])
def test_the_compiled_catalogues_translate_every_messaging_text(language):
    from django.utils import translation
    from django.utils.translation import gettext

    ids = _msgids()
    assert len(ids) > 100
    with translation.override(language):
        untranslated = [i for i in ids if gettext(i) == i]
    assert untranslated == []
