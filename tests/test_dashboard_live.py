"""The dashboard's live pages through Django's test client: the message log, the orders
board and the inbox -- pages, filters, keyset paging, permissions, tenant isolation.

The rows are real (PostgreSQL, committed through the real services); what the pages do
live in a browser is in tests/test_browser_dashboard.py, the websocket in
tests/test_dashboard_live_websocket.py.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from messaging.inbound import inbound_receive
from messaging.models import Message
from messaging.outbound import message_send
from sessions_app.models import WhatsAppSession
from sessions_app.providers.base import InboundMessage, MessageKind
from sessions_app.services import session_create
from tests.conftest import OWNER_PASSWORD, host_of

User = get_user_model()


# --- helpers --------------------------------------------------------------------------


def signed_in(tenant, *, role: str = "staff") -> Client:
    """A test client on the tenant's host, signed in as a new user with `role`."""
    email = f"{role}-{uuid.uuid4().hex[:6]}@{tenant.slug}.example.com"
    with schema_context(tenant.schema_name):
        User.objects.create_user(email=email, password=OWNER_PASSWORD, role=role)
        client = Client(HTTP_HOST=host_of(tenant))
        assert client.login(email=email, password=OWNER_PASSWORD)
    return client


def sandbox(tenant, name: str = "Front desk") -> WhatsAppSession:
    return session_create(tenant=tenant, name=name, provider="sandbox")


def received(session, text: str, *, phone: str = "+972501111111", name: str = "Dana", **extra):
    inbound = InboundMessage(
        provider_message_id=f"in-{uuid.uuid4().hex}",
        chat=phone,
        sender=phone,
        timestamp=timezone.now(),
        push_name=name,
        text=text,
        **extra,
    )
    return inbound_receive(session=session, inbound=inbound).message


def sent(session, text: str, *, to: str = "+972501111111") -> Message:
    with schema_context(session.tenant.schema_name):
        return message_send(session=session, to=to, text=text)


def page(client: Client, path: str, **params):
    response = client.get(path, params)
    return response, response.content.decode()


def row_ids(html: str) -> list[str]:
    return re.findall(r'<li class="log-row[^"]*" data-id="([0-9a-f-]+)"', html)


# --- live log -------------------------------------------------------------------------


