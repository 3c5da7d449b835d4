"""Telling a tenant's owners that a session needs them (logged out, banned, failed).

The runner calls `session_alert_after_commit`; the email goes out from a Celery worker
(never from the runner's control loop), and the dashboards get a `session.alert` event.
"""

from django.core.mail import send_mail
from django.db import transaction
from django.utils.translation import gettext as _

from sessions_app.models import Status, WhatsAppSession

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
    """Email every owner of the session's tenant. Returns how many were emailed."""
    from django.contrib.auth import get_user_model
    from django_tenants.utils import schema_context

    session = WhatsAppSession.objects.select_related("tenant").get(pk=session_id)
    if session.status not in ALERT_STATUSES:
        return 0  # resolved meanwhile: nothing to say
    with schema_context(session.tenant.schema_name):
        owners = list(
            get_user_model()
            .objects.filter(role="owner", is_active=True)
            .values_list("email", flat=True)
        )
    if not owners:
        return 0
    subject, body = _alert_text(session)
    send_mail(subject, body, None, owners, fail_silently=False)
    return len(owners)


def session_alert_after_commit(*, session_id: int) -> None:
    from sessions_app.tasks import session_alert

    transaction.on_commit(lambda: session_alert.delay(session_id))
