"""Who may open which dashboard page: a signed-in user of this tenant, and for some pages
an owner. Staff see orders, the inbox and the log; settings, keys and sessions are the
owners'."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.translation import gettext as _


def is_owner(user) -> bool:
    return bool(user.is_authenticated and user.role == "owner")


def owner_required(view):
    """Sign-in first (redirect to the login page), then a 403 page for staff."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_owner(request.user):
            return render(
                request,
                "dashboard/forbidden.html",
                {"message": _("Only the business owner can open this page.")},
                status=403,
            )
        return view(request, *args, **kwargs)

    return login_required(wrapped)
