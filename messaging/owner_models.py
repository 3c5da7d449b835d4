"""The owner-only menu's rows (tenant schema): owners, their audit trail, reminders and
broadcasts. Imported at the end of messaging/models.py, so they belong to `messaging`.

The menu's conversation state lives on `OwnerAccount` (state, context, the steps to go
back to, when the step expires): a restart of any process loses nothing.
"""

import uuid

from django.db import models
from django.db.models import Q


class OwnerAccount(models.Model):
    """One owner phone of the tenant: who they are, their PIN (a hash), whether they are
    logged in, their lockout, and where they are in the menu."""

    phone = models.CharField(max_length=20, unique=True, help_text="E.164")
    name = models.CharField(max_length=80, blank=True)
    pin_hash = models.CharField(
        max_length=256, blank=True, help_text="Django password hash; blank until registered"
    )
    language = models.CharField(
        max_length=2, blank=True, help_text="he, en or ar; blank: the tenant's"
    )
    registered_at = models.DateTimeField(null=True, blank=True)
    logged_in = models.BooleanField(default=False)
    last_active_at = models.DateTimeField(null=True, blank=True)
    failed_pins = models.PositiveSmallIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True, db_index=True)

    # The conversation with the menu.
    session_id = models.BigIntegerField(null=True, blank=True, help_text="Where they last wrote")
    state = models.CharField(max_length=40, default="idle")
    context = models.JSONField(default=dict, blank=True)
    back = models.JSONField(default=list, blank=True, help_text="Earlier steps, for /cancel")
    state_expires_at = models.DateTimeField(null=True, blank=True)
    handled_message_ids = models.JSONField(
        default=list, blank=True, help_text="The last messages answered (a rerun answers none)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["phone"]
        indexes = [
            models.Index(
                fields=["state_expires_at"],
                condition=~Q(state="idle"),
                name="owner_state_expiring",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name or '?'} {self.phone}"

    @property
    def registered(self) -> bool:
        return bool(self.pin_hash)


class OwnerAuditEntry(models.Model):
    """Something an owner did (or tried) from the menu. Never holds a PIN."""

    class Action(models.TextChoices):
        REGISTERED = "registered"
        LOGIN = "login"
        PIN_FAILED = "pin_failed"
        LOCKOUT = "lockout"
        LOGOUT = "logout"
        TRANSITION = "transition"
        BROADCAST = "broadcast"
        BOT_PAUSED = "bot_paused"
        BOT_RESUMED = "bot_resumed"
        REMINDER_CREATED = "reminder_created"
        REMINDER_CANCELLED = "reminder_cancelled"
        LANGUAGE = "language"

    owner = models.ForeignKey(
        OwnerAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit"
    )
    phone = models.CharField(max_length=20)
    action = models.CharField(max_length=30, choices=Action.choices)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "owner audit entries"

    def __str__(self) -> str:
        return f"{self.phone} {self.action}"


class OwnerReminder(models.Model):
    """A reminder an owner set for themselves; sent once, at `due_at`."""

    class State(models.TextChoices):
        SCHEDULED = "scheduled"
        SENT = "sent"
        CANCELLED = "cancelled"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(OwnerAccount, on_delete=models.CASCADE, related_name="reminders")
    session_id = models.BigIntegerField()
    text = models.CharField(max_length=1000)
    due_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.SCHEDULED)
    # When a Celery task with this ETA was queued (reminders due far ahead are queued by
    # the sweep shortly before their time, never hours ahead).
    task_queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True, help_text="The message sent")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [
            models.Index(
                fields=["due_at"], condition=Q(state="scheduled"), name="owner_reminder_due"
            )
        ]

    def __str__(self) -> str:
        return f"reminder {self.public_id} at {self.due_at} ({self.state})"


class OwnerBroadcast(models.Model):
    """A broadcast an owner sent, and what they were told about it."""

    owner = models.ForeignKey(OwnerAccount, on_delete=models.CASCADE, related_name="broadcasts")
    session_id = models.BigIntegerField()
    text = models.TextField()
    audience = models.CharField(max_length=20)
    recipients = models.PositiveIntegerField()
    bulk_send_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    last_progress_sent = models.IntegerField(default=-1)
    last_progress_at = models.DateTimeField(null=True, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True, help_text="Final report sent")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"broadcast {self.pk} to {self.recipients}"
