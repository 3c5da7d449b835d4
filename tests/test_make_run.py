"""`make run`'s supervisor on a fresh data folder: up, healthy, Ctrl-C, and up again."""

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration


def _start(data_dir, ports) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        EMBEDDED_DATA_DIR=str(data_dir),
        EMBEDDED_PG_PORT=str(ports["pg"]),
        EMBEDDED_REDIS_PORT=str(ports["redis"]),
        WEB_PORT=str(ports["web"]),
        PYTHONUNBUFFERED="1",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "config.devrun"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _read_until_banner(process, timeout=150) -> str:
    output, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        if "Ctrl-C stops everything" in line:
            return "".join(output)
    raise AssertionError("no banner:\n" + "".join(output)[-4000:])


def _stop(process) -> str:
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=90)
    return rest


def test_make_run_comes_up_healthy_stops_cleanly_and_keeps_its_data(tmp_path):
    ports = {"pg": free_port(), "redis": free_port(), "web": free_port()}
    data_dir = tmp_path / "local"

    process = _start(data_dir, ports)
    try:
        banner = _read_until_banner(process)
        assert "all components up" in banner
        login = re.search(r"login\s+(\S+@demo\S+)\s+/\s+(\S+)", banner).groups()
        base = f"http://127.0.0.1:{ports['web']}"
        health = httpx.get(f"{base}/health/", headers={"Host": "demo.localhost"}, timeout=10)
        assert health.status_code == 200, health.text
        page = httpx.get(f"{base}/login/", headers={"Host": "demo.localhost"}, timeout=10)
        assert page.status_code == 200 and "Demo Restaurant" in page.text
    finally:
        rest = _stop(process)
    assert process.returncode == 0, rest[-3000:]
    assert "Stopped." in rest
    leftovers = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert leftovers.stdout == "", f"processes left running: {leftovers.stdout}"

    # A second run finds the same data: the same demo login, no new tenant.
    process = _start(data_dir, ports)
    try:
        assert (
            re.search(r"login\s+(\S+@demo\S+)\s+/\s+(\S+)", _read_until_banner(process)).groups()
            == login
        )
    finally:
        _stop(process)
    assert process.returncode == 0
