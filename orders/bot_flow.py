"""The ordering bot's conversation, as a pure function: (state, context, text) -> turn.

No database here: orders/bot_turns.py loads the conversation and the menu, calls
`bot_step`, stores the new state, sends the replies and performs the action. Replies are
built in the active language (the caller wraps the call in `translation.override`).

States: idle -> items (choosing; "item x quantity", or one item then "how many?" in
`quantity`) -> fulfilment (after "done": cart review, delivery or pickup?) -> address
(delivery only) -> confirm -> idle (the order is created and confirmed: action
"confirm_order"). "menu", "cart", "cancel", "help" and "human" work in every state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from orders.bot_parsing import command_of, number_of, selections_of, word_of
from orders.models import BotState
from orders.money import money_format
from orders.services import MAX_QUANTITY

MIN_ADDRESS_LENGTH = 4


@dataclass(frozen=True)
class MenuEntry:
    number: int  # what the customer types
    item_id: int
    name: str  # in the customer's language
    price_minor: int
    category: str = ""


@dataclass
class BotInput:
    state: str
    context: dict
    text: str
    menu: list[MenuEntry]
    currency: str
    business_name: str = ""
    customer_name: str = ""


@dataclass
class Turn:
    state: str
    context: dict
    replies: list[str] = field(default_factory=list)
    action: str | None = None  # "confirm_order" | "human" | None


# --- texts -----------------------------------------------------------------------------


def menu_text(menu: list[MenuEntry], currency: str) -> str:
    if not menu:
        return _("Sorry, there is nothing on the menu right now.")
    lines = [_("Our menu:")]
    category = None
    for entry in menu:
        if entry.category and entry.category != category:
            category = entry.category
            lines.append(f"*{category}*")
        lines.append(f"{entry.number}. {entry.name} — {money_format(entry.price_minor, currency)}")
    lines.append(
        _(
            'Send the item number and how many, e.g. "1 x 2" for two of item 1. '
            'Write "done" when you are finished.'
        )
    )
    return "\n".join(lines)


def cart_total(cart: list[dict], menu: list[MenuEntry]) -> int:
    by_id = {entry.item_id: entry for entry in menu}
    return sum(
        line["quantity"] * by_id[line["item_id"]].price_minor
        for line in cart
        if line["item_id"] in by_id
    )


def cart_text(cart: list[dict], menu: list[MenuEntry], currency: str) -> str:
    by_id = {entry.item_id: entry for entry in menu}
    lines = [_("Your cart:")]
    for line in cart:
        entry = by_id.get(line["item_id"])
        if entry is None:
            continue
        total = money_format(line["quantity"] * entry.price_minor, currency)
        lines.append(f"{line['quantity']} × {entry.name} — {total}")  # noqa: RUF001
    lines.append(_("Total: %(total)s") % {"total": money_format(cart_total(cart, menu), currency)})
    return "\n".join(lines)


def help_text() -> str:
    return _(
        "I take orders here. Send an item number to add it to your cart.\n"
        '"menu" shows the menu, "cart" your cart, "done" finishes choosing, '
        '"cancel" drops the order, "human" calls a person from our team.'
    )


def _choose_hint() -> str:
    return _('Send an item number (e.g. "2" or "2 x 3"), "done" to finish, or "help".')


def _fulfilment_question() -> str:
    return _("Delivery or pickup? Reply 1 for delivery or 2 for pickup.")


def _confirm_text(context: dict, menu: list[MenuEntry], currency: str) -> str:
    lines = [cart_text(context.get("cart", []), menu, currency)]
    if context.get("fulfilment") == "delivery":
        lines.append(_("Delivery to: %(address)s") % {"address": context.get("address", "")})
    else:
        lines.append(_("Pickup from us"))
    lines.append(_('Reply "yes" to confirm the order, or "no" to change it.'))
    return "\n".join(lines)


# --- the step --------------------------------------------------------------------------


def bot_step(given: BotInput) -> Turn:
    """One customer message -> the new state, context, replies and action."""
    context = dict(given.context)
    context["cart"] = [dict(line) for line in context.get("cart", [])]
    state = given.state or BotState.IDLE
    command = command_of(given.text)

    if command == "human":
        return Turn(state, context, [_("A person from our team will answer you here soon.")],
                    action="human")  # fmt: skip
    if command == "help":
        return Turn(state, context, [help_text()])
    if command == "cancel":
        if state == BotState.IDLE and not context["cart"]:
            return Turn(state, {}, [_('There is no order to cancel. Write "menu" to order.')])
        return Turn(
            BotState.IDLE, {}, [_("Your order was cancelled. Write to us any time to order.")]
        )
    if command == "menu":
        return Turn(
            BotState.ITEMS, _without_pending(context), [menu_text(given.menu, given.currency)]
        )
    if command == "cart":
        return Turn(BotState.ITEMS, _without_pending(context), [_cart_or_empty(context, given)])

    if state == BotState.IDLE:
        greeting = (
            _("Hello %(name)s, welcome to %(business)s!")
            % {"name": given.customer_name, "business": given.business_name}
            if given.customer_name
            else _("Hello, welcome to %(business)s!") % {"business": given.business_name}
        )
        return Turn(BotState.ITEMS, {"cart": context["cart"]},
                    [greeting + "\n" + menu_text(given.menu, given.currency)])  # fmt: skip
    if state == BotState.QUANTITY:
        return _quantity(given, context)
    if state == BotState.FULFILMENT:
        return _fulfilment(given, context)
    if state == BotState.ADDRESS:
        address = " ".join(given.text.split())
        if len(address) < MIN_ADDRESS_LENGTH or not any(c.isalpha() for c in address):
            return Turn(state, context, [_("Please send the full delivery address.")])
        context["address"] = address[:300]
        return Turn(BotState.CONFIRM, context, [_confirm_text(context, given.menu, given.currency)])
    if state == BotState.CONFIRM:
        answer = word_of(given.text, "yes", "no") or {1: "yes", 2: "no"}.get(number_of(given.text))
        if answer == "yes":
            return Turn(BotState.IDLE, {}, [], action="confirm_order")
        if answer == "no":
            return Turn(BotState.ITEMS, context, [
                _cart_or_empty(context, given) + "\n" + _choose_hint()
            ])  # fmt: skip
        return Turn(state, context, [_('Reply "yes" to confirm the order, or "no" to change it.')])
    return _items(given, context)


def _without_pending(context: dict) -> dict:
    context.pop("pending_item", None)
    return context


def _cart_or_empty(context: dict, given: BotInput) -> str:
    if not context["cart"]:
        return _("Your cart is empty.") + "\n" + menu_text(given.menu, given.currency)
    return (
        cart_text(context["cart"], given.menu, given.currency)
        + "\n"
        + _('Send more items, or "done" to continue.')
    )


def _add(context: dict, entry: MenuEntry, quantity: int) -> None:
    for line in context["cart"]:
        if line["item_id"] == entry.item_id:
            line["quantity"] = min(MAX_QUANTITY, line["quantity"] + quantity)
            return
    context["cart"].append({"item_id": entry.item_id, "quantity": quantity})


def _items(given: BotInput, context: dict) -> Turn:
    if word_of(given.text, "done"):
        if not context["cart"]:
            return Turn(BotState.ITEMS, context, [_("Your cart is empty.") + "\n" + _choose_hint()])
        review = cart_text(context["cart"], given.menu, given.currency)
        return Turn(BotState.FULFILMENT, context, [review + "\n" + _fulfilment_question()])
    selections = selections_of(given.text)
    if selections is None:
        return Turn(
            BotState.ITEMS, context, [_("Sorry, I did not understand.") + "\n" + _choose_hint()]
        )
    by_number = {entry.number: entry for entry in given.menu}
    for selection in selections:
        if selection.item not in by_number:
            return Turn(BotState.ITEMS, context, [
                _("There is no item %(number)s on the menu. Choose 1 to %(last)s.")
                % {"number": selection.item, "last": len(given.menu)}
            ])  # fmt: skip
        if selection.quantity is not None and not 1 <= selection.quantity <= MAX_QUANTITY:
            return Turn(BotState.ITEMS, context, [_quantity_hint()])
    if len(selections) == 1 and selections[0].quantity is None:
        entry = by_number[selections[0].item]
        context["pending_item"] = entry.item_id
        return Turn(BotState.QUANTITY, context, [
            _("How many %(name)s?") % {"name": entry.name}
        ])  # fmt: skip
    for selection in selections:
        _add(context, by_number[selection.item], selection.quantity)
    return Turn(BotState.ITEMS, context, [_added(context, given)])


def _added(context: dict, given: BotInput) -> str:
    return _("Added to your cart.") + "\n" + _cart_or_empty(context, given)


def _quantity_hint() -> str:
    return _("How many? Send a number from 1 to %(max)s.") % {"max": MAX_QUANTITY}


def _quantity(given: BotInput, context: dict) -> Turn:
    quantity = number_of(given.text)
    pending = {entry.item_id: entry for entry in given.menu}.get(context.get("pending_item"))
    if pending is None:
        return _items(given, _without_pending(context))
    if quantity is None:
        selections = selections_of(given.text)
        if selections and all(s.quantity is not None for s in selections):
            return _items(given, _without_pending(context))
        if word_of(given.text, "done"):
            return _items(given, _without_pending(context))
        return Turn(BotState.QUANTITY, context, [_quantity_hint()])
    if not 1 <= quantity <= MAX_QUANTITY:
        return Turn(BotState.QUANTITY, context, [_quantity_hint()])
    _without_pending(context)
    _add(context, pending, quantity)
    return Turn(BotState.ITEMS, context, [_added(context, given)])


def _fulfilment(given: BotInput, context: dict) -> Turn:
    choice = word_of(given.text, "delivery", "pickup") or {1: "delivery", 2: "pickup"}.get(
        number_of(given.text)
    )
    if choice == "delivery":
        context["fulfilment"] = "delivery"
        return Turn(BotState.ADDRESS, context, [_("Where should we deliver? Send the address.")])
    if choice == "pickup":
        context["fulfilment"] = "pickup"
        context.pop("address", None)
        return Turn(BotState.CONFIRM, context, [_confirm_text(context, given.menu, given.currency)])
    if word_of(given.text, "done"):
        return Turn(BotState.FULFILMENT, context, [_fulfilment_question()])
    if selections_of(given.text):  # more items after all
        return _items(given, context)
    return Turn(BotState.FULFILMENT, context, [_fulfilment_question()])
