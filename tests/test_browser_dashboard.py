"""What the live dashboard must show, in a real browser (Playwright driving Debian's
Chromium, headless) against the real web server (uvicorn), channels-redis, a real session
runner and a real Celery worker:

sign in -> add a sandbox session -> its QR code appears -> the phone simulator scans it
-> the card turns CONNECTED without a reload -> a customer orders in the simulator -> the
order appears on the board of a second, separate browser context (a staff member) with a
cue -> staff advance it -> the owner's board follows -> the customer's status message
appears in the simulator -> the live log shows both directions with their ticks, a new
row arriving and its tick changing without a reload.

Screenshots of every page in English and Hebrew go to artifacts/dashboard-live/.
"""

from __future__ import annotations

import re
import shutil
import uuid
from urllib.parse import quote, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django_tenants.utils import schema_context

from messaging.models import MessagingSettings
from sessions_app.models import WhatsAppSession
from tests.conftest import CHROMIUM, OWNER_PASSWORD, ROOT, host_of, owner_email

ARTIFACTS = ROOT / "artifacts" / "dashboard-live"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
]

OWNER = "+972501234567"
CUSTOMER = "+972527654321"
LIVE_MS = 30_000  # runner start, QR, scan, a bot's turn through the worker: seconds each
User = get_user_model()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def signed_in_context(browser, base: str, email: str, *, language: str = "en"):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    context.add_cookies([{"name": "django_language", "value": language, "url": base}])
    page = context.new_page()
    page.goto(f"{base}/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", OWNER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return context, page


def live(page) -> None:
    """The page's socket has joined the tenant's events; mark the page to catch reloads."""
    page.wait_for_selector("#live-status[data-state=live]", timeout=LIVE_MS)
    page.evaluate("window.__notReloaded = true")


def not_reloaded(page) -> bool:
    return page.evaluate("window.__notReloaded === true")


def theirs_count(simulator) -> int:
    return simulator.locator(".bubble.theirs").count()


def customer_writes(simulator, text: str) -> str:
    """Write as the customer; return the bot's (last) answer once it reaches the phone."""
    before = theirs_count(simulator)
    simulator.fill("#sim-text", text)
    simulator.click("#sim-send")
    simulator.wait_for_function(
        f"document.querySelectorAll('.bubble.theirs').length > {before}", timeout=LIVE_MS
    )
    return simulator.locator(".bubble.theirs .text").last.inner_text()


def test_from_sign_in_to_an_order_moved_live_across_two_screens(
    make_tenant, web_server, session_runner, celery_worker, browser
):
    # Given a restaurant with a menu item and a staff member
    tenant = make_tenant(name="Falafel Place", language="en")
    from orders.services import menu_item_create

    staff_email = f"cook-{uuid.uuid4().hex[:6]}@{tenant.slug}.example.com"
    with schema_context(tenant.schema_name):
        menu_item_create(name_he="פלאפל", name_en="Falafel", price_minor=2800)
        # The outbound limits (3 in a row to one phone, then a pause) are tested elsewhere;
        # here the bot's answers and status messages go out as fast as the runner sends.
        MessagingSettings.objects.update_or_create(pk=1, defaults={"limits_enabled": False})
        User.objects.create_user(email=staff_email, password=OWNER_PASSWORD, role="staff")
    base = f"http://{host_of(tenant)}:{urlsplit(web_server).port}"

    # The owner signs in and adds a sandbox session served by the ordering bot
    owner_context, owner = signed_in_context(browser, base, owner_email(tenant))
    owner.goto(f"{base}/sessions/")
    live(owner)
    owner.fill("#id_name", "Orders")
    owner.select_option("#id_provider", "sandbox")
    owner.fill("#id_owner_numbers", OWNER)
    owner.select_option("#id_customer_mode", "ordering")
    owner.select_option("#id_humanization_profile", "instant")
    owner.click("#session-add-form button[type=submit]")
    owner.wait_for_url(f"{base}/sessions/")
    session = WhatsAppSession.objects.get(tenant=tenant, name="Orders")
    card = f'.session-card[data-session="{session.public_id}"]'
    live(owner)

    # The QR code appears on the card
    owner.wait_for_selector(f"{card} [data-role=qr]:not([hidden]) svg", timeout=LIVE_MS)
    shot(owner, "sessions-qr-en")

    # It is scanned from the phone simulator; the card turns CONNECTED without a reload
    simulator = owner_context.new_page()
    simulator.goto(f"{base}/simulator/?session={session.public_id}&phone={quote(OWNER)}")
    simulator.wait_for_selector("#sim-scan-form:not([hidden])")
    simulator.click("#sim-scan")
    owner.wait_for_selector(f'{card}[data-status="CONNECTED"]', timeout=LIVE_MS)
    assert not_reloaded(owner)
    shot(owner, "sessions-connected-en")

    # A staff member opens the orders board in a separate browser context
    staff_context, staff = signed_in_context(browser, base, staff_email)
    staff.goto(f"{base}/orders/")
    live(staff)
    staff.wait_for_selector("#board[data-ready='1']")
    staff.click("#board-sound")  # sound on (a click: browsers allow audio after one)
    assert staff.get_attribute("#board-sound", "aria-pressed") == "true"
    beeps = int(staff.get_attribute("#board", "data-beeps") or 0)
    # and the owner's board too, in a tab of its own
    owner_board = owner_context.new_page()
    owner_board.goto(f"{base}/orders/")
    live(owner_board)

    # A customer orders in the simulator
    simulator.goto(f"{base}/simulator/?session={session.public_id}&phone={quote(CUSTOMER)}")
    simulator.wait_for_selector('#sim-status[data-status="CONNECTED"]', timeout=LIVE_MS)
    assert "Falafel" in customer_writes(simulator, "Hi there")
    customer_writes(simulator, "1 2")
    customer_writes(simulator, "done")
    customer_writes(simulator, "pickup")
    confirmation = customer_writes(simulator, "yes")
    number = re.search(r"Order #(\d+) is confirmed", confirmation).group(1)
    shot(simulator, "simulator-order-en")

    # The order arrives on the staff's board, live, with its visible cue
    new_card = f'.board-column[data-column="CONFIRMED"] .order-card[data-number="{number}"]'
    staff.wait_for_selector(new_card, timeout=LIVE_MS)
    assert not_reloaded(staff)
    assert int(staff.get_attribute("#board", "data-cues")) >= 1
    assert int(staff.get_attribute("#board", "data-beeps")) > beeps  # the audible cue
    assert f"#{number}" in staff.inner_text("#board-notice")
    card_text = staff.inner_text(new_card)
    assert "Dana" in card_text or CUSTOMER in card_text or "+972" in card_text
    assert "Falafel" in card_text or "פלאפל" in card_text
    assert "56.00" in card_text
    staff.wait_for_function(
        "document.querySelector('#board-summary [data-figure=count]').textContent.trim() === '1'"
    )
    shot(staff, "board-new-order-en")

    # Staff advance it; the owner's board follows without a reload
    staff.click(f"{new_card} form.order-advance button")
    preparing = f'.board-column[data-column="PREPARING"] .order-card[data-number="{number}"]'
    staff.wait_for_selector(preparing, timeout=LIVE_MS)
    owner_board.wait_for_selector(preparing, timeout=LIVE_MS)
    assert not_reloaded(owner_board) and not_reloaded(staff)

    # The customer's status message appears in the simulator
    simulator.wait_for_selector(
        f".bubble.theirs >> text=Order #{number} is being prepared.", timeout=LIVE_MS
    )

    # The live log shows both directions with their ticks
    log = owner_context.new_page()
    log.goto(f"{base}/log/")
    live(log)
    log.wait_for_selector("#log-list[data-ready='1']")
    assert log.locator('.log-row[data-direction="in"]').count() >= 5
    assert log.locator('.log-row[data-direction="out"]').count() >= 5
    assert log.locator('.log-row[data-direction="in"] .tick[data-tick="received"]').count() >= 5
    log.wait_for_selector(
        '.log-row[data-direction="out"] .tick[data-tick="read"], '
        '.log-row[data-direction="out"] .tick[data-tick="delivered"]',
        timeout=LIVE_MS,
    )
    shot(log, "log-en")

    # When the owner hands the order over (picked up), the log gets the new outbound row
    # live, and its tick moves on from where it started, without a reload
    owner_board.click(f"{preparing} form.order-advance button")
    owner_board.wait_for_selector(
        f'.board-column[data-column="DELIVERED"] .order-card[data-number="{number}"]',
        timeout=LIVE_MS,
    )
    ready_row = log.locator(".log-row.dir-out", has_text=f"Order #{number} is ready for pickup")
    ready_row.wait_for(timeout=LIVE_MS)
    log.wait_for_function(
        """() => [...document.querySelectorAll('.log-row.dir-out')]
            .some(row => row.textContent.includes('is ready for pickup')
                  && ['delivered', 'read'].includes(row.querySelector('.tick').dataset.tick))""",
        timeout=LIVE_MS,
    )
    assert not_reloaded(log)
    simulator.wait_for_selector(
        f".bubble.theirs >> text=Order #{number} is ready for pickup", timeout=LIVE_MS
    )

    # The inbox holds the customer's conversation; its thread has both sides
    owner.goto(f"{base}/inbox/")
    owner.click(".conv a")
    owner.wait_for_selector(".bubble.dir-in >> text=Hi there")
    owner.wait_for_selector(f".bubble.dir-out >> text=Order #{number} is confirmed")
    shot(owner, "inbox-thread-en")
    staff.goto(f"{base}/orders/")
    shot(staff, "board-en")

    # Every live page in English and in Hebrew (right to left)
    pages = {
        "log": "/log/",
        "board": "/orders/",
        "inbox": "/inbox/",
        "dead-letters": "/inbox/dead-letters/",
        "sessions": "/sessions/",
        "simulator": f"/simulator/?session={session.public_id}&phone={quote(CUSTOMER)}",
    }
    for language, direction in (("en", "ltr"), ("he", "rtl")):
        owner_context.add_cookies([{"name": "django_language", "value": language, "url": base}])
        for name, path in pages.items():
            owner.goto(f"{base}{path}")
            assert owner.get_attribute("html", "dir") == direction
            live(owner)
            shot(owner, f"{name}-{language}")
        owner.goto(f"{base}/inbox/")
        owner.click(".conv a")
        shot(owner, f"inbox-thread-{language}")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.add_cookies(owner_context.cookies())
    narrow = phone.new_page()
    for name, path in (("board", "/orders/"), ("log", "/log/"), ("inbox", "/inbox/")):
        narrow.goto(f"{base}{path}")
        shot(narrow, f"{name}-he-phone")
    for context in (phone, staff_context, owner_context):
        context.close()
