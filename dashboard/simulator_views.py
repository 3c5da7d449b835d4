"""The phone simulator (owners only): a chat pane for sandbox sessions. Pick a number,
write as that person, see what the business sent back as that phone received it, and
scan a sandbox session's QR code."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import owner_required
from dashboard.forms import SimulatorScanForm, SimulatorWriteForm, service_errors_apply
from dashboard.session_views import wants_fragment
from sessions_app.models import Provider, SandboxMessage, WhatsAppSession
from sessions_app.phone_numbers import to_e164
from sessions_app.providers.sandbox import sandbox_phone_writes
from sessions_app.services import sandbox_scan

TRANSCRIPT_LIMIT = 200


def _sandbox_sessions(request):
    return WhatsAppSession.objects.filter(
        tenant=request.tenant, provider=Provider.SANDBOX
    ).order_by("created_at", "id")


def _sandbox_session(request, public_id) -> WhatsAppSession:
    return get_object_or_404(_sandbox_sessions(request), public_id=public_id)


def _phone_or_none(value: str) -> str | None:
    try:
        return to_e164(value) if value else None
    except ValidationError:
        return None


def _message_json(row: SandboxMessage) -> dict:
    return {
        "id": row.pk,
        "direction": row.direction,
        "kind": row.kind,
        "text": row.text,
        "payload": row.payload,
        "created_at": row.created_at.isoformat(),
        "delivered": row.delivered_at is not None or row.received_at is not None,
        "read": row.read_at is not None,
    }


def _transcript(session: WhatsAppSession, phone: str, after: int = 0):
    rows = SandboxMessage.objects.filter(session=session, phone=phone, pk__gt=after)
    return list(rows.order_by("-created_at", "-id")[:TRANSCRIPT_LIMIT])[::-1]


@owner_required
@require_GET
def simulator(request):
    sessions = list(_sandbox_sessions(request))
    selected = None
    wanted = request.GET.get("session")
    for session in sessions:
        if str(session.public_id) == wanted:
            selected = session
    if selected is None and sessions:
        selected = next((s for s in sessions if s.status == "CONNECTED"), sessions[0])
    phone = _phone_or_none(request.GET.get("phone", ""))
    phones: list[str] = []
    if selected is not None:
        recent = (
            SandboxMessage.objects.filter(session=selected)
            .order_by("-created_at")
            .values_list("phone", flat=True)[:200]
        )
        phones = list(dict.fromkeys([*selected.owner_numbers, *recent]))[:20]
        if phone is None:
            phone = selected.owner_numbers[0] if selected.owner_numbers else "+972500000001"
    return render(
        request,
        "dashboard/simulator.html",
        {
            "sessions": sessions,
            "selected": selected,
            "phone": phone,
            "phones": phones,
            "transcript": _transcript(selected, phone) if selected and phone else [],
            "write_form": SimulatorWriteForm(initial={"phone": phone}),
            "scan_form": SimulatorScanForm(initial={"phone": phone}),
        },
    )


@owner_required
@require_GET
def simulator_messages(request, public_id):
    session = _sandbox_session(request, public_id)
    phone = _phone_or_none(request.GET.get("phone", ""))
    if phone is None:
        return JsonResponse({"error": _("Enter a phone number.")}, status=400)
    try:
        after = max(0, int(request.GET.get("after", "0")))
    except ValueError:
        return JsonResponse({"error": _("`after` must be a number.")}, status=400)
    return JsonResponse(
        {
            "session": {"status": session.status, "phone_number": session.phone_number},
            "messages": [_message_json(row) for row in _transcript(session, phone, after)],
        }
    )


def _back(session: WhatsAppSession, phone: str | None):
    url = reverse("dashboard:simulator") + f"?session={session.public_id}"
    return redirect(url + (f"&phone={phone}" if phone else ""))


@owner_required
@require_POST
def simulator_write(request, public_id):
    session = _sandbox_session(request, public_id)
    form = SimulatorWriteForm(request.POST)
    if form.is_valid():
        try:
            row = sandbox_phone_writes(
                session_id=session.pk,
                phone_number=form.cleaned_data["phone"],
                text=form.cleaned_data["text"],
                push_name=form.cleaned_data["name"],
            )
        except ValidationError as error:
            service_errors_apply(form, error, {"phone_number": "phone"})
        else:
            if wants_fragment(request):
                return JsonResponse({"message": _message_json(row)}, status=201)
            return _back(session, row.phone)
    if wants_fragment(request):
        errors = {name: [str(m) for m in errs] for name, errs in form.errors.items()}
        return JsonResponse({"errors": errors}, status=400)
    for messages_ in form.errors.values():
        for message in messages_:
            messages.error(request, message)
    return _back(session, _phone_or_none(request.POST.get("phone", "")))


def _code_from(link: str, session: WhatsAppSession) -> str:
    """The code of a sandbox://link?session=...&code=... link, or the one shown now."""
    link = (link or session.qr_payload or "").strip()
    parsed = urlparse(link)
    query = parse_qs(parsed.query)
    if parsed.scheme != "sandbox" or not query.get("code"):
        raise ValidationError({"link": [_("This is not a sandbox QR code.")]})
    if query.get("session", [""])[0] != str(session.public_id):
        raise ValidationError({"link": [_("This QR code belongs to another session.")]})
    return query["code"][0]


@owner_required
@require_POST
def simulator_scan(request, public_id):
    session = _sandbox_session(request, public_id)
    form = SimulatorScanForm(request.POST)
    ok = False
    if form.is_valid():
        if not form.cleaned_data["link"] and not session.qr_payload:
            form.add_error(None, _("There is no QR code to scan: start the session first."))
        else:
            try:
                code = _code_from(form.cleaned_data["link"], session)
                sandbox_scan(session=session, code=code, phone_number=form.cleaned_data["phone"])
                ok = True
            except ValidationError as error:
                service_errors_apply(form, error, {"phone_number": "phone"})
    phone = _phone_or_none(request.POST.get("phone", ""))
    if wants_fragment(request):
        if ok:
            return JsonResponse({"ok": True}, status=202)
        errors = {name: [str(m) for m in errs] for name, errs in form.errors.items()}
        return JsonResponse({"errors": errors}, status=400)
    if ok:
        messages.success(request, _("Scanned: the session connects in a moment."))
    else:
        for messages_ in form.errors.values():
            for message in messages_:
                messages.error(request, message)
    return _back(session, phone)
