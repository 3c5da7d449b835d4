"""The owner menu's conversation: one inbound message in, the state moved, replies out.

Each owner's state is a row (`OwnerAccount`: state, context, the earlier steps for
/cancel, when the step expires), locked while a message is handled, so two messages of
one owner are answered one after the other and a restart loses nothing. A message is
answered once: its id is remembered, and every reply carries an idempotency key made of
the message's id, so a routing task run twice sends nothing twice.

Every step has a timeout by its kind (a menu 5 minutes, a text 3 minutes, a
confirmation 1 minute); messaging/owner_menu/timeouts.py tells the owner when one
expires. Messages that may hold a PIN are replaced by "••••" in the message log, in the
same transaction as they are read.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from messaging.models import Contact, Message
from messaging.owner_menu import accounts, clock
from messaging.owner_menu.accounts import REDACTED, digits_normalised, looks_like_pin
from messaging.owner_models import OwnerAccount, OwnerAuditEntry

logger = logging.getLogger(__name__)

Action = OwnerAuditEntry.Action

IDLE = "idle"
MENU, TEXT, CONFIRM = "menu", "text", "confirm"
TIMEOUTS = {
    MENU: timedelta(minutes=5),
    TEXT: timedelta(minutes=3),
    CONFIRM: timedelta(minutes=1),
}
# Every state but idle, and the kind of answer it waits for.
STATES = {
    "register_name": TEXT,
    "register_pin": TEXT,
    "register_pin_again": TEXT,
    "login_pin": TEXT,
    "menu": MENU,
    "advance_pick": TEXT,
    "advance_confirm": CONFIRM,
    "cancel_pick": TEXT,
    "cancel_reason": TEXT,
    "cancel_confirm": CONFIRM,
    "broadcast_text": TEXT,
    "broadcast_audience": MENU,
    "broadcast_confirm": CONFIRM,
    "pause_confirm": CONFIRM,
    "reminders": MENU,
    "reminder_text": TEXT,
    "reminder_when": TEXT,
    "reminder_confirm": CONFIRM,
    "reminder_cancel_pick": TEXT,
    "settings": MENU,
    "settings_language": MENU,
}
PIN_STATES = frozenset({"register_pin", "register_pin_again", "login_pin"})
MAX_BACK_STEPS = 10
MAX_REPLY = 4000  # WhatsApp takes 4096 characters

# Commands work at any step, in every language (with or without the slash).
COMMANDS = {
    "menu": {"/menu", "/תפריט", "/قائمة", "/القائمة"},
    "cancel": {"/cancel", "/back", "/ביטול", "/חזור", "/إلغاء", "/الغاء", "/رجوع"},
    "help": {"/help", "/עזרה", "/مساعدة"},
    "logout": {"/logout", "/התנתק", "/התנתקות", "/خروج", "/تسجيل_خروج"},
}
_COMMAND_OF = {word: name for name, words in COMMANDS.items() for word in words}
YES = {"1", "yes", "y", "ok", "כן", "אישור", "نعم", "أيوه", "موافق"}
NO = {"2", "no", "n", "לא", "لا", "كلا"}
LANGUAGES = {"1": "he", "2": "en", "3": "ar"}


@dataclass
class Turn:
    """One inbound message being answered."""

    account: OwnerAccount
    session: object  # WhatsAppSession
    message: Message
    now: datetime
    replies: list[str] = field(default_factory=list)
    redact: bool = False

    def say(self, *parts: str) -> None:
        self.replies.append("\n\n".join(p for p in parts if p))

    @property
    def tenant(self):
        return self.session.tenant

    @property
    def actor_label(self) -> str:
        return f"{self.account.name} ({self.account.phone})".strip()

    def audit(self, action: str, **detail) -> None:
        accounts.owner_audit_record(
            account=self.account, phone=self.account.phone, action=action, now=self.now, **detail
        )


def owner_language(account: OwnerAccount, session) -> str:
    return account.language or getattr(session.tenant, "language", "") or "he"


# --- the entry point --------------------------------------------------------------------


def owner_menu_handle(*, session, message: Message, now: datetime | None = None) -> list[str]:
    """Answer one message from one of `session`'s owner numbers (current schema: the
    session's tenant). Returns the replies sent (nothing when it was answered before)."""
    from messaging.outbound import message_send

    now = now or clock.now()
    phone = message.conversation.contact.phone
    with transaction.atomic():
        account, _created = OwnerAccount.objects.select_for_update().get_or_create(phone=phone)
        if message.pk in (account.handled_message_ids or []):
            return []
        contact = message.conversation.contact
        if contact.opted_out:
            # STOP words are the customers' (an owner writing "cancel" or "إلغاء" trips
            # them): an owner's own number never stays opted out, or nothing could answer.
            Contact.objects.filter(pk=contact.pk).update(opted_out=False, opted_out_at=None)
            contact.opted_out = False
        turn = Turn(account=account, session=session, message=message, now=now)
        text = message.text if message.kind == "text" else ""
        with translation.override(owner_language(account, session)):
            _step(turn, text)
            replies = [reply[:MAX_REPLY] for reply in turn.replies if reply.strip()]
        account.handled_message_ids = [*(account.handled_message_ids or []), message.pk][-20:]
        account.session_id = session.pk
        account.save()
        if turn.redact:
            # The PIN never stays in the message log (nor in this object).
            Message.objects.filter(pk=message.pk).update(text=REDACTED)
            message.text = REDACTED
        for index, reply in enumerate(replies):
            try:
                message_send(
                    session=session,
                    to=phone,
                    text=reply,
                    idempotency_key=f"owner-{message.public_id.hex}-{index}",
                )
            except ValidationError:
                logger.exception("owner menu reply %d to message %s refused", index, message.pk)
    return replies


