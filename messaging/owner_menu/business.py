"""What the owner menu asks of the orders app: today's orders, moving one along (the
same `order_transition` the dashboard uses, recorded as done by the owner), the day's
summary, and the ordering bot's pause. Texts are in the active language."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

STATUS_LABELS = {
    "DRAFT": gettext_lazy("Draft"),
    "CONFIRMED": gettext_lazy("Confirmed"),
    "PREPARING": gettext_lazy("Preparing"),
    "OUT_FOR_DELIVERY": gettext_lazy("Out for delivery"),
    "DELIVERED": gettext_lazy("Delivered"),
    "RATED": gettext_lazy("Rated"),
    "CANCELLED": gettext_lazy("Cancelled"),
}
STATUS_ORDER = ["CONFIRMED", "PREPARING", "OUT_FOR_DELIVERY", "DELIVERED", "RATED", "CANCELLED"]
CANCELLABLE = ("DRAFT", "CONFIRMED", "PREPARING")
MAX_LISTED = 30


def status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


def _money(minor: int, currency: str) -> str:
    from orders.money import money_format

    return money_format(int(minor or 0), currency)


def _who(order) -> str:
    contact = order.contact
    return contact.push_name or contact.phone


def orders_today_text() -> str:
    from orders.selectors import orders_of_day

    orders = list(orders_of_day())
    if not orders:
        return _("No orders today yet.")
    by_status: dict[str, list] = {}
    for order in orders:
        by_status.setdefault(order.status, []).append(order)
    lines = [_("Today's orders (%(n)d):") % {"n": len(orders)}]
    for status in STATUS_ORDER:
        group = by_status.get(status)
        if not group:
            continue
        lines.append("")
        lines.append(f"*{status_label(status)}* ({len(group)})")
        for order in reversed(group[:MAX_LISTED]):  # oldest first within a status
            lines.append(
                f"#{order.number} · {_who(order)} · {_money(order.total_minor, order.currency)}"
            )
        if len(group) > MAX_LISTED:
            lines.append("…")
    return "\n".join(lines)


def next_status(order) -> str | None:
    from orders.services import order_next_status

    return order_next_status(order)


def order_by_number(number: int):
    from orders.models import Order

    return Order.objects.select_related("contact").filter(number=number).first()


def can_cancel(order) -> bool:
    return order.status in CANCELLABLE


def _listing(orders, describe) -> str:
    lines = [describe(order) for order in orders[:MAX_LISTED]]
    return "\n".join(line for line in lines if line)


def advanceable_text() -> str:
    """Today's orders that can move on, one a line: "#104 Confirmed → Preparing"."""
    from orders.selectors import orders_of_day

    def describe(order) -> str:
        to = next_status(order)
        if to is None:
            return ""
        return f"#{order.number} {status_label(order.status)} → {status_label(to)}"

    orders = list(orders_of_day().exclude(status__in=["DELIVERED", "RATED", "CANCELLED"]))
    return _listing(list(reversed(orders)), describe)


def cancellable_text() -> str:
    from orders.selectors import orders_of_day

    orders = list(orders_of_day().filter(status__in=CANCELLABLE))
    return _listing(
        list(reversed(orders)),
        lambda order: f"#{order.number} {status_label(order.status)} · {_who(order)}",
    )


def order_move(*, order_id: int, to: str, actor_label: str, note: str) -> str:
    """Move the order with `order_transition` as the owner; "" on success, else why not."""
    from orders.services import IllegalTransition, OrderError, order_transition

    try:
        order_transition(
            order_id=order_id, to=to, actor_kind="owner", actor_label=actor_label, note=note
        )
    except IllegalTransition as error:
        return _("The order is %(status)s now, so it cannot become %(to)s. Nothing changed.") % {
            "status": status_label(error.current),
            "to": status_label(error.requested),
        }
    except OrderError:
        return _("The order could not be changed. Nothing changed.")
    return ""


def summary_text() -> str:
    from orders.selectors import orders_summary

    figures = orders_summary()
    rating = figures.get("average_rating")
    return "\n".join(
        [
            _("Today's summary:"),
            _("Orders: %(n)d") % {"n": figures["count"]},
            _("Revenue: %(amount)s")
            % {"amount": _money(figures["revenue_minor"], figures["currency"])},
            _("Average rating: %(rating)s")
            % {"rating": f"{rating:.1f} ★" if rating is not None else "—"},
            _("Waiting for the kitchen: %(n)d") % {"n": figures["waiting"]},
        ]
    )


def bot_paused() -> bool:
    from orders.models import OrderSettings

    return bool(OrderSettings.current().bot_paused)


def bot_pause_set(*, paused: bool, actor_label: str) -> None:
    from orders.services import ordering_bot_pause_set

    ordering_bot_pause_set(paused=paused, actor_kind="owner", actor_label=actor_label)
