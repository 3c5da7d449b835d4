"""Alerts, once per incident: who hears what when something needs a person.

- the platform admins (PLATFORM_ALERT_EMAILS, by email) hear about every incident;
- a tenant's owners hear about their own: by email, on WhatsApp (from another of the
  tenant's connected numbers, to the sessions' owner numbers) and on the dashboard
  (an `alert` event to the tenant's group).

An incident stays open while its cause lasts (one open incident per kind, tenant and
subject: a unique constraint), so a storm of events alerts once. `operations_check`
(beat, every OPERATIONS_CHECK_SECONDS) opens and resolves the incidents that are read
off the data: dead letters piling up, a tenant's block rate, runners that died.
Sessions that are logged out, banned or failed open theirs as it happens
(sessions_app/alerts.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override
from django_tenants.utils import schema_context

from config.heartbeats import RUNNERS, heartbeats_read
from sessions_app.models import Incident, Status, WhatsAppSession

logger = logging.getLogger(__name__)

Kind = Incident.Kind


def incident_open(
    *, kind: str, tenant=None, subject: str, summary: str, details: dict | None = None
) -> tuple[Incident, bool]:
    """The open incident about this subject, created if there was none (then True)."""
    existing = _open(kind=kind, tenant=tenant, subject=subject)
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                kind=kind, tenant=tenant, subject=subject, summary=summary[:300],
                details=details or {},
            )  # fmt: skip
    except IntegrityError:  # opened meanwhile by a concurrent check
        return _open(kind=kind, tenant=tenant, subject=subject), False
    logger.warning("incident opened: %s %s", kind, subject, extra={"event": "incident.opened"})
    return incident, True


def _open(*, kind: str, tenant, subject: str) -> Incident | None:
    return Incident.objects.filter(
        kind=kind, tenant=tenant, subject=subject, resolved_at__isnull=True
    ).first()


def incident_resolve(*, kind: str, tenant=None, subject: str) -> bool:
    resolved = Incident.objects.filter(
        kind=kind, tenant=tenant, subject=subject, resolved_at__isnull=True
    ).update(resolved_at=timezone.now())
    return bool(resolved)


# --- telling people -------------------------------------------------------------------


def incident_notify(*, incident: Incident, owner_subject: str = "", owner_body: str = "") -> int:
    """Tell everyone concerned, once (the first caller claims the incident). Returns how
    many of the tenant's owners were emailed."""
    claimed = Incident.objects.filter(pk=incident.pk, notified_at__isnull=True).update(
        notified_at=timezone.now()
    )
    if not claimed:
        return 0
    try:
        admins = list(settings.PLATFORM_ALERT_EMAILS)
        if admins:
            where = f" ({incident.tenant.slug})" if incident.tenant_id else ""
            send_mail(
                f"[WhatsApp platform] {incident.get_kind_display()}{where}",
                f"{incident.summary}\n\nDetails: {incident.details}",
                None,
                admins,
            )
        if incident.tenant_id is None:
            return 0
        return _tell_tenant(incident, subject=owner_subject, body=owner_body)
    except Exception:
        # Give the next attempt (a Celery retry, the next check) its chance.
        Incident.objects.filter(pk=incident.pk).update(notified_at=None)
        raise


def _tell_tenant(incident: Incident, *, subject: str, body: str) -> int:
    from django.contrib.auth import get_user_model

    from dashboard.realtime import tenant_event_publish

    tenant = incident.tenant
    with override(tenant.language):
        subject = subject or _("Your WhatsApp business needs attention")
        body = body or incident.summary
        whatsapp_text = f"⚠️ {subject}\n{incident.summary}"
    with schema_context(tenant.schema_name):
        owners = list(
            get_user_model()
            .objects.filter(role="owner", is_active=True)
            .values_list("email", flat=True)
        )
        _whatsapp_owners(incident, whatsapp_text)
    if owners:
        send_mail(subject, body, None, owners)
    tenant_event_publish(
        schema_name=tenant.schema_name,
        event={
            "type": "alert",
            "kind": incident.kind,
            "summary": incident.summary,
            "opened_at": incident.opened_at.isoformat(),
        },
    )
    return len(owners)


def _whatsapp_owners(incident: Incident, text: str) -> None:
    """From a connected number of the tenant (not the one the incident is about) to every
    owner number; nothing when no other number is connected. Call in the tenant schema."""
    from messaging.outbound import message_send

    sessions = list(WhatsAppSession.objects.filter(tenant=incident.tenant))
    owners = sorted({phone for session in sessions for phone in session.owner_numbers})
    senders = [
        s for s in sessions if s.status == Status.CONNECTED and str(s.pk) != incident.subject
    ]
    if not owners or not senders:
        return
    for phone in owners:
        try:
            message_send(
                session=senders[0],
                to=phone,
                text=text,
                idempotency_key=f"incident:{incident.pk}:{phone}",
            )
        except Exception:  # one unreachable owner must not stop the others
            logger.warning("incident %s: WhatsApp to an owner failed", incident.pk, exc_info=True)


