"""What leaves the database after an order changes: the customer's message in their
language, `order.updated` to the dashboards and the tenant's webhooks, owner alerts.

Called after commit only (orders/services.py registers it with transaction.on_commit).
Each message carries an idempotency key (order + status + recipient), so a repeated call
never sends twice.
"""

from __future__ import annotations

import logging

from django.utils.translation import gettext as _
from django.utils.translation import override
from django_tenants.utils import schema_context

from orders.events import order_as_event
from orders.models import Fulfilment, Order, OrderSettings, OrderStatus
from orders.money import money_format

logger = logging.getLogger(__name__)

S = OrderStatus


def customer_language(contact, session) -> str:
    return contact.language or session.tenant.language or "he"


def order_summary_lines(order: Order, language: str) -> str:
    """One line per item, "2 x Falafel - 56.00 ILS" (names in the customer's language)."""
    rows = []
    for line in order.lines.select_related("menu_item").all():
        name = line.menu_item.name_in(language) if line.menu_item else line.name
        total = money_format(line.total_minor, order.currency)
        rows.append(f"{line.quantity} × {name} — {total}")  # noqa: RUF001
    return "\n".join(rows)


def order_customer_text(order: Order, *, previous: str, settings: OrderSettings) -> str:
    """The customer's message for the order's new status, in the active language."""
    number = order.number
    status = order.status
    if status == S.CONFIRMED:
        if order.fulfilment == Fulfilment.DELIVERY:
            where = _("Delivery to: %(address)s") % {"address": order.address}
        else:
            where = _("Pickup from us")
        return "\n".join(
            [
                _("Order #%(number)s is confirmed. Thank you!") % {"number": number},
                order_summary_lines(order, _language()),
                _("Total: %(total)s") % {"total": money_format(order.total_minor, order.currency)},
                where,
            ]
        )
    if status == S.PREPARING:
        return _("Order #%(number)s is being prepared.") % {"number": number}
    if status == S.OUT_FOR_DELIVERY:
        return _("Order #%(number)s is on its way to you.") % {"number": number}
    if status == S.DELIVERED:
        if order.fulfilment == Fulfilment.PICKUP:
            return _("Order #%(number)s is ready for pickup. Enjoy!") % {"number": number}
        return _("Order #%(number)s was delivered. Enjoy your meal!") % {"number": number}
    if status == S.CANCELLED:
        return _("Order #%(number)s was cancelled. Reason: %(reason)s") % {
            "number": number,
            "reason": order.cancel_reason,
        }
    if status == S.RATED:
        if (order.rating or 0) >= 4:
            return settings.promo_text or _("Thank you for your rating! See you again soon.")
        apology = settings.apology_text or _(
            "We are sorry your order was not as it should have been."
        )
        if settings.support_contact:
            apology += "\n" + _("Please contact us: %(contact)s") % {
                "contact": settings.support_contact
            }
        return apology
    return ""


def _language() -> str:
    from django.utils.translation import get_language

    return (get_language() or "he")[:2]


def order_transition_notify(*, schema: str, order_id: int, previous: str, status: str) -> None:
    """After commit: the customer's message, `order.updated`, and for a low rating the
    owner's alert. A failure of one does not stop the others."""
    with schema_context(schema):
        order = Order.objects.select_related("contact").filter(pk=order_id).first()
        if order is None:
            return
        session = _session(order, schema)
        if session is not None:
            try:
                _tell_customer(order, session=session, previous=previous, status=status)
            except Exception:
                logger.exception("order %s: the customer's %s message failed", order.pk, status)
            if status == S.RATED and (order.rating or 5) <= 3:
                try:
                    owner_alert(
                        session=session,
                        key=f"order-{order.public_id}-low-rating",
                        text_of=lambda: low_rating_alert_text(order),
                    )
                except Exception:
                    logger.exception("order %s: the owner's alert failed", order.pk)
        order_updated_publish(order, schema=schema)


def order_updated_publish(order: Order, *, schema: str) -> None:
    """`order.updated` to the tenant's dashboards and webhooks, now."""
    from messaging.events import event_publish

    event_publish(
        schema=schema, event_type="order.updated", data=order_as_event(order), key="order"
    )


def _session(order: Order, schema: str):
    from sessions_app.models import WhatsAppSession

    return (
        WhatsAppSession.objects.select_related("tenant")
        .filter(pk=order.session_id, tenant__schema_name=schema)
        .first()
    )


def _tell_customer(order: Order, *, session, previous: str, status: str) -> None:
    from messaging.outbound import message_send

    settings = OrderSettings.current()
    # The status the message is about is the one committed, even if the order moved on.
    order.status = status
    with override(customer_language(order.contact, session)):
        text = order_customer_text(order, previous=previous, settings=settings)
    if not text:
        return
    message_send(
        session=session,
        to=order.contact.phone,
        text=text,
        idempotency_key=f"order-{order.public_id}-{status}",
    )


def low_rating_alert_text(order: Order) -> str:
    contact = order.contact
    text = _("Order #%(number)s was rated %(rating)s/5 by %(name)s %(phone)s.") % {
        "number": order.number,
        "rating": order.rating,
        "name": contact.push_name,
        "phone": contact.phone,
    }
    if order.rating_comment:
        text += "\n" + _("Comment: %(comment)s") % {"comment": order.rating_comment}
    return text


def owner_alert(*, session, key: str, text_of) -> int:
    """WhatsApp the session's owner numbers (in the tenant's language), once per key.
    Returns how many owners were messaged."""
    from messaging.outbound import message_send

    sent = 0
    with override(session.tenant.language or "he"):
        text = text_of()
    for phone in session.owner_numbers or []:
        message_send(session=session, to=phone, text=text, idempotency_key=f"{key}-{phone}")
        sent += 1
    return sent
