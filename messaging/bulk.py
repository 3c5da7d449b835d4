"""Bulk sends: one job, many messages (an owner's broadcast, an API batch).

`bulk_send_create(...)` stores the job (a BulkSend row holding its items) and, after
commit, hands it to Celery (`messaging.bulk_send_run`). The task works in steps
(`bulk_send_step`): each step locks the job's row, sends up to CHUNK items that are due
through `message_send` -- with the idempotency key `bulk-<job>-<index>`, inside the same
transaction as the job's progress -- and commits. A step that dies rolls back its
messages and its progress together, and a step (or a whole job) run again finds the
messages of its keys already there: nothing is ever sent twice.

Once every item is handed out, the job keeps looking (every SETTLE_POLL_SECONDS) until
none of its messages is still queued -- limits may hold them for minutes --, then it is
`done`. Counters: `queued` (waiting to go), `sent` (sent, delivered or read),
`suppressed` (opted out, duplicate), `failed` (refused items + messages that failed).

After each step's commit the signal `bulk_send_progressed` is sent (sender=BulkSend,
job=the job, final=False), and once more with final=True when the job ends (done or
failed). Receivers run in the Celery worker; `job.notify` says whom to tell.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count
from django.dispatch import Signal
from django.utils import timezone

from messaging.models import BulkSend, Message
from sessions_app.models import WhatsAppSession

logger = logging.getLogger(__name__)

bulk_send_progressed = Signal()  # sender=BulkSend, job=BulkSend, final=bool

CHUNK = 50
MAX_ITEMS = 10_000
MAX_DELAY_SECONDS = 7 * 24 * 3600
SETTLE_POLL_SECONDS = 2.0
# A job whose messages are still queued this long after its last hand-out ends anyway
# (they still go out; the job stops watching them).
SETTLE_MAX = timedelta(days=2)
ITEM_FIELDS = frozenset(
    {
        "to",
        "kind",
        "text",
        "media_url",
        "location",
        "contact",
        "reaction",
        "template_sid",
        "template_variables",
        "delay_seconds",
    }
)
_State = BulkSend.State
_Status = Message.Status


def bulk_item_key(job: BulkSend, index: int) -> str:
    return f"bulk-{job.public_id.hex}-{index}"


# --- creating -------------------------------------------------------------------------


def _items_clean(items) -> list[dict]:
    if not isinstance(items, list | tuple) or not items:
        raise ValidationError({"items": ["Give at least one message to send."]})
    if len(items) > MAX_ITEMS:
        raise ValidationError({"items": [f"At most {MAX_ITEMS} messages in one job."]})
    errors: list[str] = []
    cleaned: list[dict] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("to"):
            errors.append(f"Item {index}: a mapping with at least a 'to' number.")
            continue
        unknown = sorted(set(item) - ITEM_FIELDS)
        if unknown:
            errors.append(f"Item {index}: unknown fields {', '.join(map(str, unknown))}.")
            continue
        delay = item.get("delay_seconds", 0) or 0
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not 0 <= delay <= MAX_DELAY_SECONDS
        ):
            errors.append(f"Item {index}: delay_seconds is 0 to {MAX_DELAY_SECONDS} seconds.")
            continue
        cleaned.append({**item, "delay_seconds": float(delay)})
        if len(errors) >= 20:
            break
    if errors:
        raise ValidationError({"items": errors})
    try:
        json.dumps(cleaned)
    except (TypeError, ValueError):
        raise ValidationError({"items": ["Items hold only JSON values."]}) from None
    return cleaned


def bulk_send_create(
    *,
    session: WhatsAppSession,
    items: list[dict],
    origin: str,
    notify: dict | None = None,
) -> BulkSend:
    """Store a job sending `items` from `session` (current tenant schema) and start it
    after commit. An item is `{"to": ..., "text": ... (or any message_send field),
    "delay_seconds": 0}`: `delay_seconds` after the job starts it is sent (items go in
    order). Each item is validated fully when it is sent (a refused one counts as
    failed, with its errors in `job.errors`); here, only its shape."""
    schema = connection.schema_name
    errors: dict[str, list[str]] = {}
    if not isinstance(session, WhatsAppSession) or session.pk is None:
        errors["session"] = ["A saved WhatsApp session is required."]
    elif session.tenant.schema_name != schema:
        errors["session"] = ["This session belongs to another tenant."]
    if not isinstance(origin, str) or not 0 < len(origin.strip()) <= 40:
        errors["origin"] = ["Say where the job comes from (1 to 40 characters)."]
    if notify is not None:
        try:
            if not isinstance(notify, dict):
                raise TypeError
            json.dumps(notify)
        except (TypeError, ValueError):
            errors["notify"] = ["notify is a JSON object."]
    try:
        cleaned = _items_clean(items)
    except ValidationError as error:
        errors.update(error.message_dict)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        job = BulkSend.objects.create(
            session_id=session.pk,
            origin=origin.strip(),
            notify=notify or {},
            items=cleaned,
            total=len(cleaned),
        )
        job_id = job.pk

        def start() -> None:
            from messaging.tasks import bulk_send_run

            bulk_send_run.apply_async(args=[job_id], headers={"_schema_name": schema})

        transaction.on_commit(start)
    logger.info("bulk send %s: %d messages (%s)", job.public_id, job.total, job.origin)
    return job


# --- running --------------------------------------------------------------------------


def _counts(job: BulkSend) -> dict[str, int]:
    by_status = dict(
        Message.objects.filter(bulk_send=job)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {
        "queued": by_status.get(_Status.QUEUED, 0),
        "sent": sum(by_status.get(s, 0) for s in (_Status.SENT, _Status.DELIVERED, _Status.READ)),
        "suppressed": by_status.get(_Status.SUPPRESSED, 0),
        "failed": by_status.get(_Status.FAILED, 0) + len(job.errors),
    }


def _after_commit_signal(job: BulkSend, *, final: bool) -> None:
    def send() -> None:
        try:
            bulk_send_progressed.send(sender=BulkSend, job=job, final=final)
        except Exception:  # a receiver's problem never stops the job
            logger.exception("bulk send %s: a progress receiver failed", job.public_id)

    transaction.on_commit(send)


def _finish(job: BulkSend, *, state: str, error: str = "") -> None:
    job.state = state
    job.finished_at = timezone.now()
    job.last_error = error[:500]
    logger.info("bulk send %s %s: %s", job.public_id, state, bulk_send_progress(job))


def bulk_send_step(*, job_id: int) -> float | None:
    """One step of a job (current tenant schema): hand out the items that are due, up to
    CHUNK, and refresh its counters. Returns the seconds until the next step, or None
    when the job has ended (or another worker is running it right now)."""
    from messaging.outbound import message_send

    with transaction.atomic():
        job = BulkSend.objects.select_for_update(skip_locked=True).filter(pk=job_id).first()
        if job is None or job.state in (_State.DONE, _State.FAILED):
            return None
        now = timezone.now()
        if job.state == _State.PENDING:
            job.state = _State.RUNNING
            job.started_at = now
        session = WhatsAppSession.objects.select_related("tenant").filter(pk=job.session_id).first()
        wait: float | None = None
        if session is None:
            _finish(job, state=_State.FAILED, error="Its session no longer exists.")
        else:
            handed = 0
            while job.next_index < job.total and handed < CHUNK:
                index = job.next_index
                item = dict(job.items[index])
                due = job.started_at + timedelta(seconds=item.pop("delay_seconds", 0) or 0)
                if due > now:
                    wait = (due - now).total_seconds()
                    break
                try:
                    with transaction.atomic():
                        message_send(
                            session=session,
                            idempotency_key=bulk_item_key(job, index),
                            bulk_send=job,
                            **item,
                        )
                except ValidationError as error:
                    detail = error.message_dict if hasattr(error, "error_dict") else error.messages
                    job.errors = [*job.errors, {"index": index, "errors": detail}]
                job.next_index = index + 1
                handed += 1
        if job.state == _State.RUNNING:
            counts = _counts(job)
            for name, value in counts.items():
                setattr(job, name, value)
            if job.next_index >= job.total:
                settled = counts["queued"] == 0
                if settled or now - job.started_at > SETTLE_MAX:
                    _finish(job, state=_State.DONE)
                else:
                    wait = SETTLE_POLL_SECONDS
            elif wait is None:
                wait = 0.0  # more items are due now: the next chunk, in a new step
        job.save()
        _after_commit_signal(job, final=job.state in (_State.DONE, _State.FAILED))
    if job.state in (_State.DONE, _State.FAILED):
        return None
    return wait


def bulk_send_progress(job: BulkSend) -> dict:
    """Where a job is, as JSON: state, total, handed_out, queued, sent, suppressed,
    failed and the first refused items."""
    return {
        "id": str(job.public_id),
        "session_id": job.session_id,
        "origin": job.origin,
        "state": job.state,
        "total": job.total,
        "handed_out": job.next_index,
        "queued": job.queued,
        "sent": job.sent,
        "suppressed": job.suppressed,
        "failed": job.failed,
        "errors": job.errors[:20],
        "error": job.last_error,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
