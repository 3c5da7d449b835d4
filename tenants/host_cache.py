"""Which tenant a host name belongs to, kept in each process for HOST_CACHE_SECONDS.

Every request to a tenant's host needs its tenant (tenants/middleware.py, and the Twilio
webhook's fast path through messaging/inbound_cache.py); reading it is a query joined
over two tables, for a row that almost never changes. So a suspension, a reactivation, a
renamed tenant or a moved domain takes effect within HOST_CACHE_SECONDS (5 s) in every
web process, and at once in the process that made the change (the ORM's post_save and
post_delete, and `tenant_suspend`/`tenant_reactivate`, clear that process's entries).
A host that belongs to no tenant is not kept: a new tenant's address answers at once.

Each caller gets its own copy of the Tenant, so a view that changes request.tenant
changes nothing for other requests.
"""

from __future__ import annotations

import copy
import time

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tenants.models import Domain, Tenant

HOST_CACHE_SECONDS = 5.0
MISS = object()  # what a lookup with cached_only=True returns when it would read

_tenants: dict[str, tuple[float, Tenant]] = {}


def tenant_for_host(hostname: str, *, cached_only: bool = False):
    """The Tenant whose Domain is `hostname` (without port), or None; MISS when
    `cached_only` and it is not in the cache (the caller reads it where it may block)."""
    entry = _tenants.get(hostname)
    if entry is not None and entry[0] > time.monotonic():
        return copy.copy(entry[1])
    if cached_only:
        return MISS
    domain = Domain.objects.select_related("tenant").filter(domain=hostname).first()
    if domain is None:
        return None
    _tenants[hostname] = (time.monotonic() + HOST_CACHE_SECONDS, domain.tenant)
    return copy.copy(domain.tenant)


def host_cache_clear() -> None:
    _tenants.clear()


@receiver(post_save, sender=Tenant, dispatch_uid="host_cache.tenant_saved")
@receiver(post_delete, sender=Tenant, dispatch_uid="host_cache.tenant_deleted")
@receiver(post_save, sender=Domain, dispatch_uid="host_cache.domain_saved")
@receiver(post_delete, sender=Domain, dispatch_uid="host_cache.domain_deleted")
def _changed(**kwargs) -> None:
    host_cache_clear()
