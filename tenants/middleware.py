"""Tenant resolution from the host, and the refusal of suspended tenants."""

from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django_tenants.middleware.main import TenantMainMiddleware

from tenants.models import Tenant

# Machine clients get JSON errors in the API's format; people get a page.
MACHINE_PATH_PREFIXES = ("/api/", "/webhooks/")


def wants_json(request) -> bool:
    return request.path.startswith(
        MACHINE_PATH_PREFIXES
    ) or "application/json" in request.headers.get("Accept", "")


def error_response(request, *, status: int, code: str, message: str, template: str):
    if wants_json(request):
        return JsonResponse({"error": {"code": code, "message": message}}, status=status)
    return render(request, template, {"message": message}, status=status)


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
    """django-tenants' host resolution, with a clear answer for an unknown host."""

    def no_tenant_found(self, request, hostname):
        return error_response(
            request,
            status=404,
            code="unknown_host",
            message=_("No business uses the address %(host)s.") % {"host": hostname},
            template="tenants/unknown_host.html",
        )


class SuspendedTenantMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        tenant = getattr(request, "tenant", None)
        suspended = tenant is not None and not tenant.is_active and not tenant.is_public
        if suspended and not request.path.startswith("/static/"):
            return tenant_suspended_response(request, tenant)
        return self.get_response(request)
