"""Twilio's webhooks: one URL for every tenant, routed by the number written to.

POST /webhooks/twilio/         an inbound WhatsApp message
POST /webhooks/twilio/status/  a status callback for a message we sent

Answers: 403 for a missing or wrong X-Twilio-Signature (checked with that session's own
auth token against the public URL, behind a proxy from the forwarded host and scheme),
404 for a number no session uses, 429 with Retry-After when limited, 400 for a body
that is not a Twilio message, 503 when the database is unavailable (Twilio retries),
and 200 — fast — for everything accepted, duplicates included.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_tenants.utils import schema_context
from twilio.request_validator import RequestValidator

from messaging.inbound import inbound_receive
from messaging.inbound_limits import inbound_volume_check
from messaging.models import MessagingSettings
from messaging.status import message_status_record
from sessions_app.models import Provider, WhatsAppSession
from sessions_app.phone_numbers import to_e164
from sessions_app.providers.twilio_provider import twilio_inbound_parse, twilio_status_parse
from tenants.middleware import tenant_suspended_response

logger = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _error(status: int, code: str, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _ok() -> HttpResponse:
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def _session_for(number: str) -> WhatsAppSession | None:
    try:
        e164 = to_e164(number)
    except ValidationError:
        return None
    return (
        WhatsAppSession.objects.select_related("tenant")
        .filter(provider=Provider.TWILIO, twilio_from_number=e164)
        .first()
    )


def _signed_urls(request) -> list[str]:
    """The URLs Twilio may have signed: as this request reached us (forwarded host and
    scheme when behind a proxy that we trust), and under PUBLIC_URL."""
    urls = [request.build_absolute_uri()]
    public = f"{settings.PUBLIC_URL}{request.get_full_path()}"
    if public not in urls:
        urls.append(public)
    return urls


def _signature_valid(request, session: WhatsAppSession) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not session.twilio_auth_token:
        return False
    validator = RequestValidator(str(session.twilio_auth_token))
    params = request.POST.dict()
    try:
        return any(validator.validate(url, params, signature) for url in _signed_urls(request))
    except Exception:  # a malformed header must be a 403, never a 500
        return False


def _checked_session(request, number_field: str):
    """(session, None) when the request may go on, else (None, the error response)."""
    session = _session_for(request.POST.get(number_field, ""))
    if session is None:
        return None, _error(404, "unknown_number", "No session receives messages for this number.")
    if not session.tenant.is_active:
        return None, tenant_suspended_response(request, session.tenant)
    if not _signature_valid(request, session):
        return None, _error(403, "bad_signature", "The X-Twilio-Signature header is not valid.")
    return session, None


@csrf_exempt
@require_POST
def twilio_inbound(request):
    try:
        session, refused = _checked_session(request, "To")
        if refused:
            return refused
        with schema_context(session.tenant.schema_name):
            per_minute = MessagingSettings.current().inbound_per_tenant_per_minute
        wait = inbound_volume_check(schema=session.tenant.schema_name, per_minute=per_minute)
        if wait:
            return _error(
                429, "rate_limited", "Too many messages; try again later.", Retry_After=str(wait)
            )
        try:
            inbound = twilio_inbound_parse(request.POST, session=session)
        except ValueError as error:
            return _error(400, "invalid_message", str(error))
        inbound_receive(session=session, inbound=inbound)
        return _ok()
    except DatabaseError:
        logger.exception("Twilio webhook: database unavailable")
        connection.close()
        return _error(503, "unavailable", "Try again shortly.", Retry_After="5")


@csrf_exempt
@require_POST
def twilio_status(request):
    try:
        # Status callbacks are about messages we sent: the session is the sender.
        session, refused = _checked_session(request, "From")
        if refused:
            return refused
        try:
            status = twilio_status_parse(request.POST)
        except ValueError as error:
            return _error(400, "invalid_status", str(error))
        with schema_context(session.tenant.schema_name):
            message_status_record(
                session_id=session.pk,
                provider_message_id=status.message_sid,
                status=status.status,
                error_code=status.error_code,
            )
        return _ok()
    except DatabaseError:
        logger.exception("Twilio status callback: database unavailable")
        connection.close()
        return _error(503, "unavailable", "Try again shortly.", Retry_After="5")
