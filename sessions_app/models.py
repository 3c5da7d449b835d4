"""The session registry (public schema): every WhatsApp number a tenant connects.

It lives in the public schema because the runner and the Twilio webhook must find any
session without knowing its tenant first; every query for a tenant's sessions filters
by tenant.
"""

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from sessions_app.fields import EncryptedTextField


class Provider(models.TextChoices):
    NEONIZE = "neonize", "WhatsApp (QR code)"
    TWILIO = "twilio", "Twilio WhatsApp Business API"
    SANDBOX = "sandbox", "Sandbox (simulated WhatsApp)"


# Providers whose connection lives in a session runner process.
LIVE_PROVIDERS = (Provider.NEONIZE, Provider.SANDBOX)


class Status(models.TextChoices):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    WAIT_QR = "WAIT_QR"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    LOGGED_OUT = "LOGGED_OUT"
    BANNED = "BANNED"
    FAILED = "FAILED"


class DesiredState(models.TextChoices):
    RUNNING = "running"
    STOPPED = "stopped"


class CustomerMode(models.TextChoices):
    SILENT = "silent", "Log customers' messages silently"
    ORDERING = "ordering", "Serve customers with the ordering bot"


class HumanizationProfile(models.TextChoices):
    INSTANT = "instant"
    FAST = "fast"
    NORMAL = "normal"
    SLOW = "slow"


class WhatsAppSession(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="whatsapp_sessions"
    )
    name = models.CharField(max_length=80)
    provider = models.CharField(max_length=10, choices=Provider.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.STOPPED)
    desired_state = models.CharField(
        max_length=8, choices=DesiredState.choices, default=DesiredState.STOPPED
    )

    qr_payload = models.TextField(blank=True)
    qr_expires_at = models.DateTimeField(null=True, blank=True)
    pairing_code = models.CharField(max_length=16, blank=True)
    phone_number = models.CharField(max_length=20, blank=True, help_text="Connected number, E.164")
    device_jid = models.CharField(
        max_length=100, blank=True, help_text="The linked device, to resume without a new QR"
    )

    owner_numbers = ArrayField(models.CharField(max_length=20), default=list, blank=True)
    customer_mode = models.CharField(
        max_length=10, choices=CustomerMode.choices, default=CustomerMode.SILENT
    )
    humanization_profile = models.CharField(
        max_length=10, choices=HumanizationProfile.choices, default=HumanizationProfile.NORMAL
    )

    proxy_host = models.CharField(max_length=255, blank=True)
    proxy_port = models.PositiveIntegerField(null=True, blank=True)
    proxy_username = models.CharField(max_length=255, blank=True)
    proxy_password = EncryptedTextField(blank=True)

    twilio_account_sid = models.CharField(max_length=64, blank=True)
    twilio_auth_token = EncryptedTextField(blank=True)
    twilio_from_number = models.CharField(max_length=20, blank=True)
    twilio_messaging_service_sid = models.CharField(max_length=64, blank=True)

    reconnect_attempts = models.PositiveIntegerField(default=0)
    last_disconnect_reason = models.CharField(max_length=300, blank=True)
    banned_until = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], name="session_name_unique_per_tenant"
            ),
            # The Twilio webhook routes by the `To` number: one session per sender number.
            models.UniqueConstraint(
                fields=["twilio_from_number"],
                condition=Q(provider="twilio") & ~Q(twilio_from_number=""),
                name="twilio_sender_number_unique",
            ),
        ]
        indexes = [models.Index(fields=["desired_state", "provider"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})"

    @property
    def is_live_provider(self) -> bool:
        return self.provider in LIVE_PROVIDERS

    @property
    def proxy_url(self) -> str:
        """socks5://user:password@host:port, or "" (the password is in it: never log this)."""
        if not self.proxy_host:
            return ""
        credentials = ""
        if self.proxy_username:
            credentials = f"{self.proxy_username}:{self.proxy_password or ''}@"
        return f"socks5://{credentials}{self.proxy_host}:{self.proxy_port or 1080}"


class SessionStatusChange(models.Model):
    """History: one row per status change, with why."""

    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="history")
    from_status = models.CharField(max_length=12, choices=Status.choices)
    to_status = models.CharField(max_length=12, choices=Status.choices)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.from_status} -> {self.to_status}"


class SessionCommand(models.Model):
    """A request from the web (or API) to the runner that owns the session.

    Rows, not messages: a runner that is down or restarting finds them when it takes
    the session, so a request cannot be lost.
    """

    class Kind(models.TextChoices):
        RESTART = "restart"
        LOGOUT = "logout"
        PAIR_PHONE = "pair_phone"
        SANDBOX_SCAN = "sandbox_scan"

    class State(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="commands")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    payload = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["session", "state"])]

    def __str__(self) -> str:
        return f"{self.kind} ({self.state})"


class SandboxMessage(models.Model):
    """The sandbox's "WhatsApp network": what simulated phones wrote to a sandbox session
    and what the session sent them. The phone simulator shows this transcript."""

    class Direction(models.TextChoices):
        TO_BUSINESS = "in", "Phone to business"
        FROM_BUSINESS = "out", "Business to phone"

    session = models.ForeignKey(
        WhatsAppSession, on_delete=models.CASCADE, related_name="sandbox_messages"
    )
    direction = models.CharField(max_length=3, choices=Direction.choices)
    phone = models.CharField(max_length=20, help_text="The simulated phone, E.164")
    push_name = models.CharField(max_length=80, blank=True)
    provider_message_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=12, default="text")
    text = models.TextField(blank=True)
    payload = models.JSONField(default=dict, blank=True)
    reply_to_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Phone to business: when the session's connection received it.
    received_at = models.DateTimeField(null=True, blank=True)
    # Business to phone: the receipts the simulated phone sends back.
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # A resend with the same id is the same message: what makes sends exactly-once.
            models.UniqueConstraint(
                fields=["session", "provider_message_id"], name="sandbox_message_id_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.phone}: {self.text[:30]}"


class Incident(models.Model):
    """Something an operator or an owner must hear about, told once while it lasts.

    An incident is open until it is resolved; at most one open incident exists per kind,
    tenant and subject (a session id, a runner name), so a storm of events about the same
    problem alerts once. Platform-wide incidents (a runner died) have no tenant."""

    class Kind(models.TextChoices):
        SESSION_DOWN = "session_down", "Session logged out, banned or failed"
        DEAD_LETTERS = "dead_letters", "Dead letters piling up"
        RUNNER_DIED = "runner_died", "A session runner died"
        BLOCK_RATE = "block_rate", "Many contacts blocked the number"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="incidents"
    )
    subject = models.CharField(max_length=120, help_text="What it is about: a session, a runner")
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "tenant", "subject"],
                condition=Q(resolved_at__isnull=True),
                nulls_distinct=False,
                name="one_open_incident_per_subject",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.summary}"
