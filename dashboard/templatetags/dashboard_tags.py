"""Template helpers of the dashboard: session statuses in the reader's language."""

from django import template
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

register = template.Library()

STATUS_LABELS = {
    "STOPPED": _("Stopped"),
    "STARTING": _("Starting"),
    "WAIT_QR": _("Waiting for a scan"),
    "CONNECTED": _("Connected"),
    "DISCONNECTED": _("Disconnected"),
    "LOGGED_OUT": pgettext_lazy("session status", "Logged out"),
    "BANNED": _("Banned"),
    "FAILED": _("Failed"),
}


@register.filter
def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


@register.simple_tag
def status_labels_json() -> str:
    """The same labels for the pages' scripts (a JSON object, for json_script)."""
    return {status: str(label) for status, label in STATUS_LABELS.items()}
