"""The sessions page in a real browser (Playwright driving Debian's Chromium) against the
real web server (uvicorn), channels-redis and a real session runner: add a sandbox
session, its QR code appears, the phone simulator scans it, and the card turns CONNECTED
without a reload. Screenshots of the pages in English and Hebrew go to artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sessions_app.models import Status, WhatsAppSession
from tests.conftest import CHROMIUM, OWNER_PASSWORD, ROOT, host_of, owner_email

ARTIFACTS = ROOT / "artifacts" / "dashboard"
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (.ci/run adds it)"
)

PHONE = "+972501234567"
LIVE_TIMEOUT_MS = 30_000  # runner start, QR, scan: each step takes a few seconds


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_sandbox_session_qr_scanned_from_the_simulator_connects_live(
    make_tenant, web_server, session_runner, browser
):
    tenant = make_tenant(name="Pizza Roma")
    port = urlsplit(web_server).port
    base = f"http://{host_of(tenant)}:{port}"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.add_cookies([{"name": "django_language", "value": "en", "url": base}])
    page = context.new_page()

    # Sign in.
    page.goto(f"{base}/login/")
    page.fill("#id_username", owner_email(tenant))
    page.fill("#id_password", OWNER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")

    # Add a sandbox session, started at once.
    page.goto(f"{base}/sessions/")
    page.wait_for_selector("#live-status[data-state=live]")
    shot(page, "sessions-empty-en")
    page.fill("#id_name", "Front desk")
    page.select_option("#id_provider", "sandbox")
    page.fill("#id_owner_numbers", PHONE)
    page.click("#session-add-form button[type=submit]")
    page.wait_for_url(f"{base}/sessions/")
    session = WhatsAppSession.objects.get(tenant=tenant, name="Front desk")
    card = f'.session-card[data-session="{session.public_id}"]'

    # From here on the page is never reloaded: a marker on `window` would be lost.
    page.wait_for_selector("#live-status[data-state=live]")
    page.evaluate("window.__notReloaded = true")

    # The runner takes it and shows a QR code: it appears on the card, with a countdown.
    page.wait_for_selector(f"{card} [data-role=qr]:not([hidden]) svg", timeout=LIVE_TIMEOUT_MS)
    assert page.get_attribute(f"{card} [data-role=status]", "data-status") == Status.WAIT_QR
    page.wait_for_function(
        f"Number(document.querySelector('{card} [data-role=countdown]').dataset.seconds) > 0"
    )
    shot(page, "sessions-qr-en")

    # The phone simulator, in another tab, scans the code as the owner's phone.
    simulator = context.new_page()
    simulator.goto(f"{base}/simulator/?session={session.public_id}&phone=%2B972501234567")
    simulator.wait_for_selector("#sim-scan-form:not([hidden])")
    shot(simulator, "simulator-scan-en")
    simulator.click("#sim-scan")

    # The sessions page turns CONNECTED by itself.
    page.wait_for_selector(f'{card}[data-status="CONNECTED"]', timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded") is True
    assert PHONE in page.inner_text(card)
    assert page.is_hidden(f"{card} [data-role=qr]")
    shot(page, "sessions-connected-en")

    # The simulator follows too, and writes as a customer: the runner receives it (✓✓).
    simulator.wait_for_selector('#sim-status[data-status="CONNECTED"]', timeout=LIVE_TIMEOUT_MS)
    simulator.goto(f"{base}/simulator/?session={session.public_id}&phone=%2B972527654321")
    simulator.fill("#sim-text", "Hello from the simulator")
    simulator.click("#sim-send")
    simulator.wait_for_selector(".bubble.mine >> text=Hello from the simulator")
    simulator.wait_for_function(
        "[...document.querySelectorAll('.bubble.mine .ticks')]"
        ".some(t => t.textContent.includes('✓✓'))",
        timeout=LIVE_TIMEOUT_MS,
    )
    shot(simulator, "simulator-chat-en")

    # The other owner pages, for the record.
    for path, name in (("/settings/", "settings"), ("/menu/", "menu"), ("/team/", "team")):
        page.goto(f"{base}{path}")
        shot(page, f"{name}-en")
    page.goto(f"{base}/sessions/")

    # Hebrew: right to left, translated; and on a narrow phone screen.
    context.add_cookies([{"name": "django_language", "value": "he", "url": base}])
    page.reload()
    assert page.get_attribute("html", "dir") == "rtl"
    assert page.get_attribute("html", "lang") == "he"
    shot(page, "sessions-he")
    simulator.reload()
    shot(simulator, "simulator-he")
    for path, name in (("/settings/", "settings"), ("/menu/", "menu"), ("/team/", "team")):
        simulator.goto(f"{base}{path}")
        shot(simulator, f"{name}-he")
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    phone.add_cookies(context.cookies())
    narrow = phone.new_page()
    narrow.goto(f"{base}/sessions/")
    width = narrow.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the sessions page scrolls sideways on a phone ({width}px)"
    shot(narrow, "sessions-phone-he")
    narrow.goto(f"{base}/simulator/?session={session.public_id}")
    shot(narrow, "simulator-phone-he")
    phone.close()
    context.close()
    assert Path(ARTIFACTS / "sessions-connected-en.png").exists()