def _step(t: Turn, text: str) -> None:
    a = t.account
    command = _command(text)
    pinish = a.state in PIN_STATES or looks_like_pin(text)

    left = accounts.owner_locked_for(a, now=t.now)
    if left is not None:
        t.redact = pinish
        if command == "help":
            t.say(_help_text(logged_in=False))
        t.say(_locked_text(left))
        return

    if a.state != IDLE and a.state_expires_at and a.state_expires_at <= t.now:
        # The sweep has not told them yet: tell them now (the same key: never twice).
        from messaging.owner_menu.timeouts import owner_state_expire_locked

        owner_state_expire_locked(account=a, session=t.session, now=t.now)

    if not a.registered:
        _registration(t, text, command)
        return
    if not accounts.owner_logged_in(a, now=t.now):
        if a.logged_in:
            a.logged_in = False  # 30 days without activity
        _login(t, text, command, pinish=pinish)
        return

    a.last_active_at = t.now
    if command:
        _COMMAND_HANDLERS[command](t)
        return
    handler = _HANDLERS.get(a.state, _idle)
    handler(t, _clean(text))


def _command(text: str) -> str | None:
    word = (text or "").strip().casefold()
    return _COMMAND_OF.get(word) or _COMMAND_OF.get("/" + word.lstrip("/")) if word else None


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", (text or "").strip())


def _choice(text: str) -> str:
    return digits_normalised(text).strip(" .)").casefold()


# --- moving between states ------------------------------------------------------------


def _go(t: Turn, state: str, *, remember: bool = True, **context) -> None:
    """Move to `state` (its timeout starts now) and ask its question."""
    a = t.account
    if remember and a.state != IDLE:
        a.back = [*(a.back or []), {"state": a.state, "context": a.context}][-MAX_BACK_STEPS:]
    a.state = state
    a.context = {**(a.context or {}), **context}
    a.state_expires_at = t.now + TIMEOUTS[STATES[state]]


