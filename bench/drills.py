"""Fault drills (issue 9) as benchmark figures: per drill, messages in, stored, sent,
sent twice and lost, and how long the drill took (recovery included).

The drills are tests/drill_harness.py, the same ones tests/test_fault_drills.py checks;
they run in a child process, on a PostgreSQL and a Redis of their own (started from the
embedded binaries on free ports, in a temporary folder), because they stop and start
them. Nothing here touches DATABASE_URL or REDIS_URL.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import Figure
from tests.drill_harness import run_in_child

TIMEOUT_SECONDS = 900


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="wa-bench-drills-") as folder:
        rows, _ = run_in_child(Path(folder) / "rows.json", timeout=TIMEOUT_SECONDS, capture=False)
    if not rows:
        raise RuntimeError("the drills did not finish")
    figures: list[Figure] = []
    for row in rows:
        name = row.drill
        figures += [
            Figure(f"{name}: messages in", row.messages_in, ""),
            Figure(f"{name}: messages stored", row.stored, ""),
            Figure(f"{name}: messages sent", row.sent, ""),
            Figure(f"{name}: duplicates", row.duplicates, "", "0"),
            Figure(f"{name}: losses", row.losses, "", "0"),
            Figure(f"{name}: drill time, recovery included", row.details["seconds"], "s"),
        ]
    return figures
