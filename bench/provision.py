"""Seconds to provision one tenant, as the sign-up form does (tenants.services.tenant_create).

Measured on an empty platform (the very first tenant; migrate_platform has already
migrated the template schema, as every deploy does), then with 1 and with 50 tenants
already there (5 creations each, so 1 to 5 and 50 to 54 existing): cloning the template
schema must not slow down as tenants add up. Target: under 1 s per tenant.

Each creation starts on a new database connection, as a sign-up request does (Django
closes its connection after every request). One connection that creates tenant after
tenant gets slower and slower: PostgreSQL's caches in that backend hold every relation
it created, and the next statement after each clone has to rebuild them.
"""

from __future__ import annotations

import statistics

from bench.common import Figure, fresh_database, timed

TARGET = "< 1 s"
REPEATS = 5
MANY = 50


def _create(number: int) -> float:
    """Seconds tenant_create takes for the tenant `bench-<number>`."""
    from django.db import connections

    from tenants.services import NewTenant, tenant_create

    new = NewTenant(
        slug=f"bench-{number:03d}",
        name=f"Bench business {number}",
        owner_email=f"owner{number}@bench.example",
        owner_password="Bench-pass-1234!",
    )
    connections.close_all()  # a new connection, as in a sign-up request
    with timed() as watch:
        tenant_create(new)
    return watch.seconds


def _timed_repeats(first_number: int, existing: int) -> list[Figure]:
    times = [_create(first_number + i) for i in range(REPEATS)]
    label = f"one more tenant, from {existing} existing"
    return [
        Figure(f"{label} (median of {REPEATS})", statistics.median(times), "s", TARGET),
        Figure(f"{label} (max of {REPEATS})", max(times), "s", TARGET),
    ]


def run() -> list[Figure]:
    fresh_database()
    from tenants.models import Tenant

    def existing() -> int:
        return Tenant.objects.exclude(schema_name="public").count()

    figures = [Figure("very first tenant", _create(1), "s", TARGET)]
    figures += _timed_repeats(first_number=2, existing=existing())

    number = existing()
    while number < MANY:
        number += 1
        _create(number)
        if number % 10 == 0:
            print(f"  created {number}/{MANY} tenants", flush=True)
    figures += _timed_repeats(first_number=number + 1, existing=existing())
    return figures
