"""Two more browser flows (Playwright driving Debian's Chromium against real uvicorn
processes): a business signs up on the public host and lands signed in on its new
dashboard; a dashboard whose server goes away reconnects by itself and refetches what
it missed while it was away."""

from __future__ import annotations

import shutil
import sys
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings
from django.db import connection

from sessions_app.models import Provider, Status
from sessions_app.services import session_create, session_status_set
from tenants.models import Tenant
from tests.conftest import (
    CHROMIUM,
    OWNER_PASSWORD,
    PROCESS_START_TIMEOUT,
    ChildProcess,
    free_port,
    host_of,
    owner_email,
    tenant_drop,
    wait_until,
)
from tests.test_dashboard_sessions_browser import shot

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (.ci/run adds it)"
)


def test_a_business_signs_up_and_lands_signed_in_on_its_dashboard(
    committed_db, web_server, browser
):
    slug = f"b{uuid.uuid4().hex[:10]}"
    port = urlsplit(web_server).port
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    try:
        page.goto(f"http://{settings.BASE_DOMAIN}:{port}/signup/")
        page.fill("#id_name", "Hummus Bar")
        page.fill("#id_slug", slug)
        page.wait_for_selector("#slug-preview.ok")  # checked while typing: free
        page.fill("#id_email", f"owner@{slug}.example.com")
        page.fill("#id_password", "Tahini-And-Lemon-3!")
        page.select_option("#id_language", "en")
        shot(page, "signup-en")
        page.click("#signup-form button[type=submit]")
        page.wait_for_url(f"http://{slug}.{settings.BASE_DOMAIN}:{port}/")
        assert "Hummus Bar" in page.inner_text(".brand")
        assert f"owner@{slug}.example.com" in page.inner_text(".topbar")
        page.wait_for_selector("#live-status[data-state=live]")  # its websocket accepts it
        shot(page, "signed-up-home-en")
    finally:
        context.close()
        connection.set_schema_to_public()
        for tenant in Tenant.objects.filter(slug=slug):
            tenant_drop(tenant)


def _uvicorn(port: int, logs) -> ChildProcess:
    child = ChildProcess(
        f"web-{uuid.uuid4().hex[:4]}",
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--lifespan", "off", "--no-access-log"],
        logs,
    )  # fmt: skip

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health/", timeout=2).status_code > 0
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout=PROCESS_START_TIMEOUT, what="uvicorn", child=child)
    return child


def test_the_dashboard_reconnects_and_refetches_what_it_missed(
    make_tenant, browser, process_logs, django_db_blocker
):
    tenant = make_tenant()
    session = session_create(tenant=tenant, name="Counter", provider=Provider.SANDBOX)
    port = free_port()
    server = _uvicorn(port, process_logs)
    context = browser.new_context()
    try:
        page = context.new_page()
        base = f"http://{host_of(tenant)}:{port}"
        page.goto(f"{base}/login/")
        page.fill("#id_username", owner_email(tenant))
        page.fill("#id_password", OWNER_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/sessions/")
        page.wait_for_selector("#live-status[data-state=live]")
        page.evaluate(
            """() => { window.__reconnected = 0; window.__notReloaded = true;
            document.addEventListener('dashboard:reconnected', () => window.__reconnected++); }"""
        )

        # The server goes away: the page says so and keeps trying.
        server.stop()
        page.wait_for_selector("#live-status[data-state=down]")
        # Meanwhile the session changes: nobody is connected to hear about it.
        session_status_set(session_id=session.pk, status=Status.FAILED, reason="While away")

        server = _uvicorn(port, process_logs)
        page.wait_for_selector("#live-status[data-state=live]", timeout=40_000)
        page.wait_for_function("window.__reconnected === 1")
        card = f'.session-card[data-session="{session.public_id}"]'
        page.wait_for_selector(f'{card}[data-status="{Status.FAILED}"]')
        assert page.evaluate("window.__notReloaded") is True
    finally:
        context.close()
        server.stop()
