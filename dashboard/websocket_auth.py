"""Tenant and user for websockets, where Django's middleware does not run.

The tenant comes from the Host header exactly as for HTTP; the user comes from the
session cookie looked up in *that tenant's* schema, so a cookie from one tenant means
nothing on another's host.
"""

from importlib import import_module

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.http.cookie import parse_cookie
from django.utils.crypto import constant_time_compare
from django_tenants.utils import get_tenant_domain_model, remove_www


def _host_from_scope(scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return remove_www(value.decode("latin-1").split(":")[0].lower())
    return ""


def _user_from_session(session_key: str | None):
    if not session_key:
        return AnonymousUser()
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    try:
        user_id = session[SESSION_KEY]
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return AnonymousUser()
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    user = load_backend(backend_path).get_user(user_id)
    if user is None:
        return AnonymousUser()
    # Same check as django.contrib.auth.get_user: a changed password ends the session.
    if not constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return AnonymousUser()
    return user


@database_sync_to_async
def resolve_tenant_and_user(host: str, session_key: str | None):
    connection.set_schema_to_public()
    try:
        domain = get_tenant_domain_model().objects.select_related("tenant").get(domain=host)
    except get_tenant_domain_model().DoesNotExist:
        return None, AnonymousUser()
    tenant = domain.tenant
    if tenant.is_public:
        return None, AnonymousUser()
    connection.set_tenant(tenant)
    try:
        return tenant, _user_from_session(session_key)
    finally:
        connection.set_schema_to_public()


class TenantAuthMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        raw_cookies = dict(scope.get("headers", [])).get(b"cookie", b"")
        cookies = parse_cookie(raw_cookies.decode("latin-1"))
        tenant, user = await resolve_tenant_and_user(
            _host_from_scope(scope), cookies.get(settings.SESSION_COOKIE_NAME)
        )
        return await self.inner(dict(scope, tenant=tenant, user=user), receive, send)
