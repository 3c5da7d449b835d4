"""The real processes together: uvicorn, a Celery worker, a session runner, channels-redis."""

import json
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django_tenants.utils import schema_context
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from config.tasks import health_probe
from dashboard.realtime import tenant_event_publish
from tests.conftest import OWNER_PASSWORD, host_of, login

pytestmark = pytest.mark.integration
User = get_user_model()


def test_task_enqueued_inside_a_tenant_runs_in_that_tenants_schema(make_tenant, celery_worker):
    # Given two tenants with a different number of dashboard users
    pizza, sushi = make_tenant(), make_tenant()
    with schema_context(sushi.schema_name):
        User.objects.create_user(email="cook@sushi.example.com", password=OWNER_PASSWORD)

    # When each enqueues the probe task from inside its own schema
    with schema_context(pizza.schema_name):
        pizza_result = health_probe.delay()
    with schema_context(sushi.schema_name):
        sushi_result = health_probe.delay()

    # Then a real worker ran each in the schema it was sent from
    assert pizza_result.get(timeout=30) == {"schema": pizza.schema_name, "users": 1}
    assert sushi_result.get(timeout=30) == {"schema": sushi.schema_name, "users": 2}
    assert connection.schema_name == "public"


def _dashboard_socket(web_server: str, tenant, cookie: str | None):
    """A websocket to the tenant's host, the way a browser on that host opens it."""
    port = urlparse(web_server).port
    headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
    return connect(
        f"ws://{host_of(tenant)}:{port}/ws/dashboard/",
        sock=socket.create_connection(("127.0.0.1", port)),
        origin=f"http://{host_of(tenant)}:{port}",
        additional_headers=headers,
        proxy=None,
        open_timeout=10,
    )


def _receive_json(socket_, timeout: float):
    return json.loads(socket_.recv(timeout=timeout))


def _assert_receives_nothing(socket_, within: float = 1.5) -> None:
    with pytest.raises(TimeoutError):
        socket_.recv(timeout=within)


def test_group_message_from_sync_code_reaches_only_that_tenants_sockets(make_tenant, web_server):
    pizza, sushi = make_tenant(), make_tenant()
    pizza_cookie = login(web_server, pizza, email=f"owner@{pizza.slug}.example.com").cookies[
        "sessionid"
    ]
    sushi_cookie = login(web_server, sushi, email=f"owner@{sushi.slug}.example.com").cookies[
        "sessionid"
    ]

    with (
        _dashboard_socket(web_server, pizza, pizza_cookie) as pizza_socket,
        _dashboard_socket(web_server, sushi, sushi_cookie) as sushi_socket,
    ):
        assert _receive_json(pizza_socket, 10) == {"type": "hello", "tenant": pizza.slug}
        assert _receive_json(sushi_socket, 10) == {"type": "hello", "tenant": sushi.slug}

        # When synchronous code publishes to pizza's group (through channels-redis)
        tenant_event_publish(schema_name=pizza.schema_name, event={"type": "order.updated", "n": 7})

        # Then pizza's dashboard gets it and sushi's does not
        assert _receive_json(pizza_socket, 10) == {"type": "order.updated", "n": 7}
        _assert_receives_nothing(sushi_socket)

        # And the other way round
        tenant_event_publish(schema_name=sushi.schema_name, event={"type": "message.new", "id": 1})
        assert _receive_json(sushi_socket, 10) == {"type": "message.new", "id": 1}
        _assert_receives_nothing(pizza_socket)


def _close_code(web_server, tenant, cookie) -> int:
    with _dashboard_socket(web_server, tenant, cookie) as ws, pytest.raises(ConnectionClosed):
        ws.recv(timeout=10)
    return ws.close_code


def test_anonymous_and_other_tenant_sockets_are_refused(make_tenant, web_server):
    pizza, sushi = make_tenant(), make_tenant()
    pizza_cookie = login(web_server, pizza, email=f"owner@{pizza.slug}.example.com").cookies[
        "sessionid"
    ]

    assert _close_code(web_server, pizza, None) == 4401
    # pizza's session cookie on sushi's host: that schema has no such session
    assert _close_code(web_server, sushi, pizza_cookie) == 4401


def test_health_is_200_with_every_component_up(web_server, celery_worker, session_runner):
    response = httpx.get(f"{web_server}/health/", headers={"Host": "demo.localhost"}, timeout=10)
    report = response.json()
    assert response.status_code == 200, report
    assert report["status"] == "up" and report["failing"] == []
    components = report["components"]
    assert {name: part["status"] for name, part in components.items()} == {
        "database": "up", "redis": "up", "celery_workers": "up", "session_runners": "up",
    }  # fmt: skip
    runners = {p["name"]: p for p in components["session_runners"]["processes"]}
    assert runners[session_runner]["fresh"] is True
    assert "last_heartbeat_seconds_ago" in runners[session_runner]
    assert celery_worker in {p["name"] for p in components["celery_workers"]["processes"]}


def test_deep_health_sends_a_probe_through_a_worker(web_server, celery_worker, session_runner):
    response = httpx.get(f"{web_server}/health/?deep=1", headers={"Host": "localhost"}, timeout=20)
    assert response.status_code == 200, response.json()
    assert response.json()["components"]["celery_roundtrip"]["status"] == "up"


def test_health_answers_on_a_host_that_is_no_tenant(web_server):
    response = httpx.get(f"{web_server}/health/", headers={"Host": "10.1.2.3"}, timeout=10)
    assert response.status_code in (200, 503)
    assert response.json()["components"]["database"]["status"] == "up"


def test_a_runner_that_stopped_beating_is_reported_stale(settings, committed_db):
    from config.health import health_report
    from config.heartbeats import RUNNERS, heartbeat_record, heartbeat_remove

    settings.HEARTBEAT_STALE_SECONDS = 1
    heartbeat_record(RUNNERS, "ghost-runner")
    try:
        time.sleep(1.5)  # let the heartbeat age past the (shortened) staleness limit
        _, report = health_report()
        ghost = next(
            p
            for p in report["components"]["session_runners"]["processes"]
            if p["name"] == "ghost-runner"
        )
        assert ghost["fresh"] is False
    finally:
        heartbeat_remove(RUNNERS, "ghost-runner")
