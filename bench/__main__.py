"""`make bench`: run every benchmark in order, then print all their figures as one table.

A benchmark is a function returning a list of `Figure`s; add a new one to BENCHMARKS.
`python -m bench outbound api_messages` (or `make bench BENCH="outbound api_messages"`)
runs only those.
Targets are printed next to the figures, never asserted: the exit code is 1 only when a
benchmark crashed.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from bench import (
    api_messages,
    asgi_servers,
    dashboard_websockets,
    drills,
    neonize_memory,
    ordering_bot,
    outbound,
    provision,
    reminders,
    takeover,
    twilio_webhooks,
)
from bench.common import Figure

BENCHMARKS: list[tuple[str, Callable[[], list[Figure]]]] = [
    ("provision", provision.run),
    ("asgi_servers", asgi_servers.run),
    ("takeover", takeover.run),
    ("twilio_webhooks", twilio_webhooks.run),
    ("outbound", outbound.run),
    ("neonize_memory", neonize_memory.run),
    ("ordering_bot", ordering_bot.run),
    ("drills", drills.run),
    ("reminders", reminders.run),
    ("api_messages", api_messages.run),
    ("dashboard_websockets", dashboard_websockets.run),
]


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("benchmark", "figure", "value", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for i, row in enumerate([header, *rows]):
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if i == 0:
            print("-+-".join("-" * width for width in widths))


def main(names: list[str] | None = None) -> int:
    """Run the benchmarks called `names` (all of them when empty), in BENCHMARKS' order."""
    known = [name for name, _ in BENCHMARKS]
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        print(f"Unknown: {', '.join(unknown)}. Benchmarks: {', '.join(known)}", file=sys.stderr)
        return 2
    rows: list[tuple[str, str, str, str]] = []
    crashed = []
    for name, benchmark in BENCHMARKS:
        if names and name not in names:
            continue
        print(f"== {name}", flush=True)
        try:
            figures = benchmark()
        except Exception:
            traceback.print_exc()
            crashed.append(name)
            rows.append((name, "CRASHED", "-", "-"))
            continue
        rows += [(name, f.name, f.formatted_value(), f.target) for f in figures]
    print()
    print_table(rows)
    if crashed:
        print(f"\nCrashed: {', '.join(crashed)}", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