def test_log_needs_a_signed_in_user(make_tenant):
    tenant = make_tenant()
    response = Client(HTTP_HOST=host_of(tenant)).get("/log/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_log_shows_both_directions_newest_first_with_contact_and_tick(make_tenant):
    # Given a customer's message and the business's answer
    tenant = make_tenant()
    session = sandbox(tenant)
    question = received(session, "Do you deliver to Haifa?", name="Dana Levi")
    answer = sent(session, "Yes, until 22:00")

    # When staff (not only the owner) open the log
    response, html = page(signed_in(tenant, role="staff"), "/log/")

    # Then both are there, newest first, with direction, contact, text and status tick
    assert response.status_code == 200
    assert row_ids(html) == [str(answer.public_id), str(question.public_id)]
    assert 'data-direction="out"' in html and 'data-direction="in"' in html
    assert "Dana Levi" in html and "+972501111111" in html
    assert "Do you deliver to Haifa?" in html and "Yes, until 22:00" in html
    assert 'data-tick="queued"' in html and 'data-tick="received"' in html
    assert "Front desk" in html  # the session's name


def test_log_filters_by_session_and_direction(make_tenant):
    tenant = make_tenant()
    front, delivery = sandbox(tenant, "Front desk"), sandbox(tenant, "Delivery line")
    a = received(front, "front in")
    b = sent(front, "front out")
    c = received(delivery, "delivery in", phone="+972502222222")
    client = signed_in(tenant)

    _, html = page(client, "/log/", session=front.pk)
    assert row_ids(html) == [str(b.public_id), str(a.public_id)]

    _, html = page(client, "/log/", direction="in")
    assert row_ids(html) == [str(c.public_id), str(a.public_id)]

    _, html = page(client, "/log/", session=delivery.pk, direction="out")
    assert row_ids(html) == []
    assert "No messages yet." in html or "אין" in html


def test_log_pages_older_history_by_keyset_without_gaps_or_repeats(make_tenant):
    # Given more messages than one page holds
    tenant = make_tenant()
    session = sandbox(tenant)
    stored = [received(session, f"message {n}") for n in range(57)]
    client = signed_in(tenant)

    # When the log is read page after page through its "older" link
    seen, html = [], page(client, "/log/")[1]
    pages = 0
    while True:
        pages += 1
        seen += row_ids(html)
        older = re.search(r'id="log-older" href="\?([^"]+)"', html)
        if not older:
            break
        before = re.search(r"before=([^&\"]+)", older.group(1).replace("&amp;", "&")).group(1)
        from urllib.parse import unquote

        html = page(client, "/log/", before=unquote(before))[1]

    # Then every message shows up exactly once, newest first, over two pages
    assert pages == 2
    assert seen == [str(m.public_id) for m in reversed(stored)]


def test_log_partial_is_a_fragment_with_the_next_cursor(make_tenant):
    tenant = make_tenant()
    session = sandbox(tenant)
    for n in range(52):
        received(session, f"m{n}")
    response, html = page(signed_in(tenant), "/log/", partial=1)
    assert response.status_code == 200
    assert html.startswith('<div id="log-fragment" data-next="')
    assert "<html" not in html
    assert len(row_ids(html)) == 50
    cursor = re.search(r'data-next="([^"]+)"', html).group(1)
    response, html = page(signed_in(tenant), "/log/", partial=1, before=cursor)
    assert len(row_ids(html)) == 2 and 'data-next=""' in html


@pytest.mark.parametrize(
    "params",
    [{"before": "not-a-cursor"}, {"direction": "sideways"}, {"session": "abc"}],
    ids=["bad cursor", "bad direction", "bad session"],
)
def test_log_answers_bad_filters_with_a_clear_400(make_tenant, params):
    tenant = make_tenant()
    sandbox(tenant)
    response, html = page(signed_in(tenant), "/log/", **params)
    assert response.status_code == 400
    assert 'role="alert"' in html


def test_log_never_shows_another_tenants_messages_or_sessions(make_tenant):
    # Given two tenants, each with a message
    pizza, sushi = make_tenant(), make_tenant()
    pizza_session, sushi_session = sandbox(pizza, "Pizza line"), sandbox(sushi, "Sushi line")
    mine = received(pizza_session, "pizza please")
    theirs = received(sushi_session, "sushi please")
    client = signed_in(pizza)

    # Then pizza's log holds only pizza's message and session
    _, html = page(client, "/log/")
    assert row_ids(html) == [str(mine.public_id)]
    assert "sushi please" not in html and "Sushi line" not in html

    # And filtering by sushi's session id is refused, not answered with its messages
    response, html = page(client, "/log/", session=sushi_session.pk)
    assert response.status_code == 400
    assert str(theirs.public_id) not in html


def test_media_thumbnail_is_served_only_on_its_own_tenants_host(make_tenant, settings, tmp_path):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    settings.MEDIA_ROOT = str(tmp_path)
    pizza, sushi = make_tenant(), make_tenant()
    session = sandbox(pizza)
    photo = received(session, "look", kind=MessageKind.IMAGE)
    with schema_context(pizza.schema_name):
        path = default_storage.save(
            f"{pizza.schema_name}/{photo.public_id}.png", ContentFile(b"png")
        )
        Message.objects.filter(pk=photo.pk).update(media_file=path, media_mime_type="image/png")

    # The log shows a thumbnail pointing at the media view
    _, html = page(signed_in(pizza), "/log/")
    assert f'src="/log/media/{photo.public_id}/"' in html

    response = signed_in(pizza).get(f"/log/media/{photo.public_id}/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == b"png"

    # Another tenant's user, on its own host, finds nothing under that id
    assert signed_in(sushi).get(f"/log/media/{photo.public_id}/").status_code == 404
    # And nobody signed out sees it
    assert Client(HTTP_HOST=host_of(pizza)).get(f"/log/media/{photo.public_id}/").status_code == 302


# --- orders board ---------------------------------------------------------------------


def confirmed_order(tenant, session, *, name="Noa", phone="+972503333333", fulfilment="delivery"):
    """A customer's order, placed and confirmed, through the orders services."""
    from messaging.models import Contact
    from orders.services import menu_item_create, order_create, order_transition

    with schema_context(tenant.schema_name):
        item = menu_item_create(name_he="פלאפל", name_en="Falafel", price_minor=2800)
        contact, _ = Contact.objects.get_or_create(phone=phone, defaults={"push_name": name})
        order = order_create(
            contact=contact,
            session_id=session.pk,
            lines=[{"menu_item": item, "quantity": 2}],
            fulfilment=fulfilment,
            address="Herzl 1, Haifa" if fulfilment == "delivery" else "",
        )
        return order_transition(order_id=order.pk, to="CONFIRMED", actor_kind="customer")


def card_of(html: str, pk: int) -> str:
    match = re.search(rf'<article class="order-card[^"]*" id="order-{pk}".*?</article>', html, re.S)
    assert match, f"no card for order {pk}"
    return match.group(0)


def column_of(html: str, pk: int) -> str:
    for column in re.finditer(r'data-column="([A-Z_]+)"(.*?)</section>', html, re.S):
        if f'id="order-{pk}"' in column.group(2):
            return column.group(1)
    raise AssertionError(f"order {pk} is in no column")


def test_board_shows_todays_orders_in_their_columns_with_counts(make_tenant):
    # Given a confirmed delivery order of 2 falafel
    tenant = make_tenant()
    session = sandbox(tenant)
    order = confirmed_order(tenant, session, name="Noa Cohen")

    # When staff open the board
    response, html = page(signed_in(tenant, role="staff"), "/orders/")

    # Then its card is in the CONFIRMED column with number, customer, items, total, buttons
    assert response.status_code == 200
    assert column_of(html, order.pk) == "CONFIRMED"
    card = card_of(html, order.pk)
    assert f"#{order.number}" in card and "Noa Cohen" in card and "+972503333333" in card
    assert "2 \u00d7" in card and "פלאפל" in card
    assert "56.00" in card  # 2 x 28.00
    assert 'name="to" value="PREPARING"' in card and 'value="CANCELLED"' in card
    assert 'data-late-at="' in card  # a confirmed order will be late at a known time
    # And today's counts are on top
    assert re.search(r'data-figure="count">1<', html) and re.search(
        r'data-figure="waiting">1<', html
    )


def test_staff_advance_an_order_and_its_card_moves(make_tenant):
    tenant = make_tenant()
    session = sandbox(tenant)
    order = confirmed_order(tenant, session)
    client = signed_in(tenant, role="staff")

    # When staff click "start preparing" (a fetch from the board)
    response = client.post(
        f"/orders/{order.pk}/move/", {"to": "PREPARING"}, HTTP_X_REQUESTED_WITH="fetch"
    )

    # Then the order moved, recorded as staff's doing, and the board shows it there
    assert response.status_code == 200, response.content
    assert response.json()["ok"] is True and response.json()["status_now"] == "PREPARING"
    with schema_context(tenant.schema_name):
        from orders.models import OrderEvent

        event = OrderEvent.objects.filter(order_id=order.pk).latest("id")
        assert (event.to_status, event.actor_kind) == ("PREPARING", "staff")
        assert event.actor_label.startswith("staff-")
    _, html = page(client, "/orders/")
    assert column_of(html, order.pk) == "PREPARING"
    assert 'value="OUT_FOR_DELIVERY"' in card_of(html, order.pk)


def test_the_second_of_two_clicks_on_the_same_move_is_told_where_the_order_is(make_tenant):
    tenant = make_tenant()
    order = confirmed_order(tenant, sandbox(tenant))
    first, second = signed_in(tenant), signed_in(tenant)
    ok = first.post(f"/orders/{order.pk}/move/", {"to": "PREPARING"}, HTTP_X_REQUESTED_WITH="fetch")
    late = second.post(
        f"/orders/{order.pk}/move/", {"to": "PREPARING"}, HTTP_X_REQUESTED_WITH="fetch"
    )
    assert ok.status_code == 200
    assert late.status_code == 409
    assert f"#{order.number}" in late.json()["message"]


def test_cancelling_needs_a_reason_and_then_the_card_shows_it(make_tenant):
    tenant = make_tenant()
    order = confirmed_order(tenant, sandbox(tenant))
    client = signed_in(tenant)

    refused = client.post(f"/orders/{order.pk}/move/", {"to": "CANCELLED", "note": " "})
    assert refused.status_code == 302  # a plain form: back to the board with the message
    _, html = page(client, "/orders/")
    assert column_of(html, order.pk) == "CONFIRMED"
    assert 'class="flash' in html

    done = client.post(
        f"/orders/{order.pk}/move/",
        {"to": "CANCELLED", "note": "Out of falafel"},
        HTTP_X_REQUESTED_WITH="fetch",
    )
    assert done.status_code == 200
    _, html = page(client, "/orders/")
    assert column_of(html, order.pk) == "CANCELLED"
    assert "Out of falafel" in card_of(html, order.pk)
    assert "order-move" not in card_of(html, order.pk)  # nothing left to do with it


def test_an_unknown_move_is_a_clear_error_never_a_500(make_tenant):
    tenant = make_tenant()
    order = confirmed_order(tenant, sandbox(tenant))
    client = signed_in(tenant)
    for to in ("RATED", "FLYING", ""):
        response = client.post(
            f"/orders/{order.pk}/move/", {"to": to}, HTTP_X_REQUESTED_WITH="fetch"
        )
        assert response.status_code in (400, 409), (to, response.status_code)
        assert response.json()["ok"] is False
    assert client.post("/orders/999999/move/", {"to": "PREPARING"}).status_code == 302
    assert client.get("/orders/1/move/").status_code == 405


def test_order_card_fragment_is_the_card_and_the_counts(make_tenant):
    tenant = make_tenant()
    order = confirmed_order(tenant, sandbox(tenant))
    response, html = page(signed_in(tenant), f"/orders/{order.pk}/card/")
    assert response.status_code == 200
    assert html.startswith('<div id="card-fragment">')
    assert f'id="order-{order.pk}"' in html and 'id="board-summary"' in html
    assert signed_in(tenant).get("/orders/999999/card/").status_code == 404


def test_board_and_cards_never_show_another_tenants_orders(make_tenant):
    pizza, sushi = make_tenant(), make_tenant()
    theirs = confirmed_order(sushi, sandbox(sushi), name="Sushi Customer")
    client = signed_in(pizza)
    _, html = page(client, "/orders/")
    assert "Sushi Customer" not in html and '<article class="order-card' not in html
    # Order ids are per schema: the same pk in pizza's schema is not sushi's order
    response = client.get(f"/orders/{theirs.pk}/card/")
    assert response.status_code == 404
    moved = client.post(f"/orders/{theirs.pk}/move/", {"to": "PREPARING"})
    assert moved.status_code == 302
    with schema_context(sushi.schema_name):
        from orders.models import Order

        assert Order.objects.get(pk=theirs.pk).status == "CONFIRMED"


def test_a_late_order_is_marked(make_tenant):
    tenant = make_tenant()
    order = confirmed_order(tenant, sandbox(tenant))
    with schema_context(tenant.schema_name):
        from orders.models import Order

        Order.objects.filter(pk=order.pk).update(is_late=True)
    _, html = page(signed_in(tenant), "/orders/")
    assert 'class="order-card is-late"' in card_of(html, order.pk)


# --- inbox ----------------------------------------------------------------------------


def test_inbox_lists_conversations_newest_first_with_unread_counts(make_tenant):
    tenant = make_tenant()
    session = sandbox(tenant)
    received(session, "first", phone="+972504444444", name="Old Customer")
    received(session, "one", phone="+972505555555", name="New Customer")
    received(session, "two", phone="+972505555555", name="New Customer")

    response, html = page(signed_in(tenant, role="staff"), "/inbox/")

    assert response.status_code == 200
    assert html.index("New Customer") < html.index("Old Customer")
    counts = re.findall(r'class="unread-count badge"[^>]*>(\d+)<', html)
    assert counts == ["2", "1"]


def test_inbox_search_finds_a_conversation_by_name_or_number_and_says_when_the_list_is_cut(
    make_tenant, monkeypatch
):
    # Given three customers who wrote, and an inbox that shows only the two most recent
    tenant = make_tenant()
    session = sandbox(tenant)
    received(session, "hi", phone="+972504444444", name="Old Customer")
    received(session, "hello", phone="+972505555555", name="Yossi Levi")
    received(session, "shalom", phone="+972506666666", name="Rina")
    monkeypatch.setattr("dashboard.live_views.INBOX_LIMIT", 2)
    client = signed_in(tenant)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"

    # When nothing is searched, the list says that older conversations are hidden
    _, html = page(client, "/inbox/")
    assert "Old Customer" not in html and "Only the 2 most recent are shown" in html

    # Then part of a name, or a number as dialled at home, finds the hidden one too
    _, by_name = page(client, "/inbox/", q="old cust")
    assert "Old Customer" in by_name and "Yossi Levi" not in by_name
    assert "Only the 2 most recent" not in by_name
    _, by_number = page(client, "/inbox/", q="050-444 4444")
    assert "Old Customer" in by_number and "Rina" not in by_number
    assert 'data-url="/inbox/?q=050-444%204444"' in by_number  # the live refresh keeps it
    _, nothing = page(client, "/inbox/", q="Moshe")
    assert "No conversation matches this search." in nothing


def test_opening_a_thread_shows_it_oldest_first_and_marks_it_read(make_tenant):
    tenant = make_tenant()
    session = sandbox(tenant)
    first = received(session, "hello there")
    sent(session, "hi! how can we help?")
    client = signed_in(tenant)

    response, html = page(client, f"/inbox/{first.conversation_id}/")

    assert response.status_code == 200
    assert html.index("hello there") < html.index("hi! how can we help?")
    assert 'class="bubble dir-in"' in html and 'class="bubble dir-out"' in html
    _, listing = page(client, "/inbox/")
    assert 'class="unread-count' not in listing
    with schema_context(tenant.schema_name):
        from messaging.models import Conversation

        assert Conversation.objects.get(pk=first.conversation_id).unread_count == 0


def test_a_reply_goes_through_message_send_once_per_form(make_tenant):
    tenant = make_tenant()
    session = sandbox(tenant)
    question = received(session, "is it kosher?")
    client = signed_in(tenant)
    _, html = page(client, f"/inbox/{question.conversation_id}/")
    key = re.search(r'name="key" value="([0-9a-f]{32})"', html).group(1)

    # When the reply form is sent twice (a double click)
    for _ in range(2):
        response = client.post(
            f"/inbox/{question.conversation_id}/reply/",
            {"text": "Yes, certified", "key": key},
            HTTP_X_REQUESTED_WITH="fetch",
        )
        assert response.status_code == 200 and response.json()["ok"] is True

    # Then one outbound message is queued to the customer, through the outbound pipeline
    with schema_context(tenant.schema_name):
        replies = Message.objects.filter(direction="out", text="Yes, certified")
        assert replies.count() == 1
        assert replies.get().status == "queued"
        assert replies.get().conversation_id == question.conversation_id


def test_an_empty_or_stale_reply_is_refused_clearly(make_tenant):
    tenant = make_tenant()
    question = received(sandbox(tenant), "hi")
    client = signed_in(tenant)
    path = f"/inbox/{question.conversation_id}/reply/"
    empty = client.post(path, {"text": " ", "key": "a" * 32}, HTTP_X_REQUESTED_WITH="fetch")
    stale = client.post(path, {"text": "hi", "key": "nope"}, HTTP_X_REQUESTED_WITH="fetch")
    assert empty.status_code == 400 and empty.json()["message"]
    assert stale.status_code == 400 and stale.json()["message"]
    with schema_context(tenant.schema_name):
        assert not Message.objects.filter(direction="out").exists()


def test_take_over_and_hand_back(make_tenant):
    tenant = make_tenant()
    question = received(sandbox(tenant), "a person please")
    client = signed_in(tenant)
    path = f"/inbox/{question.conversation_id}/takeover/"

    taken = client.post(path, {"human": "1"}, HTTP_X_REQUESTED_WITH="fetch")
    assert taken.json() == {"ok": True, "human_takeover": True}
    _, html = page(client, f"/inbox/{question.conversation_id}/")
    assert 'id="takeover" data-human="1"' in html

    back = client.post(path, {"human": "0"})
    assert back.status_code == 302
    with schema_context(tenant.schema_name):
        from messaging.models import Conversation

        assert Conversation.objects.get(pk=question.conversation_id).human_takeover is False
    assert client.post(path, {"human": "maybe"}).status_code == 400


def test_dead_letters_are_listed_and_retried(make_tenant):
    tenant = make_tenant()
    session = sandbox(tenant)
    failed = sent(session, "your order is ready")
    with schema_context(tenant.schema_name):
        Message.objects.filter(pk=failed.pk).update(
            status="failed", dead_letter=True, last_error="recipient not on WhatsApp"
        )
    client = signed_in(tenant)

    _, listing = page(client, "/inbox/")
    assert "1 message failed to send" in listing or "/inbox/dead-letters/" in listing
    _, html = page(client, "/inbox/dead-letters/")
    assert "your order is ready" in html and "recipient not on WhatsApp" in html

    response = client.post(
        f"/inbox/dead-letters/{failed.public_id}/retry/", HTTP_X_REQUESTED_WITH="fetch"
    )
    assert response.json() == {"ok": True}
    with schema_context(tenant.schema_name):
        again = Message.objects.get(pk=failed.pk)
        assert (again.status, again.dead_letter) == ("queued", False)
    # Retrying what is no longer a dead letter is refused, not repeated
    twice = client.post(
        f"/inbox/dead-letters/{failed.public_id}/retry/", HTTP_X_REQUESTED_WITH="fetch"
    )
    assert twice.status_code == 409


def test_inbox_never_opens_another_tenants_conversation(make_tenant):
    pizza, sushi = make_tenant(), make_tenant()
    theirs = received(sandbox(sushi), "secret sushi talk")
    client = signed_in(pizza)
    _, html = page(client, "/inbox/")
    assert "secret sushi talk" not in html
    assert client.get(f"/inbox/{theirs.conversation_id}/").status_code == 404
    assert client.post(f"/inbox/{theirs.conversation_id}/reply/", {"text": "hi"}).status_code == 404
    retry = client.post(f"/inbox/dead-letters/{theirs.public_id}/retry/")
    assert retry.status_code == 404


def test_live_pages_need_a_signed_in_user(make_tenant):
    tenant = make_tenant()
    anonymous = Client(HTTP_HOST=host_of(tenant))
    for path in ("/orders/", "/orders/1/card/", "/inbox/", "/inbox/1/", "/inbox/dead-letters/"):
        response = anonymous.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), path
    for path in ("/orders/1/move/", "/inbox/1/reply/", "/inbox/1/takeover/"):
        assert anonymous.post(path, {}).status_code == 302, path
