"""The live pages' own behaviour in a real browser (Playwright driving Debian's Chromium)
against the real web server and channels-redis: the inbox on two screens (a reply, take
over / hand back seen on the other screen, unread counts arriving live), failed messages
retried, and the log's filters and older pages without leaving the live page.

The whole flow from sign-in to an order is tests/test_browser_dashboard.py.
"""

from __future__ import annotations

import shutil
import uuid
from urllib.parse import urlsplit

import pytest
from django_tenants.utils import schema_context

from messaging.events import message_event_publish
from messaging.models import Message
from tests.conftest import CHROMIUM, host_of, owner_email
from tests.test_browser_dashboard import live, not_reloaded, signed_in_context
from tests.test_dashboard_live import received, sandbox, sent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
]
LIVE_MS = 15_000


def publish_new(tenant, message) -> None:
    """What the inbound routing task does first (no Celery worker runs here)."""
    with schema_context(tenant.schema_name):
        row = Message.objects.select_related("conversation__contact").get(pk=message.pk)
        message_event_publish(row, "message.new")


def staff_member(tenant) -> str:
    from django.contrib.auth import get_user_model

    from tests.conftest import OWNER_PASSWORD

    email = f"staff-{uuid.uuid4().hex[:6]}@{tenant.slug}.example.com"
    with schema_context(tenant.schema_name):
        get_user_model().objects.create_user(email=email, password=OWNER_PASSWORD, role="staff")
    return email


def test_inbox_on_two_screens(make_tenant, web_server, browser):
    tenant = make_tenant(name="Falafel Place", language="en")
    session = sandbox(tenant)
    first = received(session, "Is the falafel gluten free?", name="Dana")
    base = f"http://{host_of(tenant)}:{urlsplit(web_server).port}"
    owner_context, owner = signed_in_context(browser, base, owner_email(tenant))
    staff_context, staff = signed_in_context(browser, base, staff_member(tenant))

    # The staff member keeps the conversation list open; the owner opens the thread
    staff.goto(f"{base}/inbox/")
    live(staff)
    owner.goto(f"{base}/inbox/{first.conversation_id}/")
    live(owner)
    owner.wait_for_selector(".bubble.dir-in >> text=Is the falafel gluten free?")

    # A new message from the customer: the open thread grows
    second = received(session, "And is it vegan?", name="Dana")
    publish_new(tenant, second)
    owner.wait_for_selector(".bubble.dir-in >> text=And is it vegan?", timeout=LIVE_MS)
    # A new customer writes: the other screen's list shows them on top, one unread
    newcomer = received(session, "Do you deliver?", phone="+972509999999", name="Avi")
    publish_new(tenant, newcomer)
    top = staff.locator(".conv").first
    staff.wait_for_function(
        "document.querySelector('.conv') && document.querySelector('.conv')"
        f".dataset.conversation === '{newcomer.conversation_id}'",
        timeout=LIVE_MS,
    )
    assert top.locator(".unread-count").inner_text() == "1"
    assert "Avi" in top.inner_text()

    # The owner takes over; the staff's list shows it without a reload
    owner.click("#takeover form[data-when='0'] button")
    owner.wait_for_selector("#takeover[data-human='1']", timeout=LIVE_MS)
    staff.wait_for_selector(
        f'.conv[data-conversation="{first.conversation_id}"] .takeover-flag', timeout=LIVE_MS
    )

    # The owner replies: it goes through message_send and shows up in the thread live
    owner.fill("#reply-text", "Yes, both!")
    owner.click("#reply-form button[type=submit]")
    owner.wait_for_selector(".bubble.dir-out >> text=Yes, both!", timeout=LIVE_MS)
    assert owner.input_value("#reply-text") == ""
    with schema_context(tenant.schema_name):
        reply = Message.objects.get(direction="out", text="Yes, both!")
        assert reply.conversation_id == first.conversation_id

    # Hand back to the bot: both screens follow
    owner.click("#takeover form[data-when='1'] button")
    owner.wait_for_selector("#takeover[data-human='0']", timeout=LIVE_MS)
    staff.wait_for_function(
        f'!document.querySelector(\'.conv[data-conversation="{first.conversation_id}"] '
        ".takeover-flag')",
        timeout=LIVE_MS,
    )
    assert not_reloaded(owner) and not_reloaded(staff)
    staff_context.close()
    owner_context.close()


def test_failed_messages_are_retried_from_the_page(make_tenant, web_server, browser):
    tenant = make_tenant(language="en")
    session = sandbox(tenant)
    failed = sent(session, "Your order is ready")
    with schema_context(tenant.schema_name):
        Message.objects.filter(pk=failed.pk).update(
            status="failed", dead_letter=True, last_error="recipient not on WhatsApp"
        )
    base = f"http://{host_of(tenant)}:{urlsplit(web_server).port}"
    context, page = signed_in_context(browser, base, owner_email(tenant))
    page.goto(f"{base}/inbox/")
    page.click(".dead-letter-link a")
    page.wait_for_selector(f'tr[data-id="{failed.public_id}"] >> text=recipient not on WhatsApp')
    live(page)
    page.click(f'tr[data-id="{failed.public_id}"] .retry-form button')
    page.wait_for_selector(f'tr[data-id="{failed.public_id}"]', state="detached", timeout=LIVE_MS)
    with schema_context(tenant.schema_name):
        assert Message.objects.get(pk=failed.pk).status == "queued"
    context.close()


def test_log_filters_pages_and_takes_new_rows_live(make_tenant, web_server, browser):
    tenant = make_tenant(language="en")
    front, delivery = sandbox(tenant, "Front desk"), sandbox(tenant, "Delivery line")
    for number in range(55):
        received(front, f"old message {number}")
    received(delivery, "on the delivery line", phone="+972502222222")
    base = f"http://{host_of(tenant)}:{urlsplit(web_server).port}"
    context, page = signed_in_context(browser, base, owner_email(tenant))

    # Older messages load below, on the same live page
    page.goto(f"{base}/log/?session={front.pk}")
    live(page)
    assert page.locator(".log-row").count() == 50
    page.click("#log-older")
    page.wait_for_function("document.querySelectorAll('.log-row').length === 55")
    assert page.locator("#log-older").count() == 0
    assert not_reloaded(page)
    assert page.locator(".log-row", has_text="on the delivery line").count() == 0

    # A message on the filtered session appears live; one on another session does not
    other = received(delivery, "not for this filter", phone="+972502222222")
    publish_new(tenant, other)
    mine = received(front, "fresh on the front desk")
    publish_new(tenant, mine)
    page.wait_for_selector(".log-row:first-child >> text=fresh on the front desk", timeout=LIVE_MS)
    assert page.locator(".log-row", has_text="not for this filter").count() == 0

    # A reconnect catches up with what was stored meanwhile and keeps the older pages
    received(front, "stored while the socket was down")  # never published
    page.evaluate("document.dispatchEvent(new Event('dashboard:connected'))")
    page.wait_for_selector(
        ".log-row:first-child >> text=stored while the socket was down", timeout=LIVE_MS
    )
    assert page.locator(".log-row").count() == 57 and not_reloaded(page)
    assert page.locator(".log-row:last-child", has_text="old message 0").count() == 1

    # Filtering by direction from the form
    page.select_option("#id_direction", "out")
    page.wait_for_url("**direction=out**")
    assert page.locator(".log-row").count() == 0
    context.close()
