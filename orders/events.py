"""The JSON shape of an order in `order.updated` events (dashboards and webhooks)."""

from __future__ import annotations

from orders.models import Order
from orders.money import money_format


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def order_as_event(order: Order) -> dict:
    """JSON-safe: ints, strings, booleans, None, ISO datetimes. Money in minor units
    (`total_minor`), with `total_display` for people."""
    from orders.services import allowed_transitions, order_next_status

    contact = order.contact
    return {
        "id": str(order.public_id),
        "pk": order.pk,
        "number": order.number,
        "status": order.status,
        "next_status": order_next_status(order),
        "allowed": allowed_transitions(order),
        "fulfilment": order.fulfilment,
        "address": order.address,
        "notes": order.notes,
        "total_minor": order.total_minor,
        "currency": order.currency,
        "total_display": money_format(order.total_minor, order.currency),
        "is_late": order.is_late,
        "rating": order.rating,
        "rating_comment": order.rating_comment,
        "rating_prompt": order.rating_prompt,
        "cancel_reason": order.cancel_reason,
        "session_id": order.session_id,
        "contact": {"phone": contact.phone, "name": contact.push_name},
        "lines": [
            {
                "name": line.name,
                "quantity": line.quantity,
                "unit_price_minor": line.unit_price_minor,
                "total_minor": line.total_minor,
                "notes": line.notes,
            }
            for line in order.lines.all()
        ],
        "created_at": _iso(order.created_at),
        "updated_at": _iso(order.updated_at),
        "confirmed_at": _iso(order.confirmed_at),
        "preparing_at": _iso(order.preparing_at),
        "out_for_delivery_at": _iso(order.out_for_delivery_at),
        "delivered_at": _iso(order.delivered_at),
        "rated_at": _iso(order.rated_at),
        "cancelled_at": _iso(order.cancelled_at),
    }
