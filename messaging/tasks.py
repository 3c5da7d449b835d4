"""Celery tasks of the messaging app. Tasks are thin: they take ids and call a service.

The tenant schema travels in each task's headers (tenant-schemas-celery): a task runs in
the schema of whoever queued it.
"""

from celery import shared_task
from django.db import DatabaseError
from redis.exceptions import RedisError

# --- outbound (messaging/outbound.py) --------------------------------------------------


@shared_task(
    name="messaging.message_deliver",
    bind=True,
    acks_late=True,  # harmless twice: it only sends a message that is still queued
    ignore_result=True,
    max_retries=None,  # the attempts that count are the message's own (Message.attempts)
    autoretry_for=(DatabaseError, RedisError),
    retry_backoff=2,
    retry_backoff_max=60,
)
def message_deliver(self, message_id: int) -> None:
    """Send one queued Twilio message; again later when a limit makes it wait or a retry
    is due (a countdown: no worker waits)."""
    from messaging.outbound import message_deliver as deliver

    again_in = deliver(message_id=message_id)
    if again_in is not None:
        raise self.retry(countdown=again_in)


# --- bulk sends (messaging/bulk.py) ----------------------------------------------------


@shared_task(
    name="messaging.bulk_send_run",
    bind=True,
    acks_late=True,  # harmless twice: each step locks the job, and items carry their keys
    ignore_result=True,
    max_retries=None,
    autoretry_for=(DatabaseError, RedisError),
    retry_backoff=2,
    retry_backoff_max=60,
)
def bulk_send_run(self, job_id: int) -> None:
    """One step of a bulk send; the next as a countdown (no worker waits)."""
    from messaging.bulk import bulk_send_step

    again_in = bulk_send_step(job_id=job_id)
    if again_in is not None:
        raise self.retry(countdown=again_in)


# --- the messages sweep (messaging/sweeps.py) ------------------------------------------


@shared_task(name="messaging.messages_sweep", ignore_result=True)
def messages_sweep_task() -> dict:
    """Run by beat every MESSAGES_SWEEP_SECONDS, in the public schema: in every tenant
    schema, hands again the messages whose hand-off was lost."""
    from messaging.sweeps import messages_sweep

    result = messages_sweep()
    return {"outbound": result.outbound, "inbound": result.inbound}
