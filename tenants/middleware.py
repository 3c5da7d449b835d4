"""Tenant resolution from the host, and the refusal of suspended tenants."""

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django_tenants.middleware.main import TenantMainMiddleware

from tenants.host_cache import tenant_for_host
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# Machine clients get JSON errors in the API's format; people get a page.
MACHINE_PATH_PREFIXES = ("/api/", "/webhooks/")
# How long a client should wait when the database is unavailable (Twilio retries).
RETRY_AFTER_SECONDS = 5


def wants_json(request) -> bool:
    return request.path.startswith(
        MACHINE_PATH_PREFIXES
    ) or "application/json" in request.headers.get("Accept", "")


def error_response(request, *, status: int, code: str, message: str, template: str):
    if wants_json(request):
        # The REST API's error shape (config/api/errors.py), details included.
        body = {"error": {"code": code, "message": message, "details": {}}}
        return JsonResponse(body, status=status)
    return render(request, template, {"message": message}, status=status)


def database_unavailable_response(request):
    """HTTP 503 with Retry-After: the database cannot be reached or has no free connection."""
    response = error_response(
        request,
        status=503,
        code="unavailable",
        message=_("The service is briefly unavailable. Try again in a few seconds."),
        template="tenants/unavailable.html",
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def tenant_suspended_response(request, tenant: Tenant):
    """What a suspended tenant's dashboard, API and webhooks answer (HTTP 403)."""
    return error_response(
        request,
        status=403,
        code="tenant_suspended",
        message=_(
            "The account of %(name)s is suspended. Contact the platform's support to reactivate it."
        )
        % {"name": tenant.name},
        template="tenants/suspended.html",
    )


class TenantMiddleware(TenantMainMiddleware):
    """django-tenants' host resolution, with a clear answer for an unknown host, and a 503
    (never a 500) when the database cannot tell which tenant the host belongs to."""

    def process_request(self, request):
        try:
            return super().process_request(request)
        except DatabaseError:
            logger.warning("tenant resolution: database unavailable", exc_info=True)
            connection.close()  # a broken connection is not given to the next request
            return database_unavailable_response(request)

    def get_tenant(self, domain_model, hostname):
        """From the per-process cache of hosts (tenants/host_cache.py): a few seconds old
        at most, and one query fewer on every request."""
        tenant = tenant_for_host(hostname)
        if tenant is None:
            raise domain_model.DoesNotExist
        return tenant

    def no_tenant_found(self, request, hostname):
        return error_response(
            request,
            status=404,
            code="unknown_host",
            message=_("No business uses the address %(host)s.") % {"host": hostname},
            template="tenants/unknown_host.html",
        )


class SuspendedTenantMiddleware:
    """Refuses every request to a suspended tenant's host (static files excepted).

    Sync and async: Django runs it in whichever mode its neighbours run, so it never adds
    a thread handoff of its own."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _refusal(self, request):
        tenant = getattr(request, "tenant", None)
        suspended = tenant is not None and not tenant.is_active and not tenant.is_public
        if suspended and not request.path.startswith("/static/"):
            return tenant_suspended_response(request, tenant)
        return None

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return self._refusal(request) or self.get_response(request)

    async def __acall__(self, request):
        return self._refusal(request) or await self.get_response(request)
