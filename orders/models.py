"""A tenant's menu and orders (tenant schema).

Money is always an integer number of minor units (agorot, cents, halalas) in the
tenant's currency; Decimal is only for display (orders/money.py). Sessions live in the
public schema: orders refer to them by `session_id`, a plain column.
"""

import uuid

from django.db import models
from django.db.models import Q


class OrderStatus(models.TextChoices):
    DRAFT = "DRAFT"
    CONFIRMED = "CONFIRMED"
    PREPARING = "PREPARING"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    DELIVERED = "DELIVERED"
    RATED = "RATED"
    CANCELLED = "CANCELLED"


class Fulfilment(models.TextChoices):
    DELIVERY = "delivery"
    PICKUP = "pickup"


class ActorKind(models.TextChoices):
    STAFF = "staff"
    OWNER = "owner"
    CUSTOMER = "customer"
    SYSTEM = "system"
    API = "api"


class RatingPrompt(models.TextChoices):
    NONE = "", "not sent"
    SENT = "sent"
    REMINDED = "reminded"  # the customer answered something else once: reminded once
    SKIPPED = "skipped"  # Twilio outside the 24-hour window with no content template
    EXPIRED = "expired"  # no rating within 24 hours: never asked again
    ANSWERED = "answered"


class MenuItem(models.Model):
    name_he = models.CharField(max_length=120)
    name_en = models.CharField(max_length=120, blank=True)
    name_ar = models.CharField(max_length=120, blank=True)
    description_he = models.CharField(max_length=300, blank=True)
    description_en = models.CharField(max_length=300, blank=True)
    description_ar = models.CharField(max_length=300, blank=True)
    price_minor = models.PositiveIntegerField(help_text="In minor units of the tenant's currency")
    category = models.CharField(max_length=60, blank=True)
    available = models.BooleanField(default=True)
    sort_order = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.name_he

    def name_in(self, language: str) -> str:
        """The name in `language` (he, en, ar), else Hebrew."""
        return getattr(self, f"name_{language}", "") or self.name_he

    def description_in(self, language: str) -> str:
        return getattr(self, f"description_{language}", "") or self.description_he


class Order(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    number = models.PositiveIntegerField(unique=True, help_text="Said aloud: 'order 104'")
    contact = models.ForeignKey(
        "messaging.Contact", on_delete=models.PROTECT, related_name="orders"
    )
    session_id = models.BigIntegerField(db_index=True)
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.DRAFT, db_index=True
    )
    fulfilment = models.CharField(
        max_length=10, choices=Fulfilment.choices, default=Fulfilment.DELIVERY
    )
    address = models.CharField(max_length=300, blank=True)
    notes = models.CharField(max_length=300, blank=True)
    total_minor = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3)
    is_late = models.BooleanField(default=False, help_text="Confirmed too long without moving")
    rating = models.PositiveSmallIntegerField(null=True, blank=True)
    rating_comment = models.CharField(max_length=500, blank=True)
    rating_prompt = models.CharField(
        max_length=10, choices=RatingPrompt.choices, default=RatingPrompt.NONE, blank=True
    )
    rating_prompted_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    preparing_at = models.DateTimeField(null=True, blank=True)
    out_for_delivery_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    rated_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["delivered_at"],
                condition=Q(status="DELIVERED"),
                name="orders_awaiting_rating",
            ),
            models.Index(
                fields=["confirmed_at"],
                condition=Q(status="CONFIRMED", is_late=False),
                name="orders_confirmed_not_late",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.number} {self.status}"


# Which timestamp each status stamps.
STATUS_TIMESTAMP = {
    OrderStatus.CONFIRMED: "confirmed_at",
    OrderStatus.PREPARING: "preparing_at",
    OrderStatus.OUT_FOR_DELIVERY: "out_for_delivery_at",
    OrderStatus.DELIVERED: "delivered_at",
    OrderStatus.RATED: "rated_at",
    OrderStatus.CANCELLED: "cancelled_at",
}


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    menu_item = models.ForeignKey(MenuItem, null=True, blank=True, on_delete=models.SET_NULL)
    name = models.CharField(max_length=120, help_text="The item's name when ordered")
    quantity = models.PositiveIntegerField()
    unit_price_minor = models.PositiveIntegerField()
    notes = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.name}"

    @property
    def total_minor(self) -> int:
        return self.quantity * self.unit_price_minor


class OrderEvent(models.Model):
    """One transition of one order: who, when, from, to."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=20, choices=OrderStatus.choices)
    to_status = models.CharField(max_length=20, choices=OrderStatus.choices)
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    actor_label = models.CharField(max_length=150, blank=True, help_text="user, phone, job")
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"#{self.order_id}: {self.from_status} -> {self.to_status}"


def default_opening_hours() -> dict:
    return {}


class OrderSettings(models.Model):
    """The tenant's ordering settings, one row per tenant schema (`OrderSettings.current()`).

    `opening_hours`: weekday ("0" Monday .. "6" Sunday, the tenant's time zone) to a list
    of ["HH:MM", "HH:MM"] ranges; a range ending at or before its start runs past
    midnight. Empty: always open.
    """

    currency = models.CharField(max_length=3, default="ILS")
    opening_hours = models.JSONField(default=default_opening_hours, blank=True)
    bot_paused = models.BooleanField(default=False, help_text="The bot answers with the hours")
    bot_idle_minutes = models.PositiveIntegerField(
        default=30, help_text="An unfinished conversation expires after this quiet time"
    )
    rating_delay_minutes = models.PositiveIntegerField(default=30)
    promo_text = models.CharField(max_length=500, blank=True)
    apology_text = models.CharField(max_length=500, blank=True)
    support_contact = models.CharField(max_length=120, blank=True)
    confirmed_too_long_minutes = models.PositiveIntegerField(default=10)
    rating_template_sid = models.CharField(
        max_length=40, blank=True, help_text="Twilio content template for the rating prompt"
    )
    next_number = models.PositiveIntegerField(default=101)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "order settings"

    def __str__(self) -> str:
        return "Order settings"

    @classmethod
    def current(cls) -> "OrderSettings":
        settings, _ = cls.objects.get_or_create(pk=1)
        return settings


class BotState(models.TextChoices):
    IDLE = "idle"
    ITEMS = "items"  # choosing items
    QUANTITY = "quantity"  # an item chosen, how many?
    FULFILMENT = "fulfilment"  # cart reviewed: delivery or pickup?
    ADDRESS = "address"
    CONFIRM = "confirm"


class BotConversation(models.Model):
    """The ordering bot's state with one customer on one session."""

    contact = models.ForeignKey(
        "messaging.Contact", on_delete=models.CASCADE, related_name="bot_conversations"
    )
    session_id = models.BigIntegerField()
    state = models.CharField(max_length=12, choices=BotState.choices, default=BotState.IDLE)
    context = models.JSONField(default=dict, blank=True)
    language = models.CharField(max_length=2, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "session_id"], name="one_bot_conversation_per_contact"
            )
        ]
        indexes = [
            models.Index(fields=["last_activity_at"], condition=~Q(state="idle"), name="bot_active")
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} on {self.session_id}: {self.state}"
