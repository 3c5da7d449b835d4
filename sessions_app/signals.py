"""What the session layer tells the rest of the product.

The messaging pipeline connects receivers: inbound messages and receipts to store,
and the outcome of every send a runner executed.
"""

from django.dispatch import Signal

# kwargs: session (WhatsAppSession), message (InboundMessage)
inbound_received = Signal()
# kwargs: session (WhatsAppSession), receipt (Receipt)
receipt_received = Signal()
# kwargs: session_id, ref (dict given at enqueue), idempotency_key, provider_message_id
# (on success), error (str, on failure), attempts
send_finished = Signal()
# Asked by the runner before it sends an entry that has a ref: kwargs session_id, ref,
# idempotency_key, message (OutboundMessage), attempts (made so far). A receiver returns
# a sessions_app.outbox.SendCheck (wait, skip, or humanisation steps) or None.
send_checking = Signal()
