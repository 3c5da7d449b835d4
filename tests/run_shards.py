"""`make test`: the whole suite, split into shards that run side by side.

Most of the suite waits on real processes (workers, runners, web servers, a browser), so
two pytest processes on two cores finish well before one would. Each shard gets its own
test database (`<TEST_DATABASE_NAME>_<n>`) and its own Redis database (REDIS_URL's
database + n), so nothing of one shard is seen by the other. Files are spread by their
usual running time; a shard's output is printed when it ends, and the exit code is the
first failing shard's. The fault drills run alone afterwards (they time recoveries).

    python -m tests.run_shards [--shards N] [pytest options...]

With a path or `-k` among the options, one pytest runs them as usual.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent

# Seconds each heavy file usually takes alone (others count as a few seconds).
WEIGHTS = {
    "test_api.py": 120,
    "test_fault_drills.py": 150,
    "test_dashboard_live.py": 60,
    "test_webhooks.py": 60,
    "test_outbound.py": 120,
    "test_neonize_provider.py": 80,
    "test_owner_menu.py": 80,
    "test_ordering_bot.py": 60,
    "test_dashboard_pages.py": 60,
    "test_browser_dashboard.py": 60,
    "test_api_server.py": 60,
    "test_inbound.py": 60,
    "test_twilio_provider.py": 50,
    "test_session_runner.py": 50,
    "test_ordering_bot_e2e.py": 50,
    "test_owner_menu_e2e.py": 45,
    "test_sweeps.py": 45,
    "test_tenancy.py": 40,
    "test_dashboard_live_websocket.py": 40,
    "test_browser_live_pages.py": 40,
    "test_dashboard_sessions_browser.py": 35,
    "test_dashboard_browser_flows.py": 35,
    "test_bulk_send.py": 35,
    "test_integration_processes.py": 30,
    "test_orders.py": 60,
    "test_conversations.py": 25,
    "test_dashboard_signup.py": 25,
    "test_log_hygiene.py": 25,
}
DEFAULT_WEIGHT = 8
# Run alone once the shards are done: the fault drills restart servers and time
# recoveries, which a loaded machine stretches past their deadlines.
ALONE = ["test_fault_drills.py"]


def shard_files(count: int) -> list[list[str]]:
    files = sorted(
        path.name for path in (ROOT / "tests").glob("test_*.py") if path.name not in ALONE
    )
    shards: list[list[str]] = [[] for _ in range(count)]
    loads = [0] * count
    for name in sorted(files, key=lambda n: -WEIGHTS.get(n, DEFAULT_WEIGHT)):
        lightest = loads.index(min(loads))
        shards[lightest].append(f"tests/{name}")
        loads[lightest] += WEIGHTS.get(name, DEFAULT_WEIGHT)
    return [shard for shard in shards if shard]


def _redis_url(url: str, offset: int) -> str:
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) + offset
    return urlunsplit(parts._replace(path=f"/{database}"))


def main() -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--shards", type=int, default=int(os.environ.get("TEST_SHARDS", "2")))
    ours, pytest_args = parser.parse_known_args()
    targeted = any(a.startswith("tests") or a == "-k" for a in pytest_args)
    if ours.shards <= 1 or targeted:
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT)

    database = urlsplit(os.environ.get("DATABASE_URL", "")).path.strip("/") or "whatsapp"
    base_name = os.environ.get("TEST_DATABASE_NAME", f"test_{database}")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1")
    logs = Path(tempfile.mkdtemp(prefix="test-shards-"))
    running = []
    for number, files in enumerate(shard_files(ours.shards)):
        env = {
            **os.environ,
            "TEST_DATABASE_NAME": f"{base_name}_{number}",
            "REDIS_URL": _redis_url(redis_url, number),
        }
        log = logs / f"shard-{number}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "pytest", *pytest_args, *files],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        running.append((number, process, log, len(files)))
        print(f"shard {number}: {len(files)} files, output in {log}", flush=True)

    started = time.monotonic()
    codes = {}
    while len(codes) < len(running):
        for number, process, log, _files in running:
            if number in codes or process.poll() is None:
                continue
            codes[number] = process.returncode
            minutes = (time.monotonic() - started) / 60
            print(f"\n===== shard {number} (exit {process.returncode}, {minutes:.1f} min) =====")
            print(log.read_text(errors="replace"), flush=True)
        time.sleep(1)
    alone = [f"tests/{name}" for name in ALONE if (ROOT / "tests" / name).exists()]
    if alone:
        print(f"\n===== alone: {' '.join(alone)} =====", flush=True)
        env = {**os.environ, "TEST_DATABASE_NAME": f"{base_name}_alone"}
        codes[len(codes)] = subprocess.call(
            [sys.executable, "-m", "pytest", *pytest_args, *alone], cwd=ROOT, env=env
        )
    failed = [number for number, code in sorted(codes.items()) if code != 0]
    print(f"\nshards: {len(codes)}, failed: {failed or 'none'}", flush=True)
    return codes[failed[0]] if failed else 0


if __name__ == "__main__":
    sys.exit(main())
