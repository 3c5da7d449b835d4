"""The ordering bot: entry point for customers' messages on `ordering` sessions.

Routing (messaging/routing.py) sends here the customers of ordering sessions whose
conversation no person has taken over. The work is in orders/bot_turns.py (the turn:
state, replies, actions) and orders/bot_flow.py (the conversation as a pure function).
"""

import logging

logger = logging.getLogger(__name__)


def ordering_bot_handle(*, session, message) -> None:
    """Answer a customer's message (current schema: the session's tenant)."""
    from orders.bot_turns import bot_turn

    if message.kind != "text" or not (message.text or "").strip():
        message.text = ""  # a photo or a voice note: answered like an empty message
    bot_turn(session=session, message=message)
