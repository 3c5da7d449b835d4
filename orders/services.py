"""Writes to a tenant's menu and orders. Call them in the tenant's schema.

`order_transition` is the only way anything changes an order's status: the dashboard,
the API, the owner menu, the bot and the scheduled jobs all come through it. It locks the
order's row, checks the move against TRANSITIONS, stamps the status's timestamp, writes an
OrderEvent, and after commit tells the customer (in their language), the dashboards
(`order.updated`) and the tenant's webhooks (orders/notify.py).
"""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from orders.models import (
    STATUS_TIMESTAMP,
    ActorKind,
    Fulfilment,
    MenuItem,
    Order,
    OrderEvent,
    OrderLine,
    OrderSettings,
    OrderStatus,
    RatingPrompt,
)

logger = logging.getLogger(__name__)

S = OrderStatus

# Every legal move. Pickup orders skip OUT_FOR_DELIVERY (PREPARING -> DELIVERED: picked
# up) and delivery orders must go through it; see `allowed_transitions`.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.DRAFT: (S.CONFIRMED, S.CANCELLED),
    S.CONFIRMED: (S.PREPARING, S.CANCELLED),
    S.PREPARING: (S.OUT_FOR_DELIVERY, S.DELIVERED, S.CANCELLED),
    S.OUT_FOR_DELIVERY: (S.DELIVERED,),
    S.DELIVERED: (S.RATED,),
    S.RATED: (),
    S.CANCELLED: (),
}
# The happy path, for "advance" buttons (RATED comes from the customer, not from staff).
_NEXT = {
    S.DRAFT: S.CONFIRMED,
    S.CONFIRMED: S.PREPARING,
    S.OUT_FOR_DELIVERY: S.DELIVERED,
}
ACTOR_KINDS = frozenset(ActorKind.values)
MAX_QUANTITY = 50


class OrderError(Exception):
    """An order cannot do what was asked; the message says why (safe to show)."""


class IllegalTransition(OrderError):
    def __init__(self, *, current: str, requested: str, allowed: list[str]):
        self.current = current
        self.requested = requested
        self.allowed = allowed
        allowed_text = ", ".join(allowed) if allowed else "nothing (final status)"
        super().__init__(
            f"An order in {current} cannot become {requested}; allowed: {allowed_text}."
        )


def allowed_transitions(order: Order) -> list[str]:
    """The statuses this order may move to now (its fulfilment decides the path)."""
    allowed = list(TRANSITIONS.get(order.status, ()))
    if order.status == S.PREPARING:
        skip = S.DELIVERED if order.fulfilment == Fulfilment.DELIVERY else S.OUT_FOR_DELIVERY
        allowed.remove(skip)
    return allowed


def order_next_status(order: Order) -> str | None:
    """Where "advance" takes this order, or None (delivered ones wait for the rating)."""
    if order.status == S.PREPARING:
        if order.fulfilment == Fulfilment.PICKUP:
            return S.DELIVERED
        return S.OUT_FOR_DELIVERY
    return _NEXT.get(order.status)


def order_transition(
    *, order_id: int, to: str, actor_kind: str, actor_label: str = "", note: str = ""
) -> Order:
    """Move one order to `to`, once.

    Guarantees: the row is locked (select_for_update) while it changes, so two concurrent
    calls for the same move yield one transition and one IllegalTransition; an OrderEvent
    row records who, when, from, to; the customer, the dashboards and the webhooks hear of
    it only after commit. Cancelling needs `note` (the reason, told to the customer);
    RATED needs a rating (use `order_rate`).
    """
    with transaction.atomic():
        order = _locked(order_id)
        _apply(order, to=to, actor_kind=actor_kind, actor_label=actor_label, note=note)
    return order


def _locked(order_id: int) -> Order:
    try:
        return Order.objects.select_for_update().get(pk=order_id)
    except (Order.DoesNotExist, ValueError, TypeError):
        raise OrderError(f"There is no order {order_id!r}.") from None


def _apply(order: Order, *, to: str, actor_kind: str, actor_label: str, note: str) -> None:
    """The transition itself; the caller holds the order's row lock."""
    if actor_kind not in ACTOR_KINDS:
        raise OrderError(f"Unknown actor kind {actor_kind!r}: use one of {sorted(ACTOR_KINDS)}.")
    allowed = allowed_transitions(order)
    if to not in allowed:
        raise IllegalTransition(current=order.status, requested=str(to), allowed=allowed)
    note = (note or "").strip()[:300]
    if to == S.CANCELLED and not note:
        raise OrderError("Cancelling an order needs a reason.")
    if to == S.RATED and order.rating is None:
        raise OrderError("An order becomes RATED with the customer's rating (order_rate).")
    previous = order.status
    now = timezone.now()
    order.status = to
    fields = ["status", "updated_at", STATUS_TIMESTAMP[to]]
    setattr(order, STATUS_TIMESTAMP[to], now)
    if to == S.CANCELLED:
        order.cancel_reason = note
        fields.append("cancel_reason")
    if to != S.CONFIRMED and order.is_late:
        order.is_late = False
        fields.append("is_late")
    order.save(update_fields=fields)
    OrderEvent.objects.create(
        order=order,
        from_status=previous,
        to_status=to,
        actor_kind=actor_kind,
        actor_label=(actor_label or "")[:150],
        note=note,
    )
    logger.info(
        "order %s (%s): %s -> %s by %s", order.number, connection.schema_name, previous, to,
        actor_kind,
    )  # fmt: skip
    _notify_after_commit(order, previous=previous)


