"""Every API error has one shape: `{"error": {"code", "message", "details"}}`.

`api_exception_handler` (DRF's EXCEPTION_HANDLER) turns DRF's exceptions, Django's
ValidationError / Http404 / PermissionDenied and the domain errors of the services
(orders' IllegalTransition and OrderError) into that shape with the right status. What
is left is a bug of ours: logged with its traceback, answered 500 in the same shape.
"""

from __future__ import annotations

import logging

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)

# DRF's codes where ours read better.
_CODES = {
    "invalid": "validation_error",
    "parse_error": "parse_error",
    "not_authenticated": "not_authenticated",
    "authentication_failed": "authentication_failed",
    "permission_denied": "permission_denied",
    "not_found": "not_found",
    "method_not_allowed": "method_not_allowed",
    "not_acceptable": "not_acceptable",
    "unsupported_media_type": "unsupported_media_type",
    "throttled": "rate_limited",
}


class ApiError(exceptions.APIException):
    """An error with our own code, status and details, raised by API views."""

    def __init__(self, *, status_code: int, code: str, message: str, details: dict | None = None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.details = details or {}


class Conflict(ApiError):
    def __init__(self, message: str, *, code: str = "conflict", details: dict | None = None):
        super().__init__(
            status_code=status.HTTP_409_CONFLICT, code=code, message=message, details=details
        )


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_json(status_code: int, code: str, message: str, details: dict | None = None):
    """The error shape as a plain Django response (for code outside DRF's views)."""
    return JsonResponse(error_body(code, message, details), status=status_code)


def _flatten(detail) -> object:
    """DRF's ErrorDetail trees as plain lists of strings, keyed by field."""
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [str(item) for item in detail]
        return [_flatten(item) for item in detail]
    return [str(detail)]


def _validation_details(detail) -> dict:
    flat = _flatten(detail)
    if isinstance(flat, dict):
        if "non_field_errors" in flat:
            flat[NON_FIELD_ERRORS] = flat.pop("non_field_errors")
        return flat
    return {NON_FIELD_ERRORS: flat if isinstance(flat, list) else [str(flat)]}


def _django_validation_details(error: DjangoValidationError) -> dict:
    if hasattr(error, "error_dict"):
        return {field: [str(m) for m in messages] for field, messages in error.message_dict.items()}
    return {NON_FIELD_ERRORS: [str(m) for m in error.messages]}


def _first_message(details: dict) -> str:
    for field, messages in details.items():
        if isinstance(messages, list) and messages and isinstance(messages[0], str):
            return messages[0] if field == NON_FIELD_ERRORS else f"{field}: {messages[0]}"
    return "The request is not valid."


def _response(status_code: int, code: str, message: str, details: dict | None = None, **headers):
    response = Response(error_body(code, message, details), status=status_code)
    for name, value in headers.items():
        if value is not None:
            response[name] = value
    return response


def api_exception_handler(exc, context):
    from orders.services import IllegalTransition, OrderError

    if isinstance(exc, ApiError):
        return _response(exc.status_code, exc.error_code, str(exc.detail), exc.details)
    if isinstance(exc, IllegalTransition):
        return _response(
            409,
            "illegal_transition",
            str(exc),
            {"current": exc.current, "requested": exc.requested, "allowed": list(exc.allowed)},
        )
    if isinstance(exc, OrderError):
        return _response(400, "order_error", str(exc), {NON_FIELD_ERRORS: [str(exc)]})
    if isinstance(exc, DjangoValidationError):
        details = _django_validation_details(exc)
        return _response(400, "validation_error", _first_message(details), details)
    if isinstance(exc, exceptions.ValidationError):
        details = _validation_details(exc.detail)
        return _response(400, "validation_error", _first_message(details), details)
    if isinstance(exc, Http404):
        return _response(404, "not_found", "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return _response(403, "permission_denied", str(exc) or "Not allowed.")
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
        code = _CODES.get(code, code)
        message = str(exc.detail) if not isinstance(exc.detail, dict | list) else "Error."
        headers = {}
        if isinstance(exc, exceptions.Throttled):
            wait = exc.wait if exc.wait is not None else 1
            headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            message = f"Too many requests for this key. Try again in {headers['Retry-After']} s."
            details = {"retry_after": int(headers["Retry-After"])}
        elif isinstance(exc, exceptions.MethodNotAllowed):
            details = {}
        else:
            details = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        return _response(exc.status_code, code, message, details, **headers)
    # Not an error of the caller's: a bug of ours. The traceback goes to the log.
    view = context.get("view")
    logger.exception("API error in %s", type(view).__name__ if view else "?")
    return _response(500, "server_error", "Something went wrong on our side.")


@csrf_exempt  # it changes nothing; a POST to a wrong address is a 404, not a CSRF page
def api_not_found(request, *args, **kwargs):
    """Any /api/ address no route matches."""
    return error_json(404, "not_found", f"There is no API endpoint at {request.path}.")
