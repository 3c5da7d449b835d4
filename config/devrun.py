"""`make run`: the whole product on one machine, in one terminal.

Starts the embedded PostgreSQL and Redis (unless DATABASE_URL / REDIS_URL name other
servers), migrates, makes sure the demo tenant exists, then runs the four processes of
docker-compose.yml -- web, worker, beat, sessions -- with their output prefixed. Ctrl-C
(or any process dying) stops the processes first, then the embedded servers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass

from config.embedded import DATA_DIR, ROOT, embedded_services

PYTHON = sys.executable
WEB_PORT = int(os.environ.get("WEB_PORT", "8000"))
STOP_GRACE_SECONDS = 15
HEALTHY_WITHIN_SECONDS = 90

PROCESSES = {
    "web": [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
            "--port", str(WEB_PORT), "--lifespan", "off", "--no-access-log"],
    "worker": [PYTHON, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
               "--concurrency", "2"],
    "beat": [PYTHON, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"],
    "sessions": [PYTHON, "manage.py", "run_sessions"],
}  # fmt: skip


@dataclass
class Child:
    name: str
    process: subprocess.Popen


def _relay(name: str, stream) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>8} | {line.decode(errors='replace')}")
        sys.stdout.flush()


def _start(name: str, command: list[str], env: dict) -> Child:
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
    )
    threading.Thread(target=_relay, args=(name, process.stdout), daemon=True).start()
    return Child(name, process)


def _stop(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{child.name} did not stop in {STOP_GRACE_SECONDS}s; killing it")
            child.process.kill()
            child.process.wait()


def _manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"`manage.py {' '.join(args)}` failed (exit {result.returncode}).")
    return result.stdout


def _health() -> dict | None:
    """The /health/ report, or None while the web server is not answering yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{WEB_PORT}/health/", timeout=3) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # 503 until the worker and runner beat
        return json.loads(error.read() or b"{}")
    except OSError:
        return None


def _banner(credentials: dict, health: dict) -> str:
    state = (
        "all components up"
        if health.get("status") == "up"
        else ("NOT healthy yet: " + ", ".join(health.get("failing", ["web"])))
    )
    line = "=" * 72
    return "\n".join([
        line,
        "  WhatsApp business platform is running",
        "",
        f"  Demo dashboard   http://demo.localhost:{WEB_PORT}/",
        f"    login          {credentials['demo_email']}  /  {credentials['demo_password']}",
        f"  Platform admin   http://localhost:{WEB_PORT}/admin/",
        f"    login          {credentials['operator_email']}  /  "
        f"{credentials['operator_password']}",
        f"  Health           http://localhost:{WEB_PORT}/health/",
        f"                   {state}",
        f"  Metrics          curl -H 'Authorization: Bearer "
        f"{os.environ.get('METRICS_TOKEN', 'dev-metrics-token')}' "
        f"http://localhost:{WEB_PORT}/metrics",
        "",
        "  *.localhost resolves to 127.0.0.1 in most browsers; with curl, send the host:",
        f"    curl -H 'Host: demo.localhost' http://127.0.0.1:{WEB_PORT}/health/",
        "  Ctrl-C stops everything. Data stays in .local/ for the next `make run`.",
        line,
    ])  # fmt: skip


def _metrics_dir_empty(env: dict) -> None:
    """Counters of an earlier run's processes would otherwise be summed with this one's."""
    directory = env.setdefault("METRICS_DIR", str(DATA_DIR / "metrics"))
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def main() -> int:
    stop_requested = threading.Event()

    def request_stop(*_args) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    with embedded_services() as env:
        env.setdefault("PYTHONUNBUFFERED", "1")
        print("Migrating the database...", flush=True)
        _manage(env, "migrate_platform", "--verbosity", "0")
        setup = _manage(
            env, "platform_setup", "--credentials-file", str(DATA_DIR / "credentials.json")
        )
        credentials = json.loads(setup.strip().splitlines()[-1])

        _metrics_dir_empty(env)
        children = [_start(name, command, env) for name, command in PROCESSES.items()]
        exit_code = 0
        started = time.monotonic()
        banner_shown = False
        try:
            while not stop_requested.wait(0.5):
                dead = [child for child in children if child.process.poll() is not None]
                if dead:
                    names = ", ".join(f"{c.name} (exit {c.process.returncode})" for c in dead)
                    print(f"Stopping everything: {names} stopped unexpectedly.", flush=True)
                    exit_code = 1
                    break
                if not banner_shown:
                    health = _health()
                    waited_too_long = time.monotonic() - started > HEALTHY_WITHIN_SECONDS
                    if health and (health.get("status") == "up" or waited_too_long):
                        print(_banner(credentials, health), flush=True)
                        banner_shown = True
        finally:
            print("Stopping web, worker, beat and sessions...", flush=True)
            _stop(children)
            print("Stopping the embedded servers...", flush=True)
    print("Stopped.")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