# --- reading incidents off the data ---------------------------------------------------


@dataclass
class CheckReport:
    opened: int = 0
    resolved: int = 0


def operations_check() -> CheckReport:
    """Open what started, resolve what ended. Safe to run twice at once."""
    from tenants.models import Tenant

    report = CheckReport()
    _check_sessions_back(report)
    _check_runners(report)
    for tenant in Tenant.objects.exclude(schema_name="public").filter(is_active=True):
        if tenant.schema_name == settings.TENANT_BASE_SCHEMA:
            continue
        with schema_context(tenant.schema_name):
            _check_dead_letters(tenant, report)
            _check_block_rate(tenant, report)
    return report


def _check_sessions_back(report: CheckReport) -> None:
    for incident in Incident.objects.filter(kind=Kind.SESSION_DOWN, resolved_at__isnull=True):
        session = WhatsAppSession.objects.filter(pk=incident.subject).first()
        if session is None or session.status not in (
            Status.LOGGED_OUT,
            Status.BANNED,
            Status.FAILED,
        ):
            report.resolved += incident_resolve(
                kind=Kind.SESSION_DOWN, tenant=incident.tenant, subject=incident.subject
            )


def _check_runners(report: CheckReport) -> None:
    beats = {beat.name: beat for beat in heartbeats_read(RUNNERS)}
    for name, beat in beats.items():
        if beat.fresh:
            continue
        held = beat.extra.get("sessions", 0)
        incident, created = incident_open(
            kind=Kind.RUNNER_DIED,
            subject=name,
            summary=(
                f"Session runner {name} stopped sending heartbeats "
                f"{beat.age_seconds:.0f} s ago without shutting down; the {held} sessions "
                "it held move to the other runners."
            ),
            details={"runner": name, "sessions": held},
        )
        if created:
            report.opened += 1
            incident_notify(incident=incident)
    for incident in Incident.objects.filter(kind=Kind.RUNNER_DIED, resolved_at__isnull=True):
        beat = beats.get(incident.subject)
        if beat is None or beat.fresh:  # pruned long after its death, or beating again
            report.resolved += incident_resolve(kind=Kind.RUNNER_DIED, subject=incident.subject)


def _check_dead_letters(tenant, report: CheckReport) -> None:
    from messaging.models import Message

    since = timezone.now() - timedelta(hours=1)
    count = Message.objects.filter(dead_letter=True, failed_at__gte=since).count()
    if count >= settings.DEAD_LETTER_ALERT_THRESHOLD:
        with override(tenant.language):
            summary = _(
                "%(count)d messages could not be sent in the last hour. They are kept as "
                "dead letters: open the inbox to see why and retry them."
            ) % {"count": count}
        incident, created = incident_open(
            kind=Kind.DEAD_LETTERS, tenant=tenant, subject="messages", summary=summary,
            details={"dead_letters_last_hour": count},
        )  # fmt: skip
        if created:
            report.opened += 1
            incident_notify(incident=incident)
    elif count == 0:
        report.resolved += incident_resolve(
            kind=Kind.DEAD_LETTERS, tenant=tenant, subject="messages"
        )


def _check_block_rate(tenant, report: CheckReport) -> None:
    from django.db.models import Count, Q

    from messaging.models import Contact

    counts = Contact.objects.aggregate(
        total=Count("id"), blocked=Count("id", filter=Q(blocked=True))
    )
    total, blocked = counts["total"], counts["blocked"]
    too_high = (
        total >= settings.BLOCK_RATE_MIN_CONTACTS
        and blocked * 100 > settings.BLOCK_RATE_ALERT_PERCENT * total
    )
    if too_high:
        with override(tenant.language):
            summary = _(
                "%(blocked)d of your %(total)d contacts (%(rate).1f%%) blocked or reported "
                "your number. WhatsApp may ban numbers that many people block: send less, "
                "and only to customers who asked for it."
            ) % {"blocked": blocked, "total": total, "rate": blocked * 100 / total}
        incident, created = incident_open(
            kind=Kind.BLOCK_RATE, tenant=tenant, subject="contacts", summary=summary,
            details={"blocked": blocked, "contacts": total},
        )  # fmt: skip
        if created:
            report.opened += 1
            incident_notify(incident=incident)
    else:
        report.resolved += incident_resolve(kind=Kind.BLOCK_RATE, tenant=tenant, subject="contacts")


def incidents_open_for(tenant) -> list[Incident]:
    """What the tenant's dashboard shows at the top while it lasts."""
    return list(Incident.objects.filter(tenant=tenant, resolved_at__isnull=True))
