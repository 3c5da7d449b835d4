"""The owner-only menu: running the business from the owner's own phone.

Routing (messaging/routing.py) sends every message from one of a session's owner numbers
here, and nobody else's. `owner_menu_handle` answers it: PIN registration and login
(accounts.py), the conversation state machine and the eight menu items (flow.py), orders
(business.py), broadcasts (broadcasts.py), reminders (reminders.py, when.py) and the
expiry of steps (timeouts.py); the beat job is sweep.py, the Celery tasks tasks.py.
The dashboard reads `owner_audit_entries()` and `owner_lockouts_active()`.
"""


def owner_menu_handle(*, session, message, now=None) -> list[str]:
    """Answer an owner's message (current schema: the session's tenant)."""
    from messaging.owner_menu.flow import owner_menu_handle as handle

    return handle(session=session, message=message, now=now)


def owner_audit_entries(*, limit: int = 100):
    from messaging.owner_menu.accounts import owner_audit_entries as entries

    return entries(limit=limit)


def owner_lockouts_active(*, now=None):
    from messaging.owner_menu.accounts import owner_lockouts_active as lockouts

    return lockouts(now=now)
