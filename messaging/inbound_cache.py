"""What the Twilio webhook needs on every request and that rarely changes, kept in each
process for CACHE_SECONDS: the session behind a `To` number (with its tenant and its
decrypted auth token) and a tenant's inbound limit; which tenant a host belongs to is
kept alongside, by tenants/host_cache.py.

So a changed auth token, a suspension, a new limit or a new domain takes effect within
CACHE_SECONDS (5 s) in every web process, and at once in the process that saved it
through the ORM (post_save/post_delete clear that process's entries). `tenant_suspend`
updates without signals: there it is the 5 seconds. Numbers that no session uses are not
kept, so a new session receives at once.

The entries are shared by the requests of a process: read them, never change them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_tenants.utils import schema_context

from messaging.models import MessagingSettings
from sessions_app.models import Provider, WhatsAppSession
from sessions_app.phone_numbers import to_e164
from tenants.host_cache import MISS as HOST_MISS
from tenants.host_cache import host_cache_clear, tenant_for_host
from tenants.models import Domain, Tenant

CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class TwilioNumber:
    session: WhatsAppSession  # with .tenant loaded
    auth_token: str  # decrypted; "" when the session has none

    @property
    def schema(self) -> str:
        return self.session.tenant.schema_name


@dataclass(frozen=True)
class HostTenant:
    schema: str
    is_active: bool
    is_public: bool


MISS = object()  # what a lookup with cached_only=True returns when it would read


class _Entries(dict):
    """key -> (expires at, value)."""

    def fresh(self, key):
        entry = self.get(key)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else MISS

    def keep(self, key, value):
        self[key] = (time.monotonic() + CACHE_SECONDS, value)
        return value


_numbers, _limits = _Entries(), _Entries()


def twilio_number_lookup(number: str, *, cached_only: bool = False) -> TwilioNumber | None:
    """The Twilio session that `number` (as Twilio posts it: whatsapp:+...) belongs to."""
    found = _numbers.fresh(number)
    if found is not MISS or cached_only:
        return found
    try:
        e164 = to_e164(number)
    except ValidationError:
        return None
    session = (
        WhatsAppSession.objects.select_related("tenant")
        .filter(provider=Provider.TWILIO, twilio_from_number=e164)
        .first()
    )
    if session is None:
        return None
    found = TwilioNumber(session=session, auth_token=str(session.twilio_auth_token or ""))
    return _numbers.keep(number, found)


def inbound_per_tenant_per_minute(schema: str, *, cached_only: bool = False) -> int:
    """The tenant's MessagingSettings.inbound_per_tenant_per_minute."""
    found = _limits.fresh(schema)
    if found is not MISS or cached_only:
        return found
    with schema_context(schema):
        per_minute = MessagingSettings.current().inbound_per_tenant_per_minute
    return _limits.keep(schema, per_minute)


def host_tenant_lookup(hostname: str, *, cached_only: bool = False) -> HostTenant | None:
    """The tenant a host name (without port) belongs to, as django-tenants resolves it
    (tenants/host_cache.py keeps it)."""
    tenant = tenant_for_host(hostname, cached_only=cached_only)
    if tenant is None or tenant is HOST_MISS:
        return MISS if tenant is HOST_MISS else None
    return HostTenant(tenant.schema_name, tenant.is_active, tenant.is_public)


def inbound_caches_clear() -> None:
    _numbers.clear()
    _limits.clear()
    host_cache_clear()


@receiver(post_save, sender=WhatsAppSession, dispatch_uid="inbound_cache.session_saved")
@receiver(post_delete, sender=WhatsAppSession, dispatch_uid="inbound_cache.session_deleted")
@receiver(post_save, sender=Tenant, dispatch_uid="inbound_cache.tenant_saved")
@receiver(post_delete, sender=Tenant, dispatch_uid="inbound_cache.tenant_deleted")
@receiver(post_save, sender=Domain, dispatch_uid="inbound_cache.domain_saved")
@receiver(post_delete, sender=Domain, dispatch_uid="inbound_cache.domain_deleted")
@receiver(post_save, sender=MessagingSettings, dispatch_uid="inbound_cache.settings_saved")
def _changed(**kwargs) -> None:
    inbound_caches_clear()
