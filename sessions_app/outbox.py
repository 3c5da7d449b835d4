"""Sends for live sessions (neonize, sandbox), executed by the runner that owns them.

Each session has a Redis stream, `outbox:session:<id>`, read through one consumer group
by whichever runner holds the session's lease. An entry stays pending until the send is
done, so a runner that dies mid-send leaves it for the runner that takes the session
over, which claims it. Two guards make that exactly once:

- a done marker per idempotency key, written after a successful send and checked before
  every send (a runner that died after sending but before acknowledging);
- the provider turns the idempotency key into a stable message id, so a resend after a
  crash between the send and the marker is recognised as the same message.

A send that may be retried goes to a delayed set and back into the stream when due. The
same delayed set holds sends that wait without it counting as an attempt (`outbox_defer`):
a rate limit, or the next step of a humanised send ("typing…" now, the send itself in a
few seconds), so nothing waits by sleeping in the runner.

Before each send, the runner asks the product (the `send_checking` signal) whether and
when to send: the answer is a `SendCheck`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import time
import uuid

from django.conf import settings

from config.redis_client import redis_client
from sessions_app.providers.base import (
    ContactCard,
    Location,
    MessageKind,
    OutboundMessage,
    Reaction,
)

logger = logging.getLogger(__name__)

GROUP = "runners"
DONE_TTL_SECONDS = 7 * 24 * 3600
RETRY_DELAYS = (5, 10, 20, 40, 80)  # seconds; after the last, the send has failed


def retry_delays() -> tuple[float, ...]:
    """settings.OUTBOUND_RETRY_DELAYS (the same delays Twilio sends use), else the default."""
    return tuple(getattr(settings, "OUTBOUND_RETRY_DELAYS", None) or RETRY_DELAYS)


def stream_key(session_id: int) -> str:
    return f"outbox:session:{session_id}"


def delayed_key(session_id: int) -> str:
    return f"outbox:delayed:{session_id}"


def done_key(session_id: int, idempotency_key: str) -> str:
    return f"outbox:done:{session_id}:{idempotency_key}"


# --- (de)serialising an OutboundMessage -----------------------------------------------


def outbound_to_dict(message: OutboundMessage) -> dict:
    data = dataclasses.asdict(message)
    data["kind"] = str(message.kind)
    if message.media_bytes is not None:
        data["media_bytes"] = base64.b64encode(message.media_bytes).decode()
    return data


def outbound_from_dict(data: dict) -> OutboundMessage:
    data = dict(data)
    data["kind"] = MessageKind(data.get("kind", MessageKind.TEXT))
    if data.get("media_bytes"):
        data["media_bytes"] = base64.b64decode(data["media_bytes"])
    for name, cls in (("location", Location), ("contact", ContactCard), ("reaction", Reaction)):
        if data.get(name):
            data[name] = cls(**data[name])
    return OutboundMessage(**data)


@dataclasses.dataclass(frozen=True)
class SendCheck:
    """The product's answer before a send (a `send_checking` receiver returns one)."""

    wait_seconds: float = 0.0  # limited: ask again after this long (not an attempt)
    skip: bool = False  # not to be sent at all (suppressed, or no longer queued)
    # Humanisation: (seconds after now, action) pairs -- "read", "typing", "paused" --
    # ending with (seconds, "send"). Empty: send at once.
    steps: tuple[tuple[float, str], ...] = ()
    read_ids: tuple[str, ...] = ()  # the chat's messages the "read" step marks read


@dataclasses.dataclass(frozen=True)
class OutboxEntry:
    entry_id: str
    session_id: int
    message: OutboundMessage
    ref: dict
    attempts: int
    # A humanised send in progress: {"started": epoch seconds, "steps": [[at, action]...],
    # "read_ids": [...]}; None before the send was checked.
    plan: dict | None = None

    @property
    def idempotency_key(self) -> str:
        return self.message.idempotency_key


# --- producer -------------------------------------------------------------------------


def outbox_enqueue(*, session_id: int, message: OutboundMessage, ref: dict | None = None) -> str:
    """Queue a send for the session's runner. Call it after commit (transaction.on_commit).

    Returns the idempotency key (the message's own, or a new one).
    """
    if not message.idempotency_key:
        message = dataclasses.replace(message, idempotency_key=uuid.uuid4().hex)
    _add(session_id, outbound_to_dict(message), ref or {}, attempts=0)
    return message.idempotency_key


def _add(session_id: int, message: dict, ref: dict, *, attempts: int) -> None:
    fields = {"message": json.dumps(message), "ref": json.dumps(ref), "attempts": attempts}
    redis_client().xadd(stream_key(session_id), fields)


def _plan(fields: dict) -> dict | None:
    raw = fields.get("plan") or ""
    plan = json.loads(raw) if raw else None
    return plan if isinstance(plan, dict) else None


def _entry(session_id: int, entry_id: str, fields: dict) -> OutboxEntry | None:
    try:
        return OutboxEntry(
            entry_id=entry_id,
            session_id=session_id,
            message=outbound_from_dict(json.loads(fields["message"])),
            ref=json.loads(fields.get("ref") or "{}"),
            attempts=int(fields.get("attempts", 0)),
            plan=_plan(fields),
        )
    except (KeyError, TypeError, ValueError):
        # Not something outbox_enqueue wrote: drop it rather than block the stream.
        logger.error("session %s: unreadable outbox entry %s dropped", session_id, entry_id)
        client = redis_client()
        client.xack(stream_key(session_id), GROUP, entry_id)
        client.xdel(stream_key(session_id), entry_id)
        return None


