"""Scopes: `read` for GETs, and what a view names for its writes (`send` or `manage`).

A view sets `write_scope` (default "manage") and may set `scopes_by_action` (DRF action
name -> scope) where one view mixes them."""

from __future__ import annotations

from rest_framework import permissions

from config.api.auth import scopes_of
from config.api.errors import ApiError


def required_scope(request, view) -> str:
    by_action = getattr(view, "scopes_by_action", {}) or {}
    action = getattr(view, "action", None)
    if action in by_action:
        return by_action[action]
    if request.method in permissions.SAFE_METHODS:
        return "read"
    return getattr(view, "write_scope", "manage")


class HasScope(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        if not getattr(request.user, "is_authenticated", False):
            return False  # DRF answers 401 with the authenticate header
        scope = required_scope(request, view)
        held = scopes_of(request)
        if scope in held:
            return True
        raise ApiError(
            status_code=403,
            code="insufficient_scope",
            message=f"This needs the {scope!r} scope, which this key does not have.",
            details={"required": scope, "held": sorted(held)},
        )
