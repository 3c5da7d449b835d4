"""A tenant's messaging data (tenant schema): contacts, conversations, messages,
messaging settings and outgoing webhooks.

Sessions live in the public schema; rows here refer to them by `session_id` (a plain
column, not a cross-schema foreign key, so deleting either side never reaches into
another schema).
"""

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from sessions_app.fields import EncryptedTextField


class Contact(models.Model):
    phone = models.CharField(max_length=20, unique=True, help_text="E.164")
    push_name = models.CharField(max_length=120, blank=True)
    language = models.CharField(
        max_length=2, blank=True, help_text="he, en or ar; blank: the tenant's"
    )
    opted_out = models.BooleanField(default=False, help_text="Wrote STOP: never message them")
    opted_out_at = models.DateTimeField(null=True, blank=True)
    blocked = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["phone"]

    def __str__(self) -> str:
        return f"{self.push_name or '?'} {self.phone}"


class Conversation(models.Model):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="conversations")
    session_id = models.BigIntegerField(db_index=True)
    last_message_at = models.DateTimeField(null=True, blank=True, db_index=True)
    unread_count = models.PositiveIntegerField(default=0)
    human_takeover = models.BooleanField(
        default=False, help_text="A person answers: the bot stays quiet"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "session_id"], name="one_conversation_per_contact_and_session"
            )
        ]

    def __str__(self) -> str:
        return f"{self.contact} on session {self.session_id}"


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "in"
        OUTBOUND = "out"

    class Status(models.TextChoices):
        RECEIVED = "received"  # inbound
        QUEUED = "queued"
        SENT = "sent"
        DELIVERED = "delivered"
        READ = "read"
        FAILED = "failed"
        SUPPRESSED = "suppressed"  # not sent on purpose: opted out, duplicate, silent

    # Receipts only ever move a message forward.
    STATUS_ORDER = {Status.QUEUED: 0, Status.SENT: 1, Status.DELIVERED: 2, Status.READ: 3}

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # No index of its own: conversation_keyset (conversation, created_at, id) serves it,
    # and every index is one more write for each message stored or updated.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    session_id = models.BigIntegerField()
    direction = models.CharField(max_length=3, choices=Direction.choices)
    kind = models.CharField(max_length=12, default="text")
    text = models.TextField(blank=True, help_text="The text, or the caption of media")
    media_url = models.URLField(max_length=1000, blank=True, help_text="Where to fetch it (sends)")
    media_file = models.CharField(
        max_length=300, blank=True, help_text="Stored copy (storage path)"
    )
    media_mime_type = models.CharField(max_length=100, blank=True)
    payload = models.JSONField(default=dict, blank=True, help_text="location, contact, reaction")
    provider_message_id = models.CharField(max_length=100, blank=True)
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    reply_to_provider_id = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    error_code = models.CharField(max_length=20, blank=True)
    dead_letter = models.BooleanField(default=False, help_text="Failed after the last retry")
    idempotency_key = models.CharField(max_length=100, null=True, blank=True)  # unique: Meta
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # Inbound: when it was routed (owner menu / customer flow). NULL: not yet -- the
    # routing sweep (messaging/sweeps.py) picks up a message whose hand-off was lost.
    routed_at = models.DateTimeField(null=True, blank=True)
    # Outbound, while queued: when its sender is due to look at it again (a limit's wait
    # or a retry's backoff). The re-hand sweep only touches messages long past it.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Outbound: how many times it was handed to its sender. A live session's outbox entry
    # carries the number; an entry of an older hand-off is skipped (never sent twice).
    hand_offs = models.PositiveSmallIntegerField(default=0)
    bulk_send = models.ForeignKey(
        "BulkSend", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A provider's message is stored once, however often it is delivered to us.
            models.UniqueConstraint(
                fields=["session_id", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="provider_message_stored_once",
            ),
            # A constraint rather than unique=True: the same uniqueness without the
            # second, LIKE-only index Django adds for a unique text column.
            models.UniqueConstraint(
                fields=["idempotency_key"], name="message_idempotency_key_once"
            ),
        ]
        indexes = [
            models.Index(fields=["created_at", "id"], name="message_keyset"),
            models.Index(fields=["conversation", "created_at", "id"], name="conversation_keyset"),
            models.Index(
                fields=["dead_letter"], condition=Q(dead_letter=True), name="dead_letters"
            ),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="queued", direction="out"),
                name="outbound_queued_due",
            ),
            models.Index(
                fields=["created_at"],
                condition=Q(routed_at__isnull=True, direction="in"),
                name="inbound_not_routed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.kind} {self.status}"


class BulkSend(models.Model):
    """One job sending many messages (a broadcast, an API batch): its items, where it got
    to, and how its messages ended up. Run by Celery (messaging/bulk.py)."""

    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session_id = models.BigIntegerField(db_index=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    origin = models.CharField(max_length=40, blank=True, help_text='"api", "owner_menu", ...')
    notify = models.JSONField(default=dict, blank=True, help_text="Whom to tell when done")
    items = models.JSONField(default=list, help_text="message_send kwargs, with delay_seconds")
    next_index = models.PositiveIntegerField(default=0, help_text="Items handed out so far")
    total = models.PositiveIntegerField(default=0)
    queued = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    suppressed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="Items refused, by index")
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"bulk send {self.public_id} ({self.state})"


class MessagingSettings(models.Model):
    """The tenant's limits, one row per tenant schema (`MessagingSettings.current()`)."""

    inbound_per_customer_per_minute = models.PositiveIntegerField(default=30)
    inbound_pause_minutes = models.PositiveIntegerField(default=5)
    inbound_per_tenant_per_minute = models.PositiveIntegerField(default=600)
    outbound_per_tenant_per_minute = models.PositiveIntegerField(default=60)
    outbound_per_recipient_per_minute = models.PositiveIntegerField(default=10)
    outbound_burst = models.PositiveIntegerField(
        default=3, help_text="Messages in a row to one recipient"
    )
    outbound_burst_cooldown_seconds = models.PositiveIntegerField(default=30)
    outbound_daily_per_session = models.PositiveIntegerField(default=1000)
    duplicate_window_seconds = models.PositiveIntegerField(default=300)
    limits_enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "messaging settings"

    def __str__(self) -> str:
        return "Messaging settings"

    @classmethod
    def current(cls) -> "MessagingSettings":
        settings, _ = cls.objects.get_or_create(pk=1)
        return settings


class WebhookEndpoint(models.Model):
    class Event(models.TextChoices):
        MESSAGE_NEW = "message.new"
        MESSAGE_STATUS = "message.status"
        SESSION_STATUS = "session.status"
        SESSION_QR = "session.qr"
        ORDER_UPDATED = "order.updated"

    url = models.URLField(max_length=500)
    secret = EncryptedTextField(help_text="Signs every delivery (HMAC-SHA256)")
    events = ArrayField(models.CharField(max_length=30, choices=Event.choices), default=list)
    is_active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event to one endpoint: a row, so a restart loses none."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_type = models.CharField(max_length=30)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="webhook_due")]

    def __str__(self) -> str:
        return f"{self.event_type} -> {self.endpoint_id} ({self.state})"


# The owner menu's models (messaging/owner_models.py) belong to this app too.
from messaging.owner_models import (  # noqa: E402, F401
    OwnerAccount,
    OwnerAuditEntry,
    OwnerBroadcast,
    OwnerReminder,
)
