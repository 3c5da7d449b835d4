"""Accounts of the dashboard: sign-up of a new business, the one-time link that signs
its owner in on the new host, and staff invitations.

A tenant's users live in its own schema, and each host has its own session cookie, so
the public host cannot sign anybody in on a tenant's host directly: sign-up leaves a
short-lived, single-use login link in Redis and sends the browser to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _

from config.redis_client import redis_client
from tenants.models import Tenant
from tenants.services import NewTenant, tenant_create, tenant_host, tenant_validate

logger = logging.getLogger(__name__)

LOGIN_LINK_SECONDS = 120
_LOGIN_LINK_PREFIX = "dashboard:login-link:"
# Only the slug is checked by `signup_slug_check`; these stand in for the rest.
_PLACEHOLDER_PASSWORD = "Placeholder-Only-For-Slug-Checks-9!"  # noqa: S105


def signup_slug_check(*, slug: str) -> list[str]:
    """What is wrong with this subdomain (empty list: free to take)."""
    slug = (slug or "").strip().lower()
    try:
        tenant_validate(
            NewTenant(
                slug=slug,
                name="-",
                owner_email="slug-check@example.com",
                owner_password=_PLACEHOLDER_PASSWORD,
            )
        )
    except ValidationError as error:
        return error.message_dict.get("slug", [])
    return []


def signup_create(*, name: str, slug: str, email: str, password: str, language: str) -> Tenant:
    """Create the business, its schema and its owner (tenants.services.tenant_create: all
    or nothing, errors per field: slug, name, owner_email, owner_password)."""
    tenant = tenant_create(
        NewTenant(
            slug=(slug or "").strip().lower(),
            name=name or "",
            owner_email=(email or "").strip().lower(),
            owner_password=password or "",
            language=language,
        )
    )
    logger.info("sign-up: tenant %s", tenant.schema_name)
    return tenant


def _link_key(token: str) -> str:
    return _LOGIN_LINK_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def login_link_create(*, tenant: Tenant, email: str) -> str:
    """A token that signs `email` in on `tenant`'s host once, within two minutes."""
    token = secrets.token_urlsafe(32)
    value = json.dumps({"schema": tenant.schema_name, "email": email.strip().lower()})
    redis_client().set(_link_key(token), value, ex=LOGIN_LINK_SECONDS)
    return token


def login_link_url(*, tenant: Tenant, token: str, scheme: str, port: str | None) -> str:
    host = tenant_host(tenant.slug) + (f":{port}" if port else "")
    # Tenant hosts have their own URL conf; the public host (sign-up) is on another.
    path = reverse("dashboard:welcome", args=[token], urlconf=settings.ROOT_URLCONF)
    return f"{scheme}://{host}{path}"


def login_link_consume(*, token: str):
    """The user the token was made for, in the CURRENT tenant schema, or None.

    The token is gone after the first try, and a token made for another tenant signs
    nobody in here."""
    raw = redis_client().getdel(_link_key(token or ""))
    if not raw:
        return None
    data = json.loads(raw)
    if data.get("schema") != connection.schema_name:
        logger.warning("login link for %s used on another host", data.get("schema"))
        return None
    return get_user_model().objects.filter(email=data.get("email"), is_active=True).first()


# --- staff ------------------------------------------------------------------------------


def staff_invite(*, email: str, name: str = "", base_url: str):
    """Create a staff member (no password yet) in the current tenant schema and email them
    a link to choose one. `base_url` is the tenant host's address (scheme and host)."""
    email = (email or "").strip().lower()
    errors: dict[str, list[str]] = {}
    try:
        validate_email(email)
    except ValidationError:
        errors["email"] = [_("Enter a valid email address.")]
    User = get_user_model()
    if not errors and User.objects.filter(email=email).exists():
        errors["email"] = [_("This person already has an account here.")]
    if len((name or "").strip()) > 120:
        errors["name"] = [_("Use at most 120 characters.")]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        user = User.objects.create_user(email=email, password=None, name=(name or "").strip())
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        token = default_token_generator.make_token(user)
        link = base_url.rstrip("/") + reverse(
            "password_reset_confirm", kwargs={"uidb64": uid, "token": token}
        )
        business = getattr(connection, "tenant", None)
        body = render_to_string(
            "registration/invite_email.txt",
            {"link": link, "business": getattr(business, "name", ""), "user": user},
        )
        subject = _("You are invited to the %(business)s dashboard") % {
            "business": getattr(business, "name", "")
        }
        transaction.on_commit(lambda: send_mail(subject, body, None, [email]))
    logger.info("staff member %s invited", user.pk)
    return user


def staff_remove(*, user, by) -> None:
    """Remove a staff member. Owners are not removed here (nor anybody by themselves)."""
    if user.pk == by.pk or user.role != "staff":
        raise ValidationError(_("Only staff members can be removed."))
    user_id = user.pk
    user.delete()
    logger.info("staff member %s removed", user_id)