def _entries(session_id: int, items) -> list[OutboxEntry]:
    entries = (_entry(session_id, entry_id, fields) for entry_id, fields in items if fields)
    return [entry for entry in entries if entry is not None]


# --- consumer (the runner) ------------------------------------------------------------


def _ensure_group(session_id: int) -> None:
    try:
        redis_client().xgroup_create(stream_key(session_id), GROUP, id="0", mkstream=True)
    except Exception as error:  # BUSYGROUP: it exists already
        if "BUSYGROUP" not in str(error):
            raise


def outbox_claim_pending(session_id: int, runner: str) -> list[OutboxEntry]:
    """Take over what a previous owner read but never finished (call after acquiring)."""
    _ensure_group(session_id)
    claimed: list[OutboxEntry] = []
    start = "0-0"
    while True:
        next_start, entries, *_ = redis_client().xautoclaim(
            stream_key(session_id), GROUP, runner, min_idle_time=0, start_id=start, count=100
        )
        claimed += _entries(session_id, entries)
        if next_start in ("0-0", b"0-0"):
            return claimed
        start = next_start


def outbox_read(session_ids: list[int], runner: str, *, block_ms: int = 500) -> list[OutboxEntry]:
    """New entries for these sessions (blocks up to block_ms when there are none)."""
    if not session_ids:
        time.sleep(block_ms / 1000)
        return []
    for session_id in session_ids:
        _ensure_group(session_id)
    streams = {stream_key(sid): ">" for sid in session_ids}
    response = redis_client().xreadgroup(GROUP, runner, streams, count=50, block=block_ms)
    entries = []
    for key, items in response or []:
        session_id = int(key.rsplit(":", 1)[1])
        entries += _entries(session_id, items)
    return entries


def outbox_already_sent(entry: OutboxEntry) -> str | None:
    """The provider message id if this idempotency key was sent before."""
    return redis_client().get(done_key(entry.session_id, entry.idempotency_key))


def outbox_mark_sent(entry: OutboxEntry, provider_message_id: str) -> None:
    """Remember that this idempotency key went out. The entry stays pending in the stream
    until the send is recorded (`outbox_finish`): a runner killed in between leaves it for
    the next owner, which finds this marker, records the send and does not send again."""
    redis_client().set(
        done_key(entry.session_id, entry.idempotency_key), provider_message_id, ex=DONE_TTL_SECONDS
    )


def outbox_finish(entry: OutboxEntry) -> None:
    """Drop an entry that is recorded as sent, or will not be sent (failed for good)."""
    pipe = redis_client().pipeline()
    pipe.xack(stream_key(entry.session_id), GROUP, entry.entry_id)
    pipe.xdel(stream_key(entry.session_id), entry.entry_id)
    pipe.execute()


def outbox_retry_later(entry: OutboxEntry, *, delay: float | None = None) -> bool:
    """Schedule another attempt; False when the attempts are used up."""
    delays = retry_delays()
    if entry.attempts >= len(delays):
        return False
    delay = delays[entry.attempts] if delay is None else delay
    _delay(entry, delay=delay, attempts=entry.attempts + 1, plan=None)
    return True


def outbox_defer(entry: OutboxEntry, *, delay: float, plan: dict | None = None) -> None:
    """Put the entry back for `delay` seconds without counting an attempt (a rate limit,
    the next step of a humanised send), with `plan` as its humanisation in progress."""
    _delay(entry, delay=max(0.0, delay), attempts=entry.attempts, plan=plan)


def _delay(entry: OutboxEntry, *, delay: float, attempts: int, plan: dict | None) -> None:
    item = {"message": outbound_to_dict(entry.message), "ref": entry.ref, "attempts": attempts}
    if plan is not None:
        item["plan"] = json.dumps(plan)  # a string: Lua's cjson keeps it byte for byte
    # Atomic (MULTI): the entry is in the stream or in the delayed set, never neither.
    pipe = redis_client().pipeline()
    pipe.zadd(delayed_key(entry.session_id), {json.dumps(item): time.time() + delay})
    pipe.xack(stream_key(entry.session_id), GROUP, entry.entry_id)
    pipe.xdel(stream_key(entry.session_id), entry.entry_id)
    pipe.execute()


_MOVE_DUE = """
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  local item = cjson.decode(member)
  local plan = item['plan']
  if type(plan) ~= 'string' then plan = '' end
  redis.call('xadd', KEYS[2], '*', 'message', cjson.encode(item['message']),
             'ref', cjson.encode(item['ref']), 'attempts', item['attempts'], 'plan', plan)
  redis.call('zrem', KEYS[1], member)
end
return #due
"""


def outbox_move_due(session_id: int) -> int:
    """Put retries that are due back into the stream (atomically)."""
    script = redis_client().register_script(_MOVE_DUE)
    return script(keys=[delayed_key(session_id), stream_key(session_id)], args=[time.time()])