def _idle(t: Turn, text: str = "") -> None:
    """Idle: a number from the menu runs it at once; anything else shows the menu."""
    choice = _choice(text)
    if choice in _MENU_ITEMS:
        _reset(t.account)
        _MENU_ITEMS[choice](t)
    else:
        _main_menu(t)


def _reset(a: OwnerAccount) -> None:
    a.state, a.context, a.back, a.state_expires_at = IDLE, {}, [], None


def _done(t: Turn, *parts: str) -> None:
    """The step is over: back to idle, with a pointer to the menu."""
    _reset(t.account)
    t.say(*parts, _("Send /menu for the menu."))


def _main_menu(t: Turn, *before: str) -> None:
    _reset(t.account)
    _go(t, "menu")
    t.say(*before, _menu_text())


def _menu_text() -> str:
    return "\n".join(
        [
            _("Main menu. Reply with a number:"),
            "1. " + _("Today's orders"),
            "2. " + _("Advance an order"),
            "3. " + _("Cancel an order"),
            "4. " + _("Today's summary"),
            "5. " + _("Broadcast a message"),
            "6. " + _("Pause or resume the ordering bot"),
            "7. " + _("Reminders"),
            "8. " + _("Settings"),
        ]
    )


def _help_text(*, logged_in: bool = True) -> str:
    lines = [
        _("Owner menu commands, at any step:"),
        "/menu — " + _("back to the main menu"),
        "/cancel — " + _("one step back"),
        "/help — " + _("this help"),
        "/logout — " + _("log out (your PIN is asked next time)"),
        _("In Hebrew: /תפריט /ביטול /עזרה /התנתק. In Arabic: /قائمة /إلغاء /مساعدة /خروج."),
    ]
    if not logged_in:
        lines.append(_("First, log in with your PIN."))
    return "\n".join(lines)


def _locked_text(left: timedelta) -> str:
    seconds = max(1, int(left.total_seconds() + 0.999))
    if seconds < 60:
        wait = ngettext("%(n)d second", "%(n)d seconds", seconds) % {"n": seconds}
    else:
        minutes = (seconds + 59) // 60
        wait = ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}
    return _("Too many wrong PINs. Try again in %(wait)s.") % {"wait": wait}


def _question(t: Turn) -> str:
    """The question of the current state (asked again after a hint or /cancel)."""
    ask = _QUESTIONS.get(t.account.state)
    return ask(t) if ask else ""


def _again(t: Turn, hint: str) -> None:
    """Invalid input: a short hint and the same question; the step's clock restarts."""
    a = t.account
    a.state_expires_at = t.now + TIMEOUTS[STATES[a.state]]
    t.say(hint, _question(t))


# --- commands -------------------------------------------------------------------------


def _cmd_menu(t: Turn) -> None:
    _main_menu(t)


def _cmd_cancel(t: Turn) -> None:
    a = t.account
    if a.back:
        previous = a.back[-1]
        a.back = a.back[:-1]
        a.state, a.context = previous["state"], previous["context"]
        a.state_expires_at = t.now + TIMEOUTS[STATES[a.state]]
        t.say(_("One step back."), _question(t))
    elif a.state != IDLE:
        _done(t, _("Cancelled. Nothing was saved."))
    else:
        _done(t, _("There is nothing to cancel."))


def _cmd_help(t: Turn) -> None:
    t.say(_help_text(), _question(t) if t.account.state != IDLE else "")


def _cmd_logout(t: Turn) -> None:
    a = t.account
    _reset(a)
    a.logged_in = False
    t.audit(Action.LOGOUT)
    t.say(_("You are logged out. Your PIN will be asked next time."))


_COMMAND_HANDLERS = {
    "menu": _cmd_menu,
    "cancel": _cmd_cancel,
    "help": _cmd_help,
    "logout": _cmd_logout,
}


# --- registration and login -----------------------------------------------------------


