"""Celery tasks for outgoing webhooks: thin, they take ids and call messaging.webhooks.

Both go to settings.WEBHOOK_QUEUE (the services and the beat schedule say so), which a
deployment may give workers of their own so that slow receivers never delay anything else.
"""

from celery import shared_task

from messaging.webhooks import webhook_deliver, webhook_deliveries_sweep


@shared_task(
    name="messaging.webhook_deliver",
    # Safe to run twice (the attempt claims its row first), so a worker that dies
    # mid-task hands the message back instead of losing it.
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def webhook_deliver_task(delivery_id: int) -> str:
    """One attempt at one delivery, in the tenant schema the task carries."""
    return webhook_deliver(delivery_id=delivery_id)


@shared_task(name="messaging.webhook_deliveries_sweep", ignore_result=True)
def webhook_deliveries_sweep_task() -> int:
    """Run by beat every WEBHOOK_SWEEP_SECONDS, in the public schema: queues again, in
    every tenant schema, the pending deliveries nobody has claimed."""
    return webhook_deliveries_sweep()
