"""Owners' broadcasts: the audience, the job (messaging.bulk: the outbound pipeline with
its limits and opt-outs), and the progress reported back to the owner."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.dispatch import receiver
from django.utils import translation
from django.utils.translation import gettext as _

from messaging.bulk import bulk_send_create, bulk_send_progressed
from messaging.models import BulkSend, Contact
from messaging.owner_menu import clock
from messaging.owner_models import OwnerAccount, OwnerBroadcast

logger = logging.getLogger(__name__)

RECENT_CUSTOMERS = "recent_customers"
ALL_CONTACTS = "all_contacts"
RECENT_DAYS = 30
PROGRESS_EVERY = timedelta(seconds=10)  # at most one "sent X of Y" this often


def _owner_phones(session) -> set[str]:
    return set(session.owner_numbers or []) | set(
        OwnerAccount.objects.values_list("phone", flat=True)
    )


def broadcast_audience(*, audience: str, session) -> tuple[list[str], int]:
    """(the phones, how many of them opted out). Customers who ordered in the last 30
    days include those who opted out (the pipeline skips them, and the owner is told);
    "every contact" leaves them out. Owners and blocked contacts are never in it."""
    if audience == RECENT_CUSTOMERS:
        since = clock.now() - timedelta(days=RECENT_DAYS)
        contacts = Contact.objects.filter(orders__created_at__gte=since).exclude(
            orders__status="DRAFT"
        )
    elif audience == ALL_CONTACTS:
        contacts = Contact.objects.filter(opted_out=False)
    else:
        raise ValueError(f"unknown audience {audience!r}")
    rows = (
        contacts.filter(blocked=False)
        .exclude(phone__in=_owner_phones(session))
        .values_list("phone", "opted_out")
        .distinct()
        .order_by("phone")
    )
    rows = list(rows)
    return [phone for phone, _ in rows], sum(1 for _, opted in rows if opted)


def owner_broadcast_start(*, account: OwnerAccount, session, text: str, audience: str):
    """Store the broadcast and start its bulk job (after commit, by messaging.bulk)."""
    phones, _opted_out = broadcast_audience(audience=audience, session=session)
    with transaction.atomic():
        broadcast = OwnerBroadcast.objects.create(
            owner=account,
            session_id=session.pk,
            text=text,
            audience=audience,
            recipients=len(phones),
        )
        job = bulk_send_create(
            session=session,
            items=[{"to": phone, "text": text} for phone in phones],
            origin="owner_menu",
            notify={"owner_broadcast_id": broadcast.pk},
        )
        broadcast.bulk_send_id = job.pk
        broadcast.save(update_fields=["bulk_send_id"])
    return broadcast


def owner_broadcast_progress(*, broadcast_id: int, job: BulkSend, final: bool) -> str | None:
    """Tell the owner how their broadcast goes: "sent X of Y" when it starts and then at
    most every PROGRESS_EVERY while the count moves, and one final report. Returns the
    text sent, if any. Safe to call twice for the same progress (row lock + keys)."""
    from messaging.outbound import message_send
    from sessions_app.models import WhatsAppSession

    now = clock.now()
    with transaction.atomic():
        broadcast = (
            OwnerBroadcast.objects.select_for_update()
            .select_related("owner")
            .filter(pk=broadcast_id)
            .first()
        )
        if broadcast is None or broadcast.reported_at is not None:
            return None
        session = (
            WhatsAppSession.objects.select_related("tenant").filter(pk=broadcast.session_id).first()
        )
        if session is None:
            return None
        owner = broadcast.owner
        language = owner.language or session.tenant.language or "he"
        with translation.override(language):
            if final:
                text = _final_report(job)
                key = f"owner-broadcast-{broadcast.pk}-final"
                broadcast.reported_at = now
            else:
                first = broadcast.last_progress_at is None
                moved = job.sent != broadcast.last_progress_sent
                due = first or now - broadcast.last_progress_at >= PROGRESS_EVERY
                if not (moved and due):
                    return None
                text = _("Broadcast: sent %(sent)d of %(total)d.") % {
                    "sent": job.sent,
                    "total": job.total,
                }
                key = f"owner-broadcast-{broadcast.pk}-sent-{job.sent}"
                broadcast.last_progress_sent = job.sent
                broadcast.last_progress_at = now
        broadcast.save()
        message_send(session=session, to=owner.phone, text=text, idempotency_key=key)
    return text


def _final_report(job: BulkSend) -> str:
    lines = [
        _("Broadcast finished: sent %(sent)d of %(total)d.")
        % {"sent": job.sent, "total": job.total}
    ]
    if job.suppressed:
        lines.append(_("Not sent (opted out or a duplicate): %(n)d.") % {"n": job.suppressed})
    if job.failed:
        lines.append(_("Failed: %(n)d.") % {"n": job.failed})
    if job.queued:
        lines.append(_("Still waiting to go: %(n)d.") % {"n": job.queued})
    return "\n".join(lines)


@receiver(bulk_send_progressed, dispatch_uid="owner_menu.broadcast_progress")
def _on_bulk_progress(sender, *, job: BulkSend, final: bool, **kwargs) -> None:
    broadcast_id = (job.notify or {}).get("owner_broadcast_id")
    if isinstance(broadcast_id, int):
        owner_broadcast_progress(broadcast_id=broadcast_id, job=job, final=final)