def _registration(t: Turn, text: str, command: str | None) -> None:
    a = t.account
    if a.state in PIN_STATES:
        t.redact = True
    if command == "cancel" and a.state != IDLE:
        _cmd_cancel(t)
        return
    if command in ("help", "menu", "logout") and a.state != IDLE:
        t.say(_help_text(logged_in=False) if command == "help" else "", _question(t))
        return
    if a.state not in ("register_name", "register_pin", "register_pin_again"):
        _reset(a)
        _go(t, "register_name")
        t.say(
            _("Welcome to the owner menu of %(business)s. Let's register this phone.")
            % {"business": t.tenant.name},
            _question(t),
        )
        return
    answer = _clean(text)
    if a.state == "register_name":
        if not answer or len(answer) > 80 or answer.startswith("/") or answer.isdigit():
            _again(t, _("Please write your name (up to 80 letters)."))
            return
        _go(t, "register_pin", name=answer)
        t.say(_question(t))
    elif a.state == "register_pin":
        pin = digits_normalised(text)
        if not accounts.PIN_PATTERN.match(pin):
            _again(t, _("A PIN is 4 to 6 digits."))
        elif accounts.pin_is_trivial(pin):
            _again(t, _("That PIN is too easy to guess (like 1234 or 0000)."))
        else:
            _go(t, "register_pin_again", pending_pin=accounts.pin_hash(pin))
            t.say(_question(t))
    else:  # register_pin_again
        pin = digits_normalised(text)
        pending = (a.context or {}).get("pending_pin", "")
        if not accounts.pin_matches(pin, pending):
            context = {k: v for k, v in (a.context or {}).items() if k != "pending_pin"}
            a.back, a.state, a.context = a.back[:-1], "register_pin", context
            a.state_expires_at = t.now + TIMEOUTS[TEXT]
            t.say(_("The two PINs differ."), _question(t))
            return
        a.name = a.context.get("name", "")[:80]
        a.pin_hash = pending
        a.registered_at = a.last_active_at = t.now
        a.logged_in = True
        a.failed_pins = 0
        t.audit(Action.REGISTERED, name=a.name)
        t.audit(Action.LOGIN)
        _main_menu(t, _("You are registered and logged in, %(name)s.") % {"name": a.name})


def _login(t: Turn, text: str, command: str | None, *, pinish: bool) -> None:
    a = t.account
    if command == "help":
        t.say(_help_text(logged_in=False))
    if command or not pinish:
        if command == "cancel" and a.state == "login_pin":
            _done(t, _("Cancelled. Nothing was saved."))
            return
        _reset(a)
        _go(t, "login_pin")
        t.say(_question(t))
        return
    t.redact = True
    pin = digits_normalised(text)
    if not accounts.PIN_PATTERN.match(pin):
        if a.state != "login_pin":
            _reset(a)
            _go(t, "login_pin")
        _again(t, _("A PIN is 4 to 6 digits."))
        return
    if accounts.pin_matches(pin, a.pin_hash):
        a.logged_in, a.failed_pins, a.last_active_at = True, 0, t.now
        t.audit(Action.LOGIN)
        _main_menu(t, _("Hello %(name)s, you are logged in.") % {"name": a.name})
        return
    a.failed_pins += 1
    t.audit(Action.PIN_FAILED, attempt=a.failed_pins)
    if a.failed_pins >= accounts.MAX_WRONG_PINS:
        a.failed_pins = 0
        a.locked_until = t.now + accounts.LOCKOUT
        _reset(a)
        t.audit(Action.LOCKOUT, until=a.locked_until.isoformat())
        t.say(_locked_text(accounts.LOCKOUT))
        return
    left = accounts.MAX_WRONG_PINS - a.failed_pins
    if a.state != "login_pin":
        _reset(a)
        _go(t, "login_pin")
    _again(
        t,
        ngettext("Wrong PIN. %(n)d attempt left.", "Wrong PIN. %(n)d attempts left.", left)
        % {"n": left},
    )


# --- the main menu --------------------------------------------------------------------


