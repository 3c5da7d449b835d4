"""The ordering bot: entry point for customers' messages on `ordering` sessions.

The bot itself (menu, cart, confirmation) is the orders issue; routing already sends
customers of ordering sessions here, and nobody else.
"""

import logging

logger = logging.getLogger(__name__)


def ordering_bot_handle(*, session, message) -> None:
    """Answer a customer's message (current schema: the session's tenant)."""
    logger.info(
        "customer message %s on session %s: the ordering bot is not built yet",
        message.pk,
        session.pk,
    )