def _notify_after_commit(order: Order, *, previous: str) -> None:
    from orders.notify import order_transition_notify

    schema = connection.schema_name
    order_id, status = order.pk, order.status
    transaction.on_commit(
        lambda: order_transition_notify(
            schema=schema, order_id=order_id, previous=previous, status=status
        )
    )


def order_rate(
    *, order_id: int, rating: int, comment: str = "", actor_kind: str = "customer",
    actor_label: str = "",
) -> Order:  # fmt: skip
    """Store the customer's 1-5 rating and move the order DELIVERED -> RATED (one
    transaction). 4-5 thanks them with the promo text, 1-3 apologises with the support
    contact and alerts the owner (after commit, orders/notify.py)."""
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ValidationError({"rating": "A rating is a whole number from 1 to 5."})
    with transaction.atomic():
        order = _locked(order_id)
        if order.status != S.DELIVERED:
            raise IllegalTransition(
                current=order.status, requested=S.RATED, allowed=allowed_transitions(order)
            )
        order.rating = rating
        order.rating_comment = (comment or "").strip()[:500]
        order.rating_prompt = RatingPrompt.ANSWERED
        order.save(update_fields=["rating", "rating_comment", "rating_prompt"])
        _apply(
            order, to=S.RATED, actor_kind=actor_kind, actor_label=actor_label,
            note=f"rating {rating}",
        )  # fmt: skip
    return order


def order_create(
    *,
    contact,
    session_id: int,
    lines: list[dict],
    fulfilment: str = Fulfilment.DELIVERY,
    address: str = "",
    notes: str = "",
) -> Order:
    """A DRAFT order with its lines priced from the menu now. `lines`:
    `[{"menu_item": MenuItem or id, "quantity": int, "notes": ""}]`. ValidationError by
    field. The number comes from the tenant's counter (row lock: numbers never repeat)."""
    errors: dict[str, list[str]] = {}
    if fulfilment not in Fulfilment.values:
        errors.setdefault("fulfilment", []).append("Use delivery or pickup.")
    address = (address or "").strip()
    if fulfilment == Fulfilment.DELIVERY and not address:
        errors.setdefault("address", []).append("A delivery needs an address.")
    if not lines:
        errors.setdefault("lines", []).append("An order needs at least one item.")
    priced: list[OrderLine] = []
    for index, line in enumerate(lines or []):
        item = line.get("menu_item")
        if not isinstance(item, MenuItem):
            item = MenuItem.objects.filter(pk=item).first() if str(item).isdigit() else None
        quantity = line.get("quantity")
        if item is None or not item.available:
            errors.setdefault("lines", []).append(f"Line {index + 1}: no such item on the menu.")
            continue
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            quantity = 0
        if not 1 <= quantity <= MAX_QUANTITY:
            errors.setdefault("lines", []).append(
                f"Line {index + 1}: a quantity is from 1 to {MAX_QUANTITY}."
            )
            continue
        priced.append(
            OrderLine(
                menu_item=item,
                name=item.name_he,
                quantity=quantity,
                unit_price_minor=item.price_minor,
                notes=str(line.get("notes") or "")[:200],
            )
        )
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        settings = OrderSettings.objects.select_for_update().filter(pk=1).first()
        if settings is None:
            OrderSettings.current()
            settings = OrderSettings.objects.select_for_update().get(pk=1)
        number = settings.next_number
        # Numbers left behind by orders created some other way are skipped.
        while Order.objects.filter(number=number).exists():
            number += 1
        settings.next_number = number + 1
        settings.save(update_fields=["next_number", "updated_at"])
        order = Order.objects.create(
            number=number,
            contact=contact,
            session_id=session_id,
            fulfilment=fulfilment,
            address=address if fulfilment == Fulfilment.DELIVERY else "",
            notes=(notes or "")[:300],
            currency=settings.currency,
            total_minor=sum(line.total_minor for line in priced),
        )
        for line in priced:
            line.order = order
        OrderLine.objects.bulk_create(priced)
    return order


def ordering_bot_pause_set(
    *, paused: bool, actor_kind: str, actor_label: str = ""
) -> OrderSettings:
    """Pause (or resume) the ordering bot: paused, it answers with the opening hours."""
    if actor_kind not in ACTOR_KINDS:
        raise OrderError(f"Unknown actor kind {actor_kind!r}.")
    settings = OrderSettings.current()
    settings.bot_paused = bool(paused)
    settings.save(update_fields=["bot_paused", "updated_at"])
    logger.info(
        "ordering bot %s in %s by %s %s",
        "paused" if paused else "resumed",
        connection.schema_name,
        actor_kind,
        actor_label,
    )
    return settings


# --- the menu -------------------------------------------------------------------------

_MENU_FIELDS = frozenset(
    {"name_he", "name_en", "name_ar", "description_he", "description_en", "description_ar",
     "price_minor", "category", "available", "sort_order"}
)  # fmt: skip


def _menu_item_save(item: MenuItem, fields: dict) -> MenuItem:
    unknown = set(fields) - _MENU_FIELDS
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "Not a menu item field."))
    price = fields.get("price_minor", item.price_minor)
    if isinstance(price, (float, bool)):
        raise ValidationError({"price_minor": "A price is a whole number of minor units."})
    for name, value in fields.items():
        setattr(item, name, value)
    item.full_clean()
    item.save()
    return item


def menu_item_create(**fields) -> MenuItem:
    """A new menu item; ValidationError by field (price in minor units, an int)."""
    return _menu_item_save(MenuItem(), fields)


def menu_item_update(*, item: MenuItem, **fields) -> MenuItem:
    return _menu_item_save(item, fields)


def menu_item_delete(*, item: MenuItem) -> None:
    """Orders keep their lines (name and price were copied when ordered)."""
    item.delete()