def _menu(t: Turn, text: str) -> None:
    choice = _choice(text)
    if choice not in _MENU_ITEMS:
        _again(t, _("Reply with a number from 1 to 8."))
        return
    _MENU_ITEMS[choice](t)


def _item_orders(t: Turn) -> None:
    from messaging.owner_menu import business

    _done(t, business.orders_today_text())


def _item_advance(t: Turn) -> None:
    from messaging.owner_menu import business

    listing = business.advanceable_text()
    if not listing:
        _done(t, _("No order of today can be advanced."))
        return
    _go(t, "advance_pick", listing=listing)
    t.say(_question(t))


def _item_cancel(t: Turn) -> None:
    from messaging.owner_menu import business

    listing = business.cancellable_text()
    if not listing:
        _done(t, _("No order of today can be cancelled."))
        return
    _go(t, "cancel_pick", listing=listing)
    t.say(_question(t))


def _item_summary(t: Turn) -> None:
    from messaging.owner_menu import business

    _done(t, business.summary_text())


def _item_broadcast(t: Turn) -> None:
    _go(t, "broadcast_text")
    t.say(_question(t))


def _item_pause(t: Turn) -> None:
    from messaging.owner_menu import business

    _go(t, "pause_confirm", paused=business.bot_paused())
    t.say(_question(t))


def _item_reminders(t: Turn) -> None:
    _go(t, "reminders")
    t.say(_question(t))


def _item_settings(t: Turn) -> None:
    _go(t, "settings")
    t.say(_question(t))


_MENU_ITEMS = {
    "1": _item_orders,
    "2": _item_advance,
    "3": _item_cancel,
    "4": _item_summary,
    "5": _item_broadcast,
    "6": _item_pause,
    "7": _item_reminders,
    "8": _item_settings,
}


# --- 2 and 3: advance or cancel an order ----------------------------------------------


def _order_number(text: str) -> int | None:
    number = digits_normalised(text).lstrip("#").strip()
    return int(number) if number.isdigit() and len(number) < 10 else None


def _advance_pick(t: Turn, text: str) -> None:
    from messaging.owner_menu import business

    number = _order_number(text)
    order = business.order_by_number(number) if number is not None else None
    if order is None:
        _again(t, _("There is no order with that number."))
        return
    to = business.next_status(order)
    if to is None:
        _again(
            t,
            _("Order #%(number)s is %(status)s and cannot be advanced.")
            % {"number": order.number, "status": business.status_label(order.status)},
        )
        return
    _go(t, "advance_confirm", order_id=order.pk, number=order.number, frm=order.status, to=to)
    t.say(_question(t))


def _confirmed(t: Turn, text: str, *, declined: str = "") -> bool:
    """True for yes. For no, says `declined` (or "Nothing changed.") and ends the step;
    for anything else, asks again. Either way the caller stops there."""
    answer = _choice(text)
    if answer in NO:
        _done(t, declined or _("Nothing changed."))
        return False
    if answer not in YES:
        _again(t, _("Reply 1 for yes or 2 for no."))
        return False
    return True


def _advance_confirm(t: Turn, text: str) -> None:
    from messaging.owner_menu import business

    if not _confirmed(t, text):
        return
    c = t.account.context
    error = business.order_move(
        order_id=c["order_id"], to=c["to"], actor_label=t.actor_label, note=""
    )
    if error:
        _done(t, error)
        return
    t.audit(Action.TRANSITION, order=c["number"], frm=c["frm"], to=c["to"])
    _done(
        t,
        _("Order #%(number)s is now %(status)s. The customer was told.")
        % {"number": c["number"], "status": business.status_label(c["to"])},
    )


