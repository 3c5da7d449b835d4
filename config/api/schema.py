"""The OpenAPI description (drf-spectacular): the auth schemes, and the error envelope on
every operation with the statuses it can answer."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import is_list_serializer

ERROR_COMPONENT = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error the API answers has this shape.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Machine-readable: validation_error, parse_error, "
                    "not_authenticated, authentication_failed, insufficient_scope, "
                    "permission_denied, not_found, method_not_allowed, "
                    "unsupported_media_type, illegal_transition, conflict, rate_limited, "
                    "tenant_suspended, server_error, ...",
                },
                "message": {"type": "string", "description": "For people."},
                "details": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "validation_error: field name -> list of messages "
                    "(`__all__` for the request as a whole); illegal_transition: current, "
                    "requested, allowed; rate_limited: retry_after.",
                },
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}

_DESCRIPTIONS = {
    "400": "The request is not valid (details name the fields).",
    "401": "No API key, or one that is wrong, revoked or of another business.",
    "403": "The key lacks the scope this needs (insufficient_scope).",
    "404": "Not found (or not of this business).",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "415": "Unsupported media type.",
    "429": "Rate limited: wait Retry-After seconds.",
}
_ALWAYS = ("400", "401", "403", "404", "405", "406", "415", "429")


class ApiAutoSchema(AutoSchema):
    """Lists answer one page object (`results` and `next_cursor`), never a bare array:
    what each view declares is what it answers."""

    def _is_list_view(self, serializer=None) -> bool:
        return serializer is not None and is_list_serializer(serializer)

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        if getattr(self.view, "action", None) == "list":
            return operation_id.rsplit("_", 1)[0] + "_list"
        return operation_id


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "config.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key of this business: `Authorization: Bearer wak_…`.",
        }


class DashboardSessionScheme(OpenApiAuthenticationExtension):
    target_class = "config.api.auth.DashboardSessionAuthentication"
    name = "dashboardSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "A signed-in dashboard user (writes need the X-CSRFToken header).",
        }


def only_api_v1(endpoints):
    """Describe the integrators' API, not the schema and docs views themselves."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/v1/")]


def add_error_responses(result, generator, request, public):
    """The Error component, and on every operation an Error response for each status it
    may answer (besides its own success and conflict answers)."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components[ERROR_COMPONENT] = ERROR_SCHEMA
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for status in _ALWAYS:
                responses.setdefault(
                    status,
                    {
                        "description": _DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": reference}},
                    },
                )
            for status, response in responses.items():
                if status.startswith(("4", "5")) and "content" not in response:
                    response["content"] = {"application/json": {"schema": reference}}
    return result
