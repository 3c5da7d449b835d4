"""Dashboard pages of a tenant's host (home, team, the sign-up landing) and the sign-up
pages of the public host. Thin: each view parses input and calls one service."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import is_owner, owner_required
from dashboard.accounts import (
    login_link_consume,
    login_link_create,
    login_link_url,
    signup_create,
    signup_slug_check,
    staff_invite,
    staff_remove,
)
from dashboard.forms import SignupForm, StaffInviteForm, service_errors_apply
from messaging.owner_menu import owner_audit_entries, owner_lockouts_active
from sessions_app.incidents import incidents_open_for
from sessions_app.models import WhatsAppSession

logger = logging.getLogger(__name__)


@login_required
def home(request):
    context = {"tenant": request.tenant, "sessions": [], "incidents": []}
    if is_owner(request.user):
        context.update(
            sessions=WhatsAppSession.objects.filter(tenant=request.tenant).order_by(
                "created_at", "id"
            ),
            incidents=incidents_open_for(request.tenant),
            owner_activity=owner_audit_entries(limit=20),
            owner_lockouts=list(owner_lockouts_active()),
        )
    return render(request, "dashboard/home.html", context)


# --- sign-up (public host) ------------------------------------------------------------


def _public_only(request) -> None:
    tenant = getattr(request, "tenant", None)
    if tenant is not None and not tenant.is_public:
        raise Http404


def signup(request):
    _public_only(request)
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                tenant = signup_create(
                    name=data["name"],
                    slug=data["slug"],
                    email=data["email"],
                    password=data["password"],
                    language=data["language"],
                )
            except ValidationError as error:
                service_errors_apply(
                    form, error, {"owner_email": "email", "owner_password": "password"}
                )
            else:
                token = login_link_create(tenant=tenant, email=data["email"])
                port = request.get_port()
                default_port = "443" if request.is_secure() else "80"
                url = login_link_url(
                    tenant=tenant,
                    token=token,
                    scheme=request.scheme,
                    port=None if port == default_port else port,
                )
                return redirect(url)
        return render(request, "dashboard/signup.html", {"form": form}, status=400)
    return render(request, "dashboard/signup.html", {"form": SignupForm()})


@require_GET
def signup_check(request):
    """Live availability of a subdomain while the form is typed."""
    _public_only(request)
    slug = request.GET.get("slug", "")
    problems = signup_slug_check(slug=slug)
    return JsonResponse(
        {"slug": slug.strip().lower(), "available": not problems, "errors": problems}
    )


@require_GET
def welcome(request, token):
    """Where sign-up sends the new owner: the one-time link signs them in here."""
    user = login_link_consume(token=token)
    if user is None:
        messages.error(request, _("This sign-in link has expired. Sign in with your password."))
        return redirect("login")
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, _("Welcome! Your business is ready: add a WhatsApp number."))
    response = redirect("dashboard:home")
    # The language chosen at sign-up, on this host from now on.
    response.set_cookie(settings.LANGUAGE_COOKIE_NAME, request.tenant.language, samesite="Lax")
    return response


# --- team (owners invite staff) -------------------------------------------------------


@owner_required
def team(request):
    form = StaffInviteForm()
    status = 200
    if request.method == "POST":
        form = StaffInviteForm(request.POST)
        if form.is_valid():
            try:
                user = staff_invite(
                    email=form.cleaned_data["email"],
                    name=form.cleaned_data["name"],
                    base_url=f"{request.scheme}://{request.get_host()}",
                )
            except ValidationError as error:
                service_errors_apply(form, error)
            else:
                messages.success(
                    request,
                    _("Invitation sent to %(email)s.") % {"email": user.email},
                )
                return redirect("dashboard:team")
        status = 400
    users = get_user_model().objects.order_by("role", "email")
    return render(request, "dashboard/team.html", {"form": form, "users": users}, status=status)


@owner_required
@require_POST
def team_remove(request, user_id):
    user = get_object_or_404(get_user_model(), pk=user_id)
    try:
        staff_remove(user=user, by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("%(email)s removed.") % {"email": user.email})
    return redirect("dashboard:team")
