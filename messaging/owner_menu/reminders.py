"""Owners' reminders: created from the menu, delivered once at their time.

Delivery: a Celery task with the reminder's time as its ETA (queued after commit when
the reminder is due within EAGER_WINDOW, otherwise by the sweep shortly before), plus
the beat sweep (`owner_menu_sweep`, every few seconds) that delivers anything due that
no task delivered (a worker was down, a task was lost). Whichever comes first sends it;
the other finds the reminder no longer `scheduled`: the state change, under the row's
lock and in the same transaction as the message, is what makes it once. The message's
idempotency key (`owner-reminder-<id>`) guards the same way.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import formats, translation
from django.utils.translation import gettext as _

from messaging.owner_menu import clock
from messaging.owner_models import OwnerAccount, OwnerReminder

logger = logging.getLogger(__name__)

MAX_AHEAD = timedelta(days=366)
# Reminders due within this window get an ETA task at once; the others get one from the
# sweep when their time comes this close (an ETA far ahead would sit in a worker for
# hours, and Redis hands unacknowledged tasks out again after its visibility timeout).
EAGER_WINDOW = timedelta(minutes=10)
EARLY_TOLERANCE = timedelta(seconds=1)  # an ETA task a hair early still delivers
MAX_LISTED = 20
_State = OwnerReminder.State


def when_text(moment: datetime, *, tz: str) -> str:
    """ "Wed 25/11/2026 09:00 (Asia/Jerusalem)" in the active language."""
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    local = moment.astimezone(zone)
    day = formats.date_format(local, "D")
    return f"{day} {local:%d/%m/%Y %H:%M} ({zone.key})"


def reminder_create(
    *, account: OwnerAccount, session, text: str, due_at: datetime, now: datetime | None = None
) -> OwnerReminder:
    now = now or clock.now()
    reminder = OwnerReminder.objects.create(
        owner=account, session_id=session.pk, text=text[:1000], due_at=due_at
    )
    if due_at - now <= EAGER_WINDOW:
        _queue_after_commit(reminder, now=now)
    return reminder


def _queue_after_commit(reminder: OwnerReminder, *, now: datetime) -> None:
    schema = connection.schema_name
    reminder_id, due_at = reminder.pk, reminder.due_at
    OwnerReminder.objects.filter(pk=reminder_id).update(task_queued_at=now)

    def queue() -> None:
        from messaging.owner_menu.tasks import owner_reminder_deliver

        owner_reminder_deliver.apply_async(
            args=[reminder_id], eta=due_at, headers={"_schema_name": schema}
        )

    transaction.on_commit(queue)


def _scheduled(account: OwnerAccount):
    return OwnerReminder.objects.filter(owner=account, state=_State.SCHEDULED).order_by(
        "due_at", "id"
    )


def reminders_listed(*, account: OwnerAccount, tz: str) -> tuple[list[int], str]:
    """The owner's scheduled reminders: their ids and a numbered list."""
    reminders = list(_scheduled(account)[:MAX_LISTED])
    lines = [
        f"{index}. {when_text(r.due_at, tz=tz)} — {r.text[:100]}"
        for index, r in enumerate(reminders, start=1)
    ]
    return [r.pk for r in reminders], "\n".join(lines)


def reminders_text(*, account: OwnerAccount, tz: str) -> str:
    ids, listing = reminders_listed(account=account, tz=tz)
    return (_("Your reminders:") + "\n" + listing) if ids else ""


def reminder_cancel(*, account: OwnerAccount, reminder_id: int) -> OwnerReminder | None:
    """Cancel one of the owner's scheduled reminders; None when it is no longer one."""
    reminder = (
        OwnerReminder.objects.select_for_update()
        .filter(pk=reminder_id, owner=account, state=_State.SCHEDULED)
        .first()
    )
    if reminder is None:
        return None
    reminder.state = _State.CANCELLED
    reminder.save(update_fields=["state"])
    return reminder


def reminder_deliver(*, reminder_id: int, now: datetime | None = None) -> bool:
    """Send one due reminder to its owner, once. True if this call sent it."""
    from messaging.outbound import message_send
    from sessions_app.models import WhatsAppSession

    now = now or clock.now()
    with transaction.atomic():
        reminder = (
            OwnerReminder.objects.select_for_update(skip_locked=True)
            .select_related("owner")
            .filter(pk=reminder_id, state=_State.SCHEDULED, due_at__lte=now + EARLY_TOLERANCE)
            .first()
        )
        if reminder is None:
            return False
        session = (
            WhatsAppSession.objects.select_related("tenant").filter(pk=reminder.session_id).first()
        )
        reminder.state = _State.SENT
        reminder.sent_at = now
        if session is None:
            logger.warning("reminder %s: its session is gone, not sent", reminder.public_id)
        else:
            owner = reminder.owner
            with translation.override(owner.language or session.tenant.language or "he"):
                text = _("⏰ Reminder: %(text)s") % {"text": reminder.text}
            message = message_send(
                session=session,
                to=owner.phone,
                text=text,
                idempotency_key=f"owner-reminder-{reminder.public_id.hex}",
            )
            reminder.message_id = message.pk
        reminder.save(update_fields=["state", "sent_at", "message_id"])
    return True


def reminders_due_run(*, now: datetime | None = None) -> int:
    """In the current schema: deliver every reminder that is due, and queue ETA tasks
    for those due within EAGER_WINDOW that have none. Returns how many were delivered."""
    now = now or clock.now()
    due = list(
        OwnerReminder.objects.filter(state=_State.SCHEDULED, due_at__lte=now).values_list(
            "pk", flat=True
        )[:500]
    )
    delivered = sum(1 for pk in due if reminder_deliver(reminder_id=pk, now=now))
    soon = OwnerReminder.objects.filter(
        state=_State.SCHEDULED, task_queued_at__isnull=True, due_at__lte=now + EAGER_WINDOW
    )
    for reminder in soon[:500]:
        with transaction.atomic():
            _queue_after_commit(reminder, now=now)
    return delivered
