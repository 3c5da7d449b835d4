"""Telling a tenant's owners that a session needs them (logged out, banned, failed).

The runner calls `session_alert_after_commit`; the email goes out from a Celery worker
(never from the runner's control loop), and the dashboards get a `session.alert` event.
"""

from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import override

from sessions_app.models import Incident, Status, WhatsAppSession

ALERT_STATUSES = (Status.LOGGED_OUT, Status.BANNED, Status.FAILED)


def _alert_text(session: WhatsAppSession) -> tuple[str, str]:
    status = {
        Status.LOGGED_OUT: _("was logged out"),
        Status.BANNED: _("was temporarily banned by WhatsApp"),
        Status.FAILED: _("stopped and could not reconnect"),
    }[session.status]
    subject = _("WhatsApp session “%(name)s” %(status)s") % {"name": session.name, "status": status}
    body = _(
        "Your WhatsApp session “%(name)s” (%(phone)s) %(status)s.\n"
        "Reason: %(reason)s\n\n"
        "Open the dashboard to start it again or scan a new QR code."
    ) % {
        "name": session.name,
        "phone": session.phone_number or _("no number yet"),
        "status": status,
        "reason": session.last_disconnect_reason or "-",
    }
    return subject, body


def session_alert_send(*, session_id: int) -> int:
    """Open the session's incident and tell the owners (email, WhatsApp from another
    connected number, dashboard) and the platform admins -- once per incident: a session
    failing again before it came back says nothing new. Returns how many owners were
    emailed."""
    from sessions_app.incidents import incident_notify, incident_open

    session = WhatsAppSession.objects.select_related("tenant").get(pk=session_id)
    if session.status not in ALERT_STATUSES:
        return 0  # resolved meanwhile: nothing to say
    with override(session.tenant.language):
        subject, body = _alert_text(session)
    incident, _created = incident_open(
        kind=Incident.Kind.SESSION_DOWN,
        tenant=session.tenant,
        subject=str(session.pk),
        summary=subject,
        details={"status": session.status, "reason": session.last_disconnect_reason},
    )
    return incident_notify(incident=incident, owner_subject=subject, owner_body=body)


def session_alert_after_commit(*, session_id: int) -> None:
    from sessions_app.tasks import session_alert

    transaction.on_commit(lambda: session_alert.delay(session_id))
