"""The session runner (`python manage.py run_sessions`): holds the live connections.

Several runners share the sessions. Each session whose desired state is "running" is
owned by exactly one runner through a lease in Redis (sessions_app.leases), renewed on
every tick; when a runner dies its leases expire and the others take its sessions over.

Threads:
- the main thread runs the control loop: heartbeat, leases, starting and stopping
  sessions, commands from the web, reconnect timers, and the events the connections
  reported (every database write happens here, in order);
- the sender thread executes queued sends (sessions_app.outbox) for owned sessions. It
  never sleeps on a send: a rate-limited send, and each step of a humanised one (read
  receipt, "typing…", pause), goes back to the outbox's delayed set until it is due, so
  many sessions can be "typing" at once; sends to one chat leave in the order queued;
- each connection has whatever threads its provider needs; they only put events on the
  runner's queue, so a slow database never stalls a WhatsApp connection.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from config.heartbeats import (
    RUNNERS,
    heartbeat_record,
    heartbeat_remove,
    heartbeats_read,
    process_name,
)
from config.metrics import RECONNECT_ATTEMPTS
from sessions_app import leases, outbox
from sessions_app.models import (
    LIVE_PROVIDERS,
    DesiredState,
    Provider,
    SessionCommand,
    Status,
    WhatsAppSession,
)
from sessions_app.providers.base import (
    DisconnectKind,
    InboundMessage,
    LiveConnection,
    NeverRetry,
    Presence,
    ProviderError,
    Receipt,
    RetryLater,
    SessionConfig,
)
from sessions_app.services import (
    session_connected,
    session_qr_set,
    session_status_set,
)
from sessions_app.signals import inbound_received, receipt_received, send_checking, send_finished

logger = logging.getLogger(__name__)

MAX_RECONNECT_ATTEMPTS = 10
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
COMMAND_RETRY_WINDOW = timedelta(minutes=1)
STARTS_PER_TICK = 5  # start sessions a few at a time (neonize: one at a time is safest)
CHECK_RETRY_SECONDS = 5.0  # a send whose pre-send check crashed (database down...) waits


# Disconnect reasons are free text from the provider; metrics get one of a few labels.
_REASON_LABELS = (
    ("timeout", ("timeout", "timed out", "keep-alive", "keepalive")),
    ("network", ("network", "connection", "dns", "refused", "reset", "unreachable", "eof")),
    ("server", ("server", "stream", "5xx", "restart")),
)


def reconnect_reason_label(reason: str) -> str:
    text = reason.lower()
    for label, words in _REASON_LABELS:
        if any(word in text for word in words):
            return label
    return "other"


def reconnect_delay(attempt: int) -> float:
    """1 s, 2 s, 4 s ... capped at 60 s, each with ±20% jitter."""
    base = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, attempt - 1))
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security


def runner_beat_seconds() -> float:
    # Often enough that a dead runner stops counting well within one lease.
    return min(settings.HEARTBEAT_INTERVAL_SECONDS, settings.SESSION_LEASE_TTL_SECONDS / 3)


def live_runner_count() -> int:
    """Runners that beat within one lease period (a dead one stops counting by then)."""
    return sum(
        1
        for beat in heartbeats_read(RUNNERS)
        if beat.age_seconds <= settings.SESSION_LEASE_TTL_SECONDS
    )


def connection_class(provider: str) -> type[LiveConnection]:
    if provider == Provider.SANDBOX:
        from sessions_app.providers.sandbox import SandboxConnection

        return SandboxConnection
    if provider == Provider.NEONIZE:
        # Imported here only: neonize must never load in web or Celery processes.
        from sessions_app.providers.neonize_provider import NeonizeConnection

        return NeonizeConnection
    raise ValueError(f"{provider} sessions are not held by a runner")


class _SessionEvents:
    """A connection's ConnectionEvents: queue everything for the runner's main thread."""

    def __init__(self, runner: SessionRunner, session_id: int):
        self.runner, self.session_id = runner, session_id

    def _put(self, name: str, **kwargs) -> None:
        self.runner.events.put((self.session_id, name, kwargs))

    def qr(self, payload: str, expires_at: datetime) -> None:
        self._put("qr", payload=payload, expires_at=expires_at)

    def paired(self, *, phone_number: str, device_jid: str) -> None:
        self._put("paired", phone_number=phone_number, device_jid=device_jid)

    def connected(self, *, phone_number: str) -> None:
        self._put("connected", phone_number=phone_number)

    def disconnected(self, *, kind, reason: str, banned_until=None) -> None:
        self._put(
            "disconnected", kind=DisconnectKind(kind), reason=reason, banned_until=banned_until
        )

    def message(self, message: InboundMessage) -> None:
        self._put("message", message=message)

    def receipt(self, receipt: Receipt) -> None:
        self._put("receipt", receipt=receipt)

    def presence(self, presence: Presence) -> None:
        self._put("presence", presence=presence)


@dataclass
class Held:
    """A session this runner owns."""

    session_id: int
    provider: str
    connection: LiveConnection
    attempts: int = 0
    reconnect_at: float | None = None
    sends_claimed: list = field(default_factory=list)


class SessionRunner:
    def __init__(self, *, name: str | None = None, tick_seconds: float = 0.5):
        self.name = name or process_name("runner")
        self.tick_seconds = tick_seconds
        self.stopping = threading.Event()
        self.events: queue.Queue = queue.Queue()
        self.held: dict[int, Held] = {}
        self.held_lock = threading.Lock()
        self._last_beat = 0.0
        self._last_scan = 0.0
        self._sender = threading.Thread(target=self._send_loop, name="sender", daemon=True)
        # Sender thread only. A chat with a humanised send in progress belongs to it (by
        # idempotency key); later sends to that chat wait in memory -- still pending in
        # the stream, so a takeover finds them -- and are ready again when it is done.
        self._chat_owner: dict[tuple[int, str], str] = {}
        self._parked: dict[tuple[int, str], list[outbox.OutboxEntry]] = {}
        self._ready: list[outbox.OutboxEntry] = []

    # --- process ------------------------------------------------------------------------

    def request_stop(self, *_args) -> None:
        self.stopping.set()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        logger.info("session runner %s started", self.name)
        self._sender.start()
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    self.tick()
                except Exception:
                    logger.exception("runner %s: tick failed; carrying on", self.name)
                    close_old_connections()
                self.stopping.wait(max(0.0, self.tick_seconds - (time.monotonic() - started)))
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Disconnect every session gracefully (keeping devices) and release the leases at
        once, so another runner takes them without waiting for them to expire."""
        self.stopping.set()
        self._sender.join(timeout=5)
        for held in list(self.held.values()):
            self._let_go(
                held, status=Status.DISCONNECTED, reason="Runner stopped; another runner takes over"
            )
        self._drain_events()
        try:
            heartbeat_remove(RUNNERS, self.name)
        except Exception:
            logger.warning("runner %s could not remove its heartbeat", self.name, exc_info=True)
        logger.info("session runner %s stopped", self.name)

    # --- the control loop ---------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        self._renew_leases()
        if now - self._last_beat >= runner_beat_seconds():
            self._heartbeat()
            self._last_beat = now
        if now - self._last_scan >= settings.SESSION_SCAN_SECONDS:
            more_to_start = self._reconcile()
            # Sessions left waiting (a few start per tick): look again on the next tick.
            self._last_scan = 0.0 if more_to_start else now
        self._run_commands()
        self._reconnect_due()
        self._poll_connections()
        self._move_due_retries()
        self._drain_events()

    def _heartbeat(self) -> None:
        heartbeat_record(RUNNERS, self.name, sessions=len(self.held))
        if self.held:
            WhatsAppSession.objects.filter(pk__in=list(self.held)).update(
                last_heartbeat_at=timezone.now()
            )

    def _renew_leases(self) -> None:
        still_mine = leases.lease_renew(list(self.held), self.name)
        for session_id in set(self.held) - still_mine:
            # Another runner has it now (we were too slow to renew): stop touching it.
            logger.warning("runner %s lost the lease of session %s", self.name, session_id)
            held = self.held.pop(session_id)
            self._disconnect_quietly(held)

    def _reconcile(self) -> bool:
        """Start free sessions that should run; stop owned ones that should not.

        Returns True when free sessions were left for the next tick."""
        wanted = (
            WhatsAppSession.objects.filter(
                desired_state=DesiredState.RUNNING, provider__in=LIVE_PROVIDERS
            )
            .exclude(status__in=[Status.LOGGED_OUT, Status.FAILED])
            .exclude(status=Status.BANNED, banned_until__gt=timezone.now())
            .values_list("pk", flat=True)
        )
        wanted = set(wanted)
        for session_id in list(self.held):
            if session_id not in wanted:
                try:
                    self._stop_wanted(session_id)
                except Exception:  # one session's trouble must not stop the others
                    logger.exception("session %s: stopping failed", session_id)
        candidates = [sid for sid in wanted if sid not in self.held]
        random.shuffle(candidates)
        owners = leases.lease_owners(candidates)
        # Take no more than a fair share while other runners are alive, so that runners
        # started together split the sessions; alone, a runner takes everything.
        fair_share = math.ceil(len(wanted) / max(1, live_runner_count()))
        started = 0
        for session_id in candidates:
            if len(self.held) >= fair_share or self.stopping.is_set():
                break
            if started >= STARTS_PER_TICK:
                return True
            if owners.get(session_id) is None and leases.lease_acquire(session_id, self.name):
                self._start(session_id)
                started += 1
        self._settle_orphans()
        return False

    def _settle_orphans(self) -> None:
        """Sessions asked to stop that no runner holds: say so instead of a stale status."""
        stale = WhatsAppSession.objects.filter(
            desired_state=DesiredState.STOPPED, provider__in=LIVE_PROVIDERS
        ).exclude(status__in=[Status.STOPPED, Status.LOGGED_OUT, Status.FAILED, Status.BANNED])
        ids = list(stale.values_list("pk", flat=True)[:50])
        for session_id, owner in leases.lease_owners(ids).items():
            if owner is None:
                session_status_set(session_id=session_id, status=Status.STOPPED, reason="Stopped")

    def _start(self, session_id: int) -> None:
        session = WhatsAppSession.objects.select_related("tenant").get(pk=session_id)
        config = SessionConfig(
            session_id=session.pk,
            public_id=str(session.public_id),
            schema_name=session.tenant.schema_name,
            device_jid=session.device_jid,
            proxy_url=session.proxy_url,
        )
        connection_ = connection_class(session.provider)(config, _SessionEvents(self, session.pk))
        held = Held(
            session_id=session.pk,
            provider=session.provider,
            connection=connection_,
            attempts=session.reconnect_attempts,
        )
        held.sends_claimed = outbox.outbox_claim_pending(session.pk, self.name)
        with self.held_lock:
            self.held[session.pk] = held
        session_status_set(
            session_id=session.pk, status=Status.STARTING, reason=f"Started by {self.name}"
        )
        logger.info("runner %s starting session %s", self.name, session.pk)
        self._connect(held)

    def _connect(self, held: Held) -> None:
        try:
            held.connection.connect()
        except Exception as error:  # a provider that fails synchronously: treat as transient
            logger.warning("session %s: connect failed: %s", held.session_id, error)
            self._on_disconnected(held, kind=DisconnectKind.TRANSIENT, reason=str(error)[:200])

    def _stop_wanted(self, session_id: int) -> None:
        held = self.held.get(session_id)
        if held is None:
            return
        session = WhatsAppSession.objects.filter(pk=session_id).first()
        if session is None:  # deleted (with its tenant, say): nothing left to record
            logger.info("session %s was deleted; letting it go", session_id)
            self._let_go(held, status=None, reason="")
        elif session.desired_state == DesiredState.STOPPED:
            self._let_go(held, status=Status.STOPPED, reason="Stopped")
        else:  # logged out, failed or banned meanwhile: already said so
            self._let_go(held, status=None, reason="")

    def _let_go(
        self, held: Held, *, status: str | None, reason: str, logout: bool = False, **fields
    ) -> None:
        """Disconnect, record the status, release the lease: the session is no longer ours."""
        with self.held_lock:
            self.held.pop(held.session_id, None)
        if logout:
            try:
                held.connection.logout()
            except Exception:
                logger.warning("session %s: logout failed", held.session_id, exc_info=True)
        self._disconnect_quietly(held)
        if status is not None:
            session_status_set(session_id=held.session_id, status=status, reason=reason, **fields)
        leases.lease_release(held.session_id, self.name)

    def _disconnect_quietly(self, held: Held) -> None:
        try:
            held.connection.disconnect()
        except Exception:
            logger.warning("session %s: disconnect failed", held.session_id, exc_info=True)

    def _reconnect_due(self) -> None:
        now = time.monotonic()
        for held in list(self.held.values()):
            if held.reconnect_at is not None and now >= held.reconnect_at:
                held.reconnect_at = None
                session_status_set(
                    session_id=held.session_id,
                    status=Status.STARTING,
                    reason=f"Reconnecting (attempt {held.attempts} of {MAX_RECONNECT_ATTEMPTS})",
                )
                self._connect(held)

    def _poll_connections(self) -> None:
        for held in list(self.held.values()):
            poll = getattr(held.connection, "poll", None)
            if poll is not None:
                try:
                    poll()
                except Exception:
                    logger.exception("session %s: poll failed", held.session_id)

    def _move_due_retries(self) -> None:
        for session_id in list(self.held):
            outbox.outbox_move_due(session_id)

    # --- commands from the web ----------------------------------------------------------

    def _run_commands(self) -> None:
        if not self.held:
            return
        pending = SessionCommand.objects.filter(
            session_id__in=list(self.held), state=SessionCommand.State.PENDING
        )
        for command in pending[:20]:
            held = self.held.get(command.session_id)
            if held is None:
                continue
            try:
                result = self._run_command(held, command)
            except RetryLater as error:
                # Not possible yet (e.g. a pairing code before the first QR): try again on
                # the next tick, for a minute, then say why it failed.
                if timezone.now() - command.created_at < COMMAND_RETRY_WINDOW:
                    continue
                command.state, command.result = SessionCommand.State.FAILED, {"error": str(error)}
            except (ProviderError, ValueError) as error:
                command.state, command.result = SessionCommand.State.FAILED, {"error": str(error)}
            else:
                command.state, command.result = SessionCommand.State.DONE, result or {}
            command.done_at = timezone.now()
            command.save(update_fields=["state", "result", "done_at"])

    def _run_command(self, held: Held, command: SessionCommand) -> dict | None:
        kind = command.kind
        if kind == SessionCommand.Kind.RESTART:
            self._disconnect_quietly(held)
            held.attempts, held.reconnect_at = 0, None
            session_status_set(
                session_id=held.session_id,
                status=Status.STARTING,
                reason="Restart requested",
                reconnect_attempts=0,
            )
            self._connect(held)
        elif kind == SessionCommand.Kind.LOGOUT:
            WhatsAppSession.objects.filter(pk=held.session_id).update(
                desired_state=DesiredState.STOPPED
            )
            self._let_go(held, status=None, reason="", logout=True)
            session_status_set(
                session_id=held.session_id,
                status=Status.LOGGED_OUT,
                reason="Logged out from the dashboard",
                device_jid="",
                phone_number="",
                qr_payload="",
                qr_expires_at=None,
            )
        elif kind == SessionCommand.Kind.PAIR_PHONE:
            code = held.connection.pair_phone(command.payload["phone_number"])
            session_status_set(
                session_id=held.session_id,
                status=Status.WAIT_QR,
                reason="Waiting for the pairing code",
                pairing_code=code,
            )
            return {"code": code}
        elif kind == SessionCommand.Kind.SANDBOX_SCAN:
            scan = getattr(held.connection, "scan", None)
            if scan is None:
                raise ValueError("Only sandbox sessions can be scanned from the simulator.")
            scan(code=command.payload.get("code", ""), phone_number=command.payload["phone_number"])
        return None

    # --- events reported by the connections ---------------------------------------------

    def _drain_events(self) -> None:
        while True:
            try:
                session_id, name, kwargs = self.events.get_nowait()
            except queue.Empty:
                return
            held = self.held.get(session_id)
            try:
                if name == "message":
                    self._on_message(session_id, kwargs["message"])
                elif name == "receipt":
                    session = WhatsAppSession.objects.select_related("tenant").get(pk=session_id)
                    receipt_received.send(sender=SessionRunner, session=session, **kwargs)
                elif name == "presence":
                    pass  # shown live by a later feature; nothing to store
                elif held is None:
                    logger.info("session %s: %s after it was let go; ignored", session_id, name)
                elif name == "qr":
                    session_qr_set(session_id=session_id, **kwargs)
                elif name == "paired":
                    WhatsAppSession.objects.filter(pk=session_id).update(**kwargs)
                elif name == "connected":
                    held.attempts, held.reconnect_at = 0, None
                    session_connected(session_id=session_id, phone_number=kwargs["phone_number"])
                elif name == "disconnected":
                    self._on_disconnected(held, **kwargs)
            except Exception:
                logger.exception("session %s: handling %s failed", session_id, name)

    def _on_message(self, session_id: int, message: InboundMessage) -> None:
        session = WhatsAppSession.objects.select_related("tenant").get(pk=session_id)
        if not inbound_received.receivers:
            logger.warning("session %s: inbound message with no pipeline connected", session_id)
        inbound_received.send(sender=SessionRunner, session=session, message=message)

    def _on_disconnected(
        self, held: Held, *, kind: DisconnectKind, reason: str, banned_until=None
    ) -> None:
        session_id = held.session_id
        if kind == DisconnectKind.TRANSIENT:
            held.attempts += 1
            if held.attempts > MAX_RECONNECT_ATTEMPTS:
                self._let_go(
                    held,
                    status=Status.FAILED,
                    reason=f"Gave up after {MAX_RECONNECT_ATTEMPTS} reconnects: {reason}",
                )
                logger.error(
                    "session %s failed after %s reconnects", session_id, MAX_RECONNECT_ATTEMPTS
                )
                return
            delay = reconnect_delay(held.attempts)
            held.reconnect_at = time.monotonic() + delay
            RECONNECT_ATTEMPTS.labels(reason=reconnect_reason_label(reason)).inc()
            session_status_set(
                session_id=session_id,
                status=Status.DISCONNECTED,
                reason=f"{reason} (retrying in {delay:.0f} s)",
                reconnect_attempts=held.attempts,
            )
        elif kind == DisconnectKind.LOGGED_OUT:
            self._let_go(held, status=None, reason="")
            session_status_set(
                session_id=session_id,
                status=Status.LOGGED_OUT,
                reason=reason,
                device_jid="",
                qr_payload="",
                qr_expires_at=None,
            )
            logger.warning("session %s logged out: %s", session_id, reason)
        elif kind == DisconnectKind.BANNED:
            self._let_go(held, status=None, reason="")
            session_status_set(
                session_id=session_id,
                status=Status.BANNED,
                reason=reason,
                banned_until=banned_until,
            )
            logger.warning("session %s banned until %s", session_id, banned_until)
        elif kind == DisconnectKind.REPLACED:
            WhatsAppSession.objects.filter(pk=session_id).update(desired_state=DesiredState.STOPPED)
            self._let_go(held, status=Status.STOPPED, reason=reason or "Opened on another device")
        else:  # QR_EXPIRED, FATAL: a person has to start it again
            self._let_go(
                held, status=Status.FAILED, reason=reason, qr_payload="", qr_expires_at=None
            )

    # --- the sender thread --------------------------------------------------------------

    def _send_loop(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self._send_some()
                except Exception:
                    logger.exception("runner %s: sender failed; carrying on", self.name)
                    time.sleep(1)
        finally:
            connection.close()

    def _send_some(self) -> None:
        with self.held_lock:
            claimed = [e for held in self.held.values() for e in held.sends_claimed]
            for held in self.held.values():
                held.sends_claimed = []
            session_ids = list(self.held)
        self._forget_chats_not_held(set(session_ids))
        ready, self._ready = self._ready, []
        entries = ready + claimed
        entries += outbox.outbox_read(session_ids, self.name, block_ms=1 if entries else 500)
        for entry in entries:
            if self.stopping.is_set():
                return  # left pending: whoever owns the session next sends it
            try:
                self._send(entry)
            except Exception:
                # Never leave it read-but-pending until a takeover: try it again soon.
                logger.exception("session %s: handling a send failed", entry.session_id)
                self._release_chat(entry)
                outbox.outbox_defer(entry, delay=CHECK_RETRY_SECONDS, plan=entry.plan)

    def _send(self, entry: outbox.OutboxEntry) -> None:
        held = self.held.get(entry.session_id)
        if held is None:
            return  # not ours any more: it stays pending for the new owner to claim
        sent_as = outbox.outbox_already_sent(entry)
        if sent_as:
            self._release_chat(entry)
            self._finished(entry, provider_message_id=sent_as, attempts=entry.attempts + 1)
            outbox.outbox_finish(entry)
            return
        chat = (entry.session_id, entry.message.to)
        owner = self._chat_owner.get(chat)
        if owner is not None and owner != entry.idempotency_key:
            self._parked.setdefault(chat, []).append(entry)
            return
        if entry.plan is None and entry.ref:
            check = self._check(entry)
            if check.skip:
                outbox.outbox_finish(entry)
                return
            if check.wait_seconds > 0:
                outbox.outbox_defer(entry, delay=check.wait_seconds)
                return
            if check.steps:
                plan = {
                    "started": time.time(),
                    "steps": [[float(at), str(action)] for at, action in check.steps],
                    "read_ids": list(check.read_ids),
                }
                entry = dataclasses.replace(entry, plan=plan)
                self._chat_owner[chat] = entry.idempotency_key
                logger.info(
                    "session %s: humanised send %s, going out in %.1f s",
                    entry.session_id,
                    entry.ref.get("message_id", entry.idempotency_key),
                    plan["steps"][-1][0],
                )
        if entry.plan and not self._humanise(held, entry):
            return  # back in the delayed set until its next step
        self._deliver(held, entry)

    def _check(self, entry: outbox.OutboxEntry) -> outbox.SendCheck:
        """Ask the product whether and when to send (limits, opt-outs, humanisation)."""
        answers = send_checking.send(
            sender=SessionRunner,
            session_id=entry.session_id,
            ref=entry.ref,
            idempotency_key=entry.idempotency_key,
            message=entry.message,
            attempts=entry.attempts,
        )
        for _receiver, answer in answers:
            if isinstance(answer, outbox.SendCheck):
                return answer
        return outbox.SendCheck()

    def _humanise(self, held: Held, entry: outbox.OutboxEntry) -> bool:
        """Do the plan's steps that are due; True when the send itself is due, else the
        entry is deferred to its next step."""
        plan = entry.plan
        steps = plan["steps"]
        now = time.time()
        while steps and plan["started"] + steps[0][0] <= now:
            _at, action = steps.pop(0)
            if action == "send":
                return True
            self._human_step(held, entry, action, plan.get("read_ids") or [])
        if not steps:
            return True
        outbox.outbox_defer(entry, delay=plan["started"] + steps[0][0] - now, plan=plan)
        return False

    def _human_step(self, held: Held, entry: outbox.OutboxEntry, action: str, read_ids) -> None:
        to = entry.message.to
        try:
            if action == "read" and read_ids:
                held.connection.mark_read(chat=to, sender=to, message_ids=list(read_ids))
            elif action == "typing":
                held.connection.set_typing(chat=to, typing=True)
            elif action == "paused":
                held.connection.set_typing(chat=to, typing=False)
        except Exception:  # only cosmetic: never a reason not to send
            logger.warning("session %s: %s step failed", entry.session_id, action, exc_info=True)

    def _release_chat(self, entry: outbox.OutboxEntry) -> None:
        chat = (entry.session_id, entry.message.to)
        if self._chat_owner.get(chat) == entry.idempotency_key:
            del self._chat_owner[chat]
            self._ready += self._parked.pop(chat, [])

    def _forget_chats_not_held(self, held_ids: set[int]) -> None:
        for chat in [chat for chat in self._chat_owner if chat[0] not in held_ids]:
            del self._chat_owner[chat]
        for chat in [chat for chat in self._parked if chat[0] not in held_ids]:
            del self._parked[chat]  # still pending in the stream: the new owner claims them

    def _deliver(self, held: Held, entry: outbox.OutboxEntry) -> None:
        attempts = entry.attempts + 1
        try:
            result = held.connection.send(entry.message)
        except RetryLater as error:
            self._release_chat(entry)
            if outbox.outbox_retry_later(entry, delay=error.retry_after):
                logger.info("session %s: send will be retried: %s", entry.session_id, error)
                return
            self._send_failed(entry, f"Gave up after {attempts} attempts: {error}", attempts)
        except NeverRetry as error:
            self._release_chat(entry)
            self._send_failed(entry, str(error), attempts)
        except Exception as error:  # an unexpected bug must not lose the message either
            logger.exception("session %s: send crashed", entry.session_id)
            self._release_chat(entry)
            if not outbox.outbox_retry_later(entry):
                self._send_failed(entry, f"Unexpected error: {error.__class__.__name__}", attempts)
        else:
            outbox.outbox_mark_sent(entry, result.provider_message_id)
            self._release_chat(entry)
            self._finished(entry, provider_message_id=result.provider_message_id, attempts=attempts)
            outbox.outbox_finish(entry)  # only now: a kill before this leaves it to the next owner

    def _send_failed(self, entry: outbox.OutboxEntry, error: str, attempts: int) -> None:
        outbox.outbox_finish(entry)
        logger.warning("session %s: send failed for good: %s", entry.session_id, error)
        self._finished(entry, error=error, attempts=attempts)

    def _finished(
        self,
        entry: outbox.OutboxEntry,
        *,
        attempts: int,
        provider_message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        try:
            send_finished.send(
                sender=SessionRunner,
                session_id=entry.session_id,
                ref=entry.ref,
                idempotency_key=entry.idempotency_key,
                provider_message_id=provider_message_id,
                error=error,
                attempts=attempts,
            )
        except Exception:  # the send is done either way: never send it again for this
            logger.exception("session %s: recording a finished send failed", entry.session_id)
