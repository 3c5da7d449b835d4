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

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_tenants.utils import schema_context
from twilio.request_validator import RequestValidator

from messaging.inbound import inbound_receive
from messaging.inbound_cache import (
    TwilioNumber,
    inbound_per_tenant_per_minute,
    twilio_number_lookup,
)
from messaging.inbound_limits import inbound_volume_check
from messaging.status import message_status_record
from sessions_app.providers.twilio_provider import twilio_inbound_parse, twilio_status_parse
from tenants.middleware import RETRY_AFTER_SECONDS, tenant_suspended_response

logger = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _error(status: int, code: str, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _ok() -> HttpResponse:
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def unknown_number() -> JsonResponse:
    return _error(404, "unknown_number", "No session receives messages for this number.")


def bad_signature() -> JsonResponse:
    return _error(403, "bad_signature", "The X-Twilio-Signature header is not valid.")


def rate_limited(wait: int) -> JsonResponse:
    return _error(429, "rate_limited", "Too many messages; try again later.", Retry_After=str(wait))


def invalid(code: str, error: ValueError) -> JsonResponse:
    return _error(400, code, str(error))


def unavailable() -> JsonResponse:
    return _error(503, "unavailable", "Try again shortly.", Retry_After=str(RETRY_AFTER_SECONDS))


def _signed_urls(request) -> list[str]:
    """The URLs Twilio may have signed: as this request reached us (forwarded host and
    scheme when behind a proxy that we trust), and under PUBLIC_URL."""
    urls = [request.build_absolute_uri()]
    public = f"{settings.PUBLIC_URL}{request.get_full_path()}"
    if public not in urls:
        urls.append(public)
    return urls


def signature_valid(request, number: TwilioNumber) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not number.auth_token:
        return False
    validator = RequestValidator(number.auth_token)
    params = request.POST.dict()
    try:
        return any(validator.validate(url, params, signature) for url in _signed_urls(request))
    except Exception:  # a malformed header must be a 403, never a 500
        return False


def refusal(request, number: TwilioNumber | None):
    """The answer to a request that may not go on (unknown number, suspended tenant, bad
    signature), or None. No database: `number` comes from the per-process cache."""
    if number is None:
        return unknown_number()
    if not number.session.tenant.is_active:
        return tenant_suspended_response(request, number.session.tenant)
    if not signature_valid(request, number):
        return bad_signature()
    return None


def _checked_number(request, number_field: str):
    """(number, None) when the request may go on, else (None, the error response)."""
    number = twilio_number_lookup(request.POST.get(number_field, ""))
    refused = refusal(request, number)
    return (None, refused) if refused else (number, None)


@csrf_exempt
@require_POST
def twilio_inbound(request):
    """The fallback of messaging/twilio_fast.py, which answers most of these itself."""
    try:
        number, refused = _checked_number(request, "To")
        if refused:
            return refused
        wait = inbound_volume_check(
            schema=number.schema, per_minute=inbound_per_tenant_per_minute(number.schema)
        )
        if wait:
            return rate_limited(wait)
        try:
            inbound = twilio_inbound_parse(request.POST, session=number.session)
        except ValueError as error:
            return invalid("invalid_message", error)
        inbound_receive(session=number.session, inbound=inbound)
        return _ok()
    except (DatabaseError, redis.RedisError):
        logger.exception("Twilio webhook: database or Redis unavailable")
        connection.close()
        return unavailable()


@csrf_exempt
@require_POST
def twilio_status(request):
    try:
        # Status callbacks are about messages we sent: the session is the sender.
        number, refused = _checked_number(request, "From")
        if refused:
            return refused
        try:
            status = twilio_status_parse(request.POST)
        except ValueError as error:
            return invalid("invalid_status", error)
        with schema_context(number.schema):
            message_status_record(
                session_id=number.session.pk,
                provider_message_id=status.message_sid,
                status=status.status,
                error_code=status.error_code,
            )
        return _ok()
    except DatabaseError:
        logger.exception("Twilio status callback: database unavailable")
        connection.close()
        return unavailable()