def _cancel_pick(t: Turn, text: str) -> None:
    from messaging.owner_menu import business

    number = _order_number(text)
    order = business.order_by_number(number) if number is not None else None
    if order is None:
        _again(t, _("There is no order with that number."))
        return
    if not business.can_cancel(order):
        _again(
            t,
            _("Order #%(number)s is %(status)s and cannot be cancelled.")
            % {"number": order.number, "status": business.status_label(order.status)},
        )
        return
    _go(t, "cancel_reason", order_id=order.pk, number=order.number, frm=order.status)
    t.say(_question(t))


def _cancel_reason(t: Turn, text: str) -> None:
    if not text or len(text) > 300:
        _again(t, _("Write the reason in up to 300 characters."))
        return
    _go(t, "cancel_confirm", reason=text)
    t.say(_question(t))


def _cancel_confirm(t: Turn, text: str) -> None:
    from messaging.owner_menu import business

    if not _confirmed(t, text):
        return
    c = t.account.context
    error = business.order_move(
        order_id=c["order_id"], to="CANCELLED", actor_label=t.actor_label, note=c["reason"]
    )
    if error:
        _done(t, error)
        return
    t.audit(Action.TRANSITION, order=c["number"], frm=c["frm"], to="CANCELLED", note=c["reason"])
    _done(
        t,
        _("Order #%(number)s is cancelled. The customer was told why.") % {"number": c["number"]},
    )


# --- 5: broadcast ---------------------------------------------------------------------


def _broadcast_text(t: Turn, text: str) -> None:
    text = (t.message.text or "").strip() if t.message.kind == "text" else ""
    if not text or len(text) > 1000:
        _again(t, _("Write the message in up to 1000 characters."))
        return
    _go(t, "broadcast_audience", text=text)
    t.say(_question(t))


def _broadcast_audience(t: Turn, text: str) -> None:
    from messaging.owner_menu import broadcasts

    audience = {"1": broadcasts.RECENT_CUSTOMERS, "2": broadcasts.ALL_CONTACTS}.get(_choice(text))
    if audience is None:
        _again(t, _("Reply 1 or 2."))
        return
    phones, opted_out = broadcasts.broadcast_audience(audience=audience, session=t.session)
    if len(phones) - opted_out <= 0:
        _again(t, _("Nobody in this audience can get a message."))
        return
    _go(t, "broadcast_confirm", audience=audience, count=len(phones), opted_out=opted_out)
    t.say(_question(t))


def _broadcast_confirm(t: Turn, text: str) -> None:
    from messaging.owner_menu import broadcasts

    if not _confirmed(t, text, declined=_("Nothing was sent.")):
        return
    c = t.account.context
    broadcast = broadcasts.owner_broadcast_start(
        account=t.account, session=t.session, text=c["text"], audience=c["audience"]
    )
    t.audit(Action.BROADCAST, audience=c["audience"], recipients=broadcast.recipients)
    _done(
        t,
        ngettext(
            "Sending to %(n)d person. I will report the progress here.",
            "Sending to %(n)d people. I will report the progress here.",
            broadcast.recipients,
        )
        % {"n": broadcast.recipients},
    )


# --- 6: pause or resume ----------------------------------------------------------------


def _pause_confirm(t: Turn, text: str) -> None:
    from messaging.owner_menu import business

    if not _confirmed(t, text):
        return
    paused = not t.account.context.get("paused", False)
    business.bot_pause_set(paused=paused, actor_label=t.actor_label)
    t.audit(Action.BOT_PAUSED if paused else Action.BOT_RESUMED)
    if paused:
        _done(t, _("The ordering bot is paused: customers get the closed message."))
    else:
        _done(t, _("The ordering bot is taking orders again."))


# --- 7: reminders ---------------------------------------------------------------------


def _reminders(t: Turn, text: str) -> None:
    from messaging.owner_menu import reminders

    choice = _choice(text)
    if choice == "1":
        _go(t, "reminder_text")
        t.say(_question(t))
    elif choice == "2":
        listing = reminders.reminders_text(account=t.account, tz=t.tenant.timezone)
        _done(t, listing or _("You have no reminders."))
    elif choice == "3":
        ids, listing = reminders.reminders_listed(account=t.account, tz=t.tenant.timezone)
        if not ids:
            _done(t, _("You have no reminders."))
            return
        _go(t, "reminder_cancel_pick", reminder_ids=ids, listing=listing)
        t.say(_question(t))
    else:
        _again(t, _("Reply 1, 2 or 3."))


