"""Steps that expire: the owner is told once that the step expired and nothing was
saved, and their state goes back to idle.

`owner_states_expire()` runs from the beat sweep (in every tenant schema). Each expired
state is reset under its row's lock, in the same transaction as the notice is queued,
and the notice's idempotency key names the account and the expiry time: two sweeps at
once, a sweep run twice, or the owner's next message racing the sweep send one notice.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _

from messaging.owner_menu import clock
from messaging.owner_models import OwnerAccount

logger = logging.getLogger(__name__)

IDLE = "idle"


def owner_state_expire_locked(*, account: OwnerAccount, session, now: datetime) -> bool:
    """Reset an expired state and queue its notice. The caller holds the account's row
    lock and saves it. False when the state had not expired."""
    from messaging.outbound import message_send

    expires_at = account.state_expires_at
    if account.state == IDLE or expires_at is None or expires_at > now:
        return False
    account.state, account.context, account.back, account.state_expires_at = IDLE, {}, [], None
    if session is None:
        return True
    language = account.language or session.tenant.language or "he"
    with translation.override(language):
        text = _("That step expired and nothing was saved. Send /menu to start again.")
    message_send(
        session=session,
        to=account.phone,
        text=text,
        idempotency_key=f"owner-timeout-{account.pk}-{int(expires_at.timestamp() * 1000)}",
    )
    return True


def owner_states_expire(*, now: datetime | None = None) -> int:
    """In the current schema: every expired step is reset and its owner told, once.
    Returns how many."""
    from sessions_app.models import WhatsAppSession

    now = now or clock.now()
    expired = list(
        OwnerAccount.objects.exclude(state=IDLE)
        .filter(state_expires_at__lte=now)
        .values_list("pk", flat=True)[:500]
    )
    count = 0
    for pk in expired:
        with transaction.atomic():
            account = (
                OwnerAccount.objects.select_for_update(skip_locked=True)
                .exclude(state=IDLE)
                .filter(pk=pk, state_expires_at__lte=now)
                .first()
            )
            if account is None:
                continue  # handled meanwhile (a message, another sweep)
            session = (
                WhatsAppSession.objects.select_related("tenant")
                .filter(pk=account.session_id)
                .first()
            )
            if owner_state_expire_locked(account=account, session=session, now=now):
                account.save(update_fields=["state", "context", "back", "state_expires_at"])
                count += 1
    return count
