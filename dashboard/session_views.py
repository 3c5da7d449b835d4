"""Sessions pages (owners only): cards with live status and QR codes, actions, pairing,
adding and editing a session, its status history. Thin: each view calls one service."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import owner_required
from dashboard.forms import (
    PairingForm,
    SessionCreateForm,
    SessionSettingsForm,
    service_errors_apply,
)
from sessions_app import services as session_services
from sessions_app.models import Provider, Status, WhatsAppSession
from sessions_app.qr import qr_svg

ACTIONS = {
    "start": session_services.session_start,
    "stop": session_services.session_stop,
    "restart": session_services.session_restart,
    "logout": session_services.session_logout,
}
ACTION_DONE = {
    "start": gettext_lazy("Start requested."),
    "stop": gettext_lazy("Stop requested."),
    "restart": gettext_lazy("Restart requested."),
    "logout": gettext_lazy("Log out requested."),
}


def wants_fragment(request) -> bool:
    """Set by the dashboard's scripts: answer with the changed part of the page."""
    return request.headers.get("X-Requested-With") == "fetch"


def tenant_session(request, public_id) -> WhatsAppSession:
    """A session of THIS tenant, or 404 (another tenant's id is unknown here)."""
    return get_object_or_404(
        WhatsAppSession.objects.select_related("tenant"), public_id=public_id, tenant=request.tenant
    )


def card_context(session: WhatsAppSession) -> dict:
    show_qr = session.status == Status.WAIT_QR and bool(session.qr_payload)
    return {
        "session": session,
        "qr_svg": qr_svg(session.qr_payload) if show_qr else "",
        "pairing_form": PairingForm(),
        "is_live": session.is_live_provider,
        "is_sandbox": session.provider == Provider.SANDBOX,
        "can_pair": session.provider == Provider.NEONIZE,
    }


def card_html(request, session: WhatsAppSession, error: str = "") -> str:
    context = {**card_context(session), "error": error}
    return render_to_string("dashboard/_session_card.html", context, request=request)


@owner_required
@require_GET
def sessions_list(request):
    sessions = WhatsAppSession.objects.filter(tenant=request.tenant).order_by("created_at", "id")
    provider = request.GET.get("provider", Provider.SANDBOX)
    form = SessionCreateForm(initial={"provider": provider, "start_now": True})
    return render(
        request,
        "dashboard/sessions.html",
        {"cards": [card_context(session) for session in sessions], "form": form},
    )


@owner_required
@require_GET
def session_card(request, public_id):
    return HttpResponse(card_html(request, tenant_session(request, public_id)))


@owner_required
@require_POST
def session_add(request):
    form = SessionCreateForm(request.POST)
    if form.is_valid():
        try:
            session = session_services.session_create(
                tenant=request.tenant, **form.service_kwargs()
            )
        except ValidationError as error:
            service_errors_apply(form, error)
        else:
            if form.cleaned_data.get("start_now"):
                session = session_services.session_start(session=session)
            messages.success(request, _("Session %(name)s added.") % {"name": session.name})
            return redirect("dashboard:sessions")
    sessions = WhatsAppSession.objects.filter(tenant=request.tenant).order_by("created_at", "id")
    return render(
        request,
        "dashboard/sessions.html",
        {"cards": [card_context(s) for s in sessions], "form": form, "adding": True},
        status=400,
    )


@owner_required
@require_POST
def session_action(request, public_id, action):
    session = tenant_session(request, public_id)
    service = ACTIONS.get(action)
    if service is None:
        return HttpResponse(status=404)
    error = None
    try:
        service(session=session)
    except ValidationError as exc:
        error = " ".join(exc.messages)
    session.refresh_from_db()
    if wants_fragment(request):
        return HttpResponse(card_html(request, session, error or ""), status=400 if error else 200)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"{session.name}: {ACTION_DONE[action]}")
    return redirect("dashboard:sessions")


@owner_required
@require_POST
def session_pair(request, public_id):
    session = tenant_session(request, public_id)
    form = PairingForm(request.POST)
    error = None
    if form.is_valid():
        try:
            session_services.session_pair_phone(
                session=session, phone_number=form.cleaned_data["phone_number"]
            )
        except ValidationError as exc:
            error = " ".join(exc.messages)
    else:
        error = _("Enter the phone number to pair.")
    if wants_fragment(request):
        session.refresh_from_db()
        return HttpResponse(card_html(request, session, error or ""), status=400 if error else 202)
    if error:
        messages.error(request, error)
    else:
        messages.success(
            request, _("Pairing code requested: it appears on the card in a few seconds.")
        )
    return redirect("dashboard:sessions")


@owner_required
def session_edit(request, public_id):
    session = tenant_session(request, public_id)
    if request.method == "POST":
        form = SessionSettingsForm(request.POST)
        if form.is_valid():
            try:
                session_services.session_update(session=session, **form.service_kwargs())
            except ValidationError as error:
                service_errors_apply(form, error)
            else:
                messages.success(request, _("Saved."))
                return redirect("dashboard:sessions")
        return render(
            request, "dashboard/session_edit.html", {"session": session, "form": form}, status=400
        )
    form = SessionSettingsForm(
        initial={
            "owner_numbers": ", ".join(session.owner_numbers),
            "customer_mode": session.customer_mode,
            "humanization_profile": session.humanization_profile,
        }
    )
    return render(request, "dashboard/session_edit.html", {"session": session, "form": form})


@owner_required
@require_POST
def session_remove(request, public_id):
    session = tenant_session(request, public_id)
    try:
        session_services.session_delete(session=session)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("Session %(name)s deleted.") % {"name": session.name})
    return redirect("dashboard:sessions")


@owner_required
@require_GET
def session_history(request, public_id):
    session = tenant_session(request, public_id)
    return render(
        request,
        "dashboard/session_history.html",
        {"session": session, "changes": session.history.all()[:200]},
    )
