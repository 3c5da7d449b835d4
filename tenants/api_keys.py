"""API keys: created (shown once), looked up by hash within one tenant, revoked.

A key looks like `wak_3f9c1a2b_<43 random characters>`; its first 12 characters are its
visible prefix. Only the SHA-256 of the whole key is stored. A lookup always names the
tenant whose host the request came to, so a key used on another tenant's host is not
found at all — the same answer as a wrong key.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from tenants.models import ApiKey, Tenant

logger = logging.getLogger(__name__)

KEY_PREFIX = "wak_"
PREFIX_LENGTH = 12  # "wak_" and 8 hexadecimal characters
# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).hexdigest()


def _new_raw_key() -> str:
    return f"{KEY_PREFIX}{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


def api_key_create(
    *, tenant: Tenant, name: str, scopes, created_by: str = ""
) -> tuple[ApiKey, str]:
    """Create a key; returns it with the raw key, which is never stored or shown again."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["A name is required."]
    elif len(name) > 80:
        errors["name"] = ["Use at most 80 characters."]
    scopes = list(dict.fromkeys(scopes or []))
    unknown = [scope for scope in scopes if scope not in ApiKey.Scope.values]
    if not scopes:
        errors["scopes"] = [f"Choose at least one of {', '.join(ApiKey.Scope.values)}."]
    elif unknown:
        errors["scopes"] = [
            f"Unknown scope {scope!r}: choose from {', '.join(ApiKey.Scope.values)}."
            for scope in unknown
        ]
    if errors:
        raise ValidationError(errors)
    raw = _new_raw_key()
    key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=raw[:PREFIX_LENGTH],
        key_hash=api_key_hash(raw),
        scopes=sorted(scopes),
        created_by=created_by[:254],
    )
    logger.info("api key %s (%s) created for %s", key.pk, key.prefix, tenant.schema_name)
    return key, raw


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key at once (idempotent: revoking twice keeps the first time)."""
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            logger.info("api key %s (%s) revoked", locked.pk, locked.prefix)
    return locked


def api_keys_of(*, tenant: Tenant):
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at", "-id")


def api_key_authenticate(*, tenant: Tenant, raw_key: str) -> ApiKey | None:
    """The active key with this value *of this tenant*, or None (wrong, revoked, or
    another tenant's: the caller cannot tell which). Records when it was last used."""
    if not raw_key or not raw_key.startswith(KEY_PREFIX) or len(raw_key) > 200:
        return None
    key = (
        ApiKey.objects.filter(
            tenant=tenant, key_hash=api_key_hash(raw_key), revoked_at__isnull=True
        )
        .only("id", "tenant_id", "name", "prefix", "scopes", "last_used_at", "revoked_at")
        .first()
    )
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