def _reminder_text(t: Turn, text: str) -> None:
    if not text or len(text) > 1000:
        _again(t, _("Write the reminder in up to 1000 characters."))
        return
    _go(t, "reminder_when", text=text)
    t.say(_question(t))


def _reminder_when(t: Turn, text: str) -> None:
    from messaging.owner_menu import reminders
    from messaging.owner_menu.when import when_parse

    due = when_parse(text, now=t.now, tz=t.tenant.timezone)
    if due is None:
        _again(t, _("I did not understand that time."))
        return
    if due <= t.now:
        _again(t, _("That time has passed."))
        return
    if due > t.now + reminders.MAX_AHEAD:
        _again(t, _("A reminder can be at most a year ahead."))
        return
    _go(t, "reminder_confirm", due=due.isoformat())
    t.say(_question(t))


def _reminder_confirm(t: Turn, text: str) -> None:
    from messaging.owner_menu import reminders

    if not _confirmed(t, text, declined=_("Nothing was saved.")):
        return
    c = t.account.context
    due = datetime.fromisoformat(c["due"])
    reminder = reminders.reminder_create(
        account=t.account, session=t.session, text=c["text"], due_at=due, now=t.now
    )
    t.audit(Action.REMINDER_CREATED, reminder=str(reminder.public_id), due=due.isoformat())
    _done(
        t,
        _("Reminder set for %(when)s.") % {"when": reminders.when_text(due, tz=t.tenant.timezone)},
    )


def _reminder_cancel_pick(t: Turn, text: str) -> None:
    from messaging.owner_menu import reminders

    ids = t.account.context.get("reminder_ids", [])
    choice = _choice(text)
    if not choice.isdigit() or not 1 <= int(choice) <= len(ids):
        _again(t, _("Reply with the number of a reminder in the list."))
        return
    reminder = reminders.reminder_cancel(account=t.account, reminder_id=ids[int(choice) - 1])
    if reminder is None:
        _done(t, _("That reminder was already sent or cancelled."))
        return
    t.audit(Action.REMINDER_CANCELLED, reminder=str(reminder.public_id))
    _done(t, _("The reminder is cancelled."))


# --- 8: settings ----------------------------------------------------------------------


def _settings(t: Turn, text: str) -> None:
    if _choice(text) != "1":
        _again(t, _("Reply 1."))
        return
    _go(t, "settings_language")
    t.say(_question(t))


def _settings_language(t: Turn, text: str) -> None:
    language = LANGUAGES.get(_choice(text))
    if language is None:
        _again(t, _("Reply 1, 2 or 3."))
        return
    t.account.language = language
    t.audit(Action.LANGUAGE, language=language)
    translation.activate(language)  # the override in owner_menu_handle restores it
    _done(t, _("From now on I will write in English."))


# --- the questions of each state -------------------------------------------------------


def _q_confirm(question: str) -> str:
    return question + "\n1. " + _("Yes") + "\n2. " + _("No")


def _q_advance_confirm(t: Turn) -> str:
    from messaging.owner_menu import business

    c = t.account.context
    return _q_confirm(
        _("Move order #%(number)s from %(from)s to %(to)s?")
        % {
            "number": c["number"],
            "from": business.status_label(c["frm"]),
            "to": business.status_label(c["to"]),
        }
    )


