"""The dashboard's live pages: the message log, the orders board and the inbox.

Thin views: they parse input, call the messaging and orders services, and render. Every
page is server-rendered and complete without JavaScript; its script (static/js/log.js,
board.js, inbox.js) keeps it live from the `dashboard:event` CustomEvents that
static/js/live.js dispatches for the tenant's websocket, and fetches the fragments
below (`?partial=...`) to refresh what it missed after a reconnect.

Every query runs in the request tenant's schema (django-tenants' middleware set it from
the host); sessions, which live in the public schema, are always filtered by tenant.
"""

from __future__ import annotations

import mimetypes
import re
import uuid
from datetime import timedelta

from django import forms
from django.contrib import messages as django_messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db.models import prefetch_related_objects
from django.http import (
    FileResponse,
    Http404,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from messaging.models import Message
from sessions_app.models import WhatsAppSession
from sessions_app.providers.base import MEDIA_KINDS

PAGE_SIZE = 50
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def tenant_sessions(request) -> list[WhatsAppSession]:
    return list(WhatsAppSession.objects.filter(tenant=request.tenant).order_by("name"))


def _validation_text(error: ValidationError) -> str:
    return " ".join(str(message) for message in error.messages)


# --- live log -------------------------------------------------------------------------


class LogFilterForm(forms.Form):
    session = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    direction = forms.ChoiceField(
        required=False,
        choices=[("", _("All")), ("in", _("Received")), ("out", _("Sent"))],
    )
    before = forms.CharField(required=False, max_length=200)

    def __init__(self, *args, sessions, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["session"].choices = [("", _("All sessions"))] + [
            (s.pk, s.name) for s in sessions
        ]


def _log_page(filters: dict) -> tuple[list[Message], str | None]:
    from messaging.conversations import messages_page

    messages, cursor = messages_page(
        session_id=filters.get("session"),
        direction=filters.get("direction") or None,
        before=filters.get("before") or None,
        limit=PAGE_SIZE,
    )
    prefetch_related_objects(messages, "conversation__contact")
    return messages, cursor


@login_required
@require_GET
def log(request):
    """The live message log: newest first, filtered by session and direction, older
    history by keyset pages (`?before=<cursor>`)."""
    sessions = tenant_sessions(request)
    form = LogFilterForm(request.GET or None, sessions=sessions)
    messages, cursor, error, status = [], None, "", 200
    if form.is_bound and not form.is_valid():
        error, status = _("Those filters are not valid."), 400
    else:
        filters = form.cleaned_data if form.is_bound else {}
        try:
            messages, cursor = _log_page(filters)
        except ValidationError as problem:
            error, status = _validation_text(problem), 400
    names = {s.pk: s.name for s in sessions}
    for message in messages:
        message.session_name = names.get(message.session_id, "")
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    context = {
        "tenant": request.tenant,
        "form": form,
        "messages_page": messages,
        "next_cursor": cursor,
        "error": error,
        "media_kinds": sorted(MEDIA_KINDS),
        "log_config": {
            "session": filters.get("session"),
            "direction": filters.get("direction") or "",
            "sessions": {str(pk): name for pk, name in names.items()},
            "mediaKinds": sorted(MEDIA_KINDS),
            "mediaUrl": reverse("dashboard:message-media", args=[_ZERO_UUID]),
            "placeholder": _ZERO_UUID,
            "t": {
                "in": gettext("Received"),
                "out": gettext("Sent"),
                "image": gettext("image"),
                "older": gettext("Older messages"),
                "status": {
                    "received": gettext("received"),
                    "queued": gettext("queued"),
                    "sent": gettext("sent"),
                    "delivered": gettext("delivered"),
                    "read": gettext("read"),
                    "failed": gettext("failed"),
                    "suppressed": gettext("not sent"),
                },
            },
        },
    }
    template = "dashboard/log_rows.html" if request.GET.get("partial") else "dashboard/log.html"
    return render(request, template, context, status=status)


@login_required
@require_GET
def message_media(request, public_id):
    """A message's media file (stored copy, or where it is fetched from), for the log's
    thumbnails: only in this tenant's schema, only for a signed-in user."""
    message = Message.objects.filter(public_id=public_id).first()
    if message is None or message.kind not in MEDIA_KINDS:
        raise Http404
    if message.media_file and default_storage.exists(message.media_file):
        content_type = (
            message.media_mime_type
            or mimetypes.guess_type(message.media_file)[0]
            or "application/octet-stream"
        )
        response = FileResponse(default_storage.open(message.media_file), content_type=content_type)
        response["Cache-Control"] = "private, max-age=3600"
        response["X-Content-Type-Options"] = "nosniff"
        return response
    if message.media_url.startswith(("https://", "http://")):
        return HttpResponseRedirect(message.media_url)
    raise Http404


# --- orders board ---------------------------------------------------------------------

# The board's columns, in the order an order moves (drafts are carts still being built).
BOARD_COLUMNS = [
    ("CONFIRMED", _("New")),
    ("PREPARING", _("Preparing")),
    ("OUT_FOR_DELIVERY", _("Out for delivery")),
    ("DELIVERED", _("Delivered")),
    ("RATED", _("Rated")),
    ("CANCELLED", _("Cancelled")),
]
FINISHED_COLUMNS = ("DELIVERED", "RATED", "CANCELLED")
STATUS_NAMES = dict(BOARD_COLUMNS) | {"DRAFT": _("Draft"), "CONFIRMED": _("Confirmed")}
# What the "next" button says, by the status it moves the order to.
ADVANCE_LABELS = {
    "CONFIRMED": _("Confirm"),
    "PREPARING": _("Start preparing"),
    "OUT_FOR_DELIVERY": _("Send out"),
    "DELIVERED": _("Delivered"),
}


def _actor(request) -> tuple[str, str]:
    return ("owner" if request.user.role == "owner" else "staff"), request.user.email


def _card(order, *, late_minutes: int):
    """The order with what its card shows: next step, whether it can be cancelled, the
    moment it counts from, and (still CONFIRMED) when it becomes late."""
    from orders.money import money_format
    from orders.services import allowed_transitions, order_next_status

    order.next_status = order_next_status(order)
    order.next_label = ADVANCE_LABELS.get(order.next_status, "")
    if order.next_status == "DELIVERED" and order.fulfilment == "pickup":
        order.next_label = _("Picked up")
    order.can_cancel = "CANCELLED" in allowed_transitions(order)
    order.total_display = money_format(order.total_minor, order.currency)
    order.since = order.confirmed_at or order.created_at
    order.late_at = (
        order.confirmed_at + timedelta(minutes=late_minutes)
        if order.status == "CONFIRMED" and order.confirmed_at
        else None
    )
    order.status_name = STATUS_NAMES.get(order.status, order.status)
    language = (get_language() or "he")[:2]
    for line in order.lines.all():
        # The menu's name in the reader's language; the name as ordered if it is gone.
        line.display_name = line.menu_item.name_in(language) if line.menu_item else line.name
    return order


def _board_context(request) -> dict:
    from orders.models import OrderSettings
    from orders.money import money_format
    from orders.selectors import orders_of_day, orders_summary

    late_minutes = OrderSettings.current().confirmed_too_long_minutes
    rows = orders_of_day().prefetch_related("lines__menu_item")
    orders = [_card(order, late_minutes=late_minutes) for order in rows]
    columns = []
    for status, name in BOARD_COLUMNS:
        cards = [o for o in orders if o.status == status]
        # Work in hand oldest first (the kitchen's queue); finished work newest first.
        cards.sort(key=lambda o: o.since, reverse=status in FINISHED_COLUMNS)
        columns.append({"status": status, "name": name, "orders": cards})
    summary = orders_summary()
    summary["revenue_display"] = money_format(summary["revenue_minor"], summary["currency"])
    return {
        "tenant": request.tenant,
        "columns": columns,
        "summary": summary,
        "board_config": {
            "cardUrl": reverse("dashboard:order-card", args=[0]),
            "finished": list(FINISHED_COLUMNS),
            "t": {
                "minutes": gettext("%(n)s min"),
                "hours": gettext("%(h)s h %(m)s min"),
                "justNow": gettext("just now"),
                "newOrder": gettext("New order #%(number)s"),
                "soundOn": gettext("Sound on"),
                "soundOff": gettext("Sound off"),
                "failed": gettext("That did not work: try again."),
            },
        },
    }


@login_required
@require_GET
def orders_board(request):
    """Today's orders, a column per status, moved with a click; live from `order.updated`."""
    context = _board_context(request)
    partial = request.GET.get("partial")
    template = "dashboard/board_columns.html" if partial == "board" else "dashboard/board.html"
    return render(request, template, context)


@login_required
@require_GET
def order_card(request, pk: int):
    """One order's card and today's counts, for a board that heard `order.updated`.
    404 when the order is not on today's board (a draft, another day)."""
    from orders.models import OrderSettings
    from orders.money import money_format
    from orders.selectors import orders_of_day, orders_summary

    order = orders_of_day().prefetch_related("lines__menu_item").filter(pk=pk).first()
    if order is None:
        raise Http404
    summary = orders_summary()
    summary["revenue_display"] = money_format(summary["revenue_minor"], summary["currency"])
    context = {
        "order": _card(order, late_minutes=OrderSettings.current().confirmed_too_long_minutes),
        "summary": summary,
    }
    return render(request, "dashboard/board_card_fragment.html", context)


def _wants_json(request) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


@login_required
@require_POST
def order_move(request, pk: int):
    """Advance an order, or cancel it with a reason, through `order_transition`.

    Two people clicking the same button: one moves it, the other is told where it is now
    (409). Plain form posts come back to the board with a message."""
    from orders.models import Order
    from orders.services import IllegalTransition, OrderError, order_transition

    to = request.POST.get("to", "")
    note = request.POST.get("note", "").strip()
    actor_kind, actor_label = _actor(request)
    order = Order.objects.filter(pk=pk).only("number").first()
    if order is None:
        return _move_answer(request, 404, _("There is no such order."))
    if to not in STATUS_NAMES or to == "DRAFT":
        return _move_answer(request, 400, _("There is no such step for an order."))
    if to == "CANCELLED" and not note:
        return _move_answer(
            request, 400, _("Write the reason for cancelling: the customer is told.")
        )
    try:
        moved = order_transition(
            order_id=pk, to=to, actor_kind=actor_kind, actor_label=actor_label, note=note
        )
    except IllegalTransition as refused:
        # Mostly someone else moved it first: say where it is now.
        text = _("Order #%(number)s is %(status)s now: it cannot be moved to %(to)s.") % {
            "number": order.number,
            "status": STATUS_NAMES.get(refused.current, refused.current),
            "to": STATUS_NAMES.get(to, to),
        }
        return _move_answer(request, 409, text)
    except OrderError as problem:
        return _move_answer(request, 400, str(problem))
    text = _("Order #%(number)s: %(status)s.") % {
        "number": moved.number,
        "status": STATUS_NAMES.get(moved.status, moved.status),
    }
    return _move_answer(request, 200, text, status_now=moved.status)


def _move_answer(request, code: int, text: str, **extra):
    if _wants_json(request):
        return JsonResponse({"ok": code == 200, "message": str(text), **extra}, status=code)
    (django_messages.success if code == 200 else django_messages.error)(request, text)
    return redirect("dashboard:orders")


# --- inbox ----------------------------------------------------------------------------


INBOX_LIMIT = 100  # the most recent; older ones are found with the search box
SEARCH_MAX_LENGTH = 100


def _session_of(request, session_id: int) -> WhatsAppSession | None:
    return WhatsAppSession.objects.filter(tenant=request.tenant, pk=session_id).first()


def _conversation(pk: int):
    from messaging.models import Conversation

    return get_object_or_404(Conversation.objects.select_related("contact"), pk=pk)


def _inbox_context(request, *, conversation=None, before=None) -> dict:
    from messaging.conversations import conversation_messages_page, conversations_list
    from messaging.outbound import message_dead_letters

    sessions = tenant_sessions(request)
    names = {s.pk: s.name for s in sessions}
    search = request.GET.get("q", "").strip()[:SEARCH_MAX_LENGTH]
    conversations = list(conversations_list(search=search)[:INBOX_LIMIT])
    for item in conversations:
        item.session_name = names.get(item.session_id, "")
    context = {
        "tenant": request.tenant,
        "conversations": conversations,
        "search": search,
        "list_is_cut": len(conversations) == INBOX_LIMIT,
        "inbox_limit": INBOX_LIMIT,
        "conversation": conversation,
        "dead_letter_count": message_dead_letters().count(),
        "media_kinds": sorted(MEDIA_KINDS),
    }
    if conversation is not None:
        thread, cursor = conversation_messages_page(
            conversation=conversation, before=before, limit=PAGE_SIZE
        )
        context.update(
            thread=list(reversed(thread)),
            older_cursor=cursor,
            session=_session_of(request, conversation.session_id),
            reply_key=uuid.uuid4().hex,
            inbox_config={
                "conversation": conversation.pk,
                "readUrl": reverse("dashboard:inbox-read", args=[conversation.pk]),
                "t": _tick_texts(),
            },
        )
        conversation.session_name = names.get(conversation.session_id, "")
    return context


def _tick_texts() -> dict:
    return {
        "received": gettext("received"),
        "queued": gettext("queued"),
        "sent": gettext("sent"),
        "delivered": gettext("delivered"),
        "read": gettext("read"),
        "failed": gettext("failed"),
        "suppressed": gettext("not sent"),
    }


@login_required
@require_GET
def inbox(request):
    """Conversations, newest first, with their unread counts."""
    context = _inbox_context(request)
    if request.GET.get("partial") == "list":
        return render(request, "dashboard/inbox_list.html", context)
    return render(request, "dashboard/inbox.html", context)


@login_required
@require_GET
def inbox_thread(request, pk: int):
    """One conversation's thread (marked read as it is opened), older pages by keyset."""
    from messaging.conversations import conversation_mark_read

    conversation = _conversation(pk)
    before = request.GET.get("before") or None
    try:
        context = _inbox_context(request, conversation=conversation, before=before)
    except ValidationError as problem:
        context = _inbox_context(request, conversation=conversation)
        context["error"] = _validation_text(problem)
        return render(request, "dashboard/inbox.html", context, status=400)
    if before is None:
        conversation_mark_read(conversation=conversation)
        for item in context["conversations"]:
            if item.pk == conversation.pk:
                item.unread_count = 0
    if request.GET.get("partial") == "thread":
        return render(request, "dashboard/inbox_thread.html", context)
    return render(request, "dashboard/inbox.html", context)


@login_required
@require_POST
def inbox_read(request, pk: int):
    from messaging.conversations import conversation_mark_read

    conversation = conversation_mark_read(conversation=_conversation(pk))
    return JsonResponse({"ok": True, "unread_count": conversation.unread_count})


@login_required
@require_POST
def inbox_reply(request, pk: int):
    """A reply from the dashboard, through the outbound pipeline (`message_send`); the
    form's key makes a double submit send once."""
    from messaging.outbound import message_send

    conversation = _conversation(pk)
    text = request.POST.get("text", "").strip()
    key = request.POST.get("key", "")
    session = _session_of(request, conversation.session_id)
    problem = ""
    if not text:
        problem = _("Write a message first.")
    elif session is None:
        problem = _("This conversation's session no longer exists.")
    elif not re.fullmatch(r"[0-9a-f]{32}", key):
        problem = _("This form is out of date: reload the page and try again.")
    if not problem:
        try:
            message = message_send(
                session=session,
                to=conversation.contact.phone,
                text=text,
                idempotency_key=f"dashboard-reply:{conversation.pk}:{key}",
            )
        except ValidationError as error:
            problem = _validation_text(error)
    if problem:
        if _wants_json(request):
            return JsonResponse({"ok": False, "message": str(problem)}, status=400)
        django_messages.error(request, problem)
        return redirect("dashboard:inbox-thread", pk=pk)
    if _wants_json(request):
        return JsonResponse(
            {"ok": True, "id": str(message.public_id), "status": message.status,
             "key": uuid.uuid4().hex}
        )  # fmt: skip
    return redirect("dashboard:inbox-thread", pk=pk)


@login_required
@require_POST
def inbox_takeover(request, pk: int):
    """Take the conversation over from the bot (`human=1`) or hand it back (`human=0`)."""
    from messaging.conversations import conversation_takeover_set

    human = request.POST.get("human")
    if human not in ("0", "1"):
        return HttpResponseBadRequest(_("Say human=1 (take over) or human=0 (hand back)."))
    conversation = conversation_takeover_set(conversation=_conversation(pk), human=human == "1")
    if _wants_json(request):
        return JsonResponse({"ok": True, "human_takeover": conversation.human_takeover})
    return redirect("dashboard:inbox-thread", pk=pk)


@login_required
@require_GET
def dead_letters(request):
    """Messages that failed after their last try, newest first, each with a retry."""
    from messaging.outbound import message_dead_letters

    sessions = {s.pk: s.name for s in tenant_sessions(request)}
    letters = list(message_dead_letters()[:INBOX_LIMIT])
    for letter in letters:
        letter.session_name = sessions.get(letter.session_id, "")
    context = {"tenant": request.tenant, "letters": letters}
    if request.GET.get("partial"):
        return render(request, "dashboard/inbox_dead_letters_fragment.html", context)
    return render(request, "dashboard/inbox_dead_letters.html", context)


@login_required
@require_POST
def dead_letter_retry(request, public_id):
    from messaging.outbound import message_retry

    message = get_object_or_404(Message, public_id=public_id)
    try:
        message_retry(message=message)
    except ValidationError as error:
        text = _validation_text(error)
        if _wants_json(request):
            return JsonResponse({"ok": False, "message": text}, status=409)
        django_messages.error(request, text)
    else:
        if _wants_json(request):
            return JsonResponse({"ok": True})
        django_messages.success(request, _("Queued to be sent again."))
    return redirect("dashboard:dead-letters")


# --- routes (included by dashboard/urls.py, beside `log`, `orders` and `inbox`) ---------

urlpatterns = [
    path("log/media/<uuid:public_id>/", message_media, name="message-media"),
    path("orders/<int:pk>/card/", order_card, name="order-card"),
    path("orders/<int:pk>/move/", order_move, name="order-move"),
    path("inbox/dead-letters/", dead_letters, name="dead-letters"),
    path("inbox/dead-letters/<uuid:public_id>/retry/", dead_letter_retry, name="dead-letter-retry"),
    path("inbox/<int:pk>/", inbox_thread, name="inbox-thread"),
    path("inbox/<int:pk>/read/", inbox_read, name="inbox-read"),
    path("inbox/<int:pk>/reply/", inbox_reply, name="inbox-reply"),
    path("inbox/<int:pk>/takeover/", inbox_takeover, name="inbox-takeover"),
]
