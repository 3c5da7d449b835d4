"""Who calls the API: an integrator's key (`Authorization: Bearer <key>`), or a signed-in
dashboard user of this tenant (browser session, with CSRF on writes).

A key is looked up by its hash AND the tenant of the host the request came to
(`tenants.api_keys.api_key_authenticate`): a key of another tenant is refused with
exactly the answer a wrong or revoked key gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rest_framework import authentication, exceptions

from tenants.api_keys import api_key_authenticate
from tenants.models import ApiKey

ALL_SCOPES = frozenset(ApiKey.Scope.values)
INVALID_KEY = "The API key is not valid for this address, or has been revoked."


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """request.user for a request made with an API key (not a Django user)."""

    key_id: int
    name: str
    prefix: str
    scopes: frozenset = field(default_factory=frozenset)
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True

    @property
    def pk(self) -> str:  # throttling and logging name the key, never the user
        return f"key:{self.key_id}"

    @property
    def label(self) -> str:
        return f"API key {self.name} ({self.prefix}…)"

    def __str__(self) -> str:
        return self.label


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        parts = header.split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the key as `Authorization: Bearer <key>`.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(INVALID_KEY) from None
        tenant = getattr(request._request, "tenant", None)
        if tenant is None or tenant.is_public:
            raise exceptions.AuthenticationFailed(INVALID_KEY)
        key = api_key_authenticate(tenant=tenant, raw_key=raw)
        if key is None:
            raise exceptions.AuthenticationFailed(INVALID_KEY)
        principal = ApiKeyPrincipal(
            key_id=key.pk, name=key.name, prefix=key.prefix, scopes=frozenset(key.scopes)
        )
        return principal, key

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class DashboardSessionAuthentication(authentication.SessionAuthentication):
    """A signed-in dashboard user of this tenant (users live in the tenant's schema, and
    session cookies are per host). Writes need the CSRF token, as DRF enforces."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        if not getattr(user, "is_active", False):
            return None
        return user, None


def scopes_of(request) -> frozenset:
    """The scopes the caller holds: a key's own; a dashboard user's by role (an owner
    may do everything; staff read, send and run orders, but do not manage)."""
    user = request.user
    if isinstance(user, ApiKeyPrincipal):
        return user.scopes
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    role = getattr(user, "role", "")
    if role == "owner" or getattr(user, "is_superuser", False):
        return ALL_SCOPES
    return frozenset({ApiKey.Scope.READ, ApiKey.Scope.SEND})


def actor_of(request) -> tuple[str, str]:
    """(actor_kind, actor_label) for history rows such as order events."""
    user = request.user
    if isinstance(user, ApiKeyPrincipal):
        return "api", user.label
    role = getattr(user, "role", "")
    return ("owner" if role == "owner" else "staff"), str(getattr(user, "email", "") or user)
