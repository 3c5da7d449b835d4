"""The owner-only menu: entry point for messages from a session's owner numbers.

The menu itself (PIN login, today's orders, broadcast, reminders...) is the owner-menu
issue; routing already sends owners here and nowhere else.
"""

import logging

logger = logging.getLogger(__name__)


def owner_menu_handle(*, session, message) -> None:
    """Answer an owner's message (current schema: the session's tenant)."""
    logger.info(
        "owner message %s on session %s: the owner menu is not built yet", message.pk, session.pk
    )