def _q_broadcast_confirm(t: Turn) -> str:
    c = t.account.context
    count = ngettext("It goes to %(n)d person.", "It goes to %(n)d people.", c["count"]) % {
        "n": c["count"]
    }
    if c.get("opted_out"):
        count += " " + ngettext(
            "%(n)d of them opted out and will not get it.",
            "%(n)d of them opted out and will not get it.",
            c["opted_out"],
        ) % {"n": c["opted_out"]}
    return _q_confirm(_("Preview:") + "\n\n" + c["text"] + "\n\n" + count + "\n" + _("Send it?"))


def _q_pause_confirm(t: Turn) -> str:
    if t.account.context.get("paused"):
        return _q_confirm(_("The ordering bot is paused. Resume taking orders?"))
    return _q_confirm(
        _("The ordering bot is taking orders. Pause it? Customers will get the closed message.")
    )


def _q_reminder_confirm(t: Turn) -> str:
    from messaging.owner_menu import reminders

    c = t.account.context
    when = reminders.when_text(datetime.fromisoformat(c["due"]), tz=t.tenant.timezone)
    return _q_confirm(_("Remind you on %(when)s: “%(text)s”?") % {"when": when, "text": c["text"]})


_QUESTIONS = {
    "register_name": lambda t: _("What is your name?"),
    "register_pin": lambda t: _("Choose a PIN of 4 to 6 digits."),
    "register_pin_again": lambda t: _("Write the same PIN again."),
    "login_pin": lambda t: _("Please enter your PIN."),
    "menu": lambda t: _menu_text(),
    "advance_pick": lambda t: (
        _("Which order moves on? Send its number.") + "\n" + t.account.context.get("listing", "")
    ),
    "advance_confirm": _q_advance_confirm,
    "cancel_pick": lambda t: (
        _("Which order is cancelled? Send its number.")
        + "\n"
        + t.account.context.get("listing", "")
    ),
    "cancel_reason": lambda t: _("Why is it cancelled? The customer will get this reason."),
    "cancel_confirm": lambda t: _q_confirm(
        _("Cancel order #%(number)s (“%(reason)s”)?") % t.account.context
    ),
    "broadcast_text": lambda t: _("Write the message to send."),
    "broadcast_audience": lambda t: "\n".join(
        [
            _("Who gets it?"),
            "1. " + _("Customers who ordered in the last 30 days"),
            "2. " + _("Every contact who has not opted out"),
        ]
    ),
    "broadcast_confirm": _q_broadcast_confirm,
    "pause_confirm": _q_pause_confirm,
    "reminders": lambda t: "\n".join(
        [
            _("Reminders:"),
            "1. " + _("New reminder"),
            "2. " + _("My reminders"),
            "3. " + _("Cancel a reminder"),
        ]
    ),
    "reminder_text": lambda t: _("What should I remind you of?"),
    "reminder_when": lambda t: _(
        "When? For example “tomorrow 9:00”, “in 2 hours” or “25/12 18:30”."
    ),
    "reminder_confirm": _q_reminder_confirm,
    "reminder_cancel_pick": lambda t: (
        _("Which reminder is cancelled? Send its number.")
        + "\n"
        + t.account.context.get("listing", "")
    ),
    "settings": lambda t: _("Settings:") + "\n1. " + _("Language"),
    "settings_language": lambda t: (
        _("Choose your language:") + "\n1. עברית\n2. English\n3. العربية"
    ),
}

_HANDLERS = {
    "menu": _menu,
    "advance_pick": _advance_pick,
    "advance_confirm": _advance_confirm,
    "cancel_pick": _cancel_pick,
    "cancel_reason": _cancel_reason,
    "cancel_confirm": _cancel_confirm,
    "broadcast_text": _broadcast_text,
    "broadcast_audience": _broadcast_audience,
    "broadcast_confirm": _broadcast_confirm,
    "pause_confirm": _pause_confirm,
    "reminders": _reminders,
    "reminder_text": _reminder_text,
    "reminder_when": _reminder_when,
    "reminder_confirm": _reminder_confirm,
    "reminder_cancel_pick": _reminder_cancel_pick,
    "settings": _settings,
    "settings_language": _settings_language,
}
