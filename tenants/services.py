"""Tenant provisioning and suspension: the only code that writes tenants."""

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django_tenants.utils import get_public_schema_name, schema_context, schema_exists

from tenants.host_cache import host_cache_clear
from tenants.models import Domain, Tenant, schema_name_for_slug, validate_slug, validate_timezone

logger = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every process.
_BASE_SCHEMA_LOCK = 7_340_001


def tenant_host(slug: str) -> str:
    return f"{slug}.{settings.BASE_DOMAIN}"


def _tenant_app_labels() -> set[str]:
    return {app.rsplit(".", 1)[-1] for app in settings.TENANT_APPS}


def _base_schema_missing_migrations() -> set[tuple[str, str]]:
    base = settings.TENANT_BASE_SCHEMA
    loader = MigrationLoader(None, ignore_no_migrations=True)
    labels = _tenant_app_labels()
    wanted = {node for node in loader.graph.nodes if node[0] in labels}
    if not schema_exists(base):
        return wanted
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s)", [f'"{base}".django_migrations']
        )  # the table is absent until the first migration ran
        if cursor.fetchone()[0] is None:
            return wanted
        # The schema name is our own setting, not input.
        cursor.execute(f'SELECT app, name FROM "{base}".django_migrations')  # noqa: S608
        applied = set(cursor.fetchall())
    return wanted - applied


def tenant_base_schema_migrate(*, verbosity: int = 0) -> bool:
    """Create the template schema new tenants are cloned from, and migrate it.

    Safe to call from several processes at once (advisory lock). Returns True when
    anything was migrated. `migrate_platform` calls it; provisioning calls it too, so a
    stale template can never be cloned.
    """
    if not _base_schema_missing_migrations():
        return False
    base = settings.TENANT_BASE_SCHEMA
    # The lock lives on a connection of its own: migrate_schemas closes Django's.
    with _advisory_lock(_BASE_SCHEMA_LOCK):
        if not _base_schema_missing_migrations():
            return False
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{base}"')
        call_command(
            "migrate_schemas", schema_name=base, tenant=True, interactive=False, verbosity=verbosity
        )
        connection.set_schema_to_public()
        logger.info("tenant template schema %s migrated", base)
        return True


@contextmanager
def _advisory_lock(key: int):
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or None,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        autocommit=True,
    ) as lock_connection:
        lock_connection.execute("SELECT pg_advisory_lock(%s)", [key])
        yield  # closing the connection releases the lock, whatever happens


@dataclass(frozen=True)
class NewTenant:
    slug: str
    name: str
    owner_email: str
    owner_password: str
    timezone: str = "Asia/Jerusalem"
    language: str = Tenant.Language.HEBREW


def tenant_validate(new: NewTenant) -> None:
    """Raise ValidationError with every problem, keyed by field, before anything is written."""
    errors: dict[str, list[str]] = {}

    def check(field: str, validator, value) -> None:
        try:
            validator(value)
        except ValidationError as error:
            errors.setdefault(field, []).extend(error.messages)

    check("slug", validate_slug, new.slug)
    if "slug" not in errors and (
        Tenant.objects.filter(slug=new.slug).exists()
        or schema_exists(schema_name_for_slug(new.slug))
        or Domain.objects.filter(domain=tenant_host(new.slug)).exists()
    ):
        errors["slug"] = [f"The address {tenant_host(new.slug)} is already taken."]
    if not new.name.strip():
        errors["name"] = ["The business name is required."]
    check("owner_email", validate_email, new.owner_email)
    check("timezone", validate_timezone, new.timezone)
    if new.language not in Tenant.Language.values:
        errors["language"] = [f"Choose one of {', '.join(Tenant.Language.values)}."]
    check(
        "owner_password",
        lambda value: validate_password(value, user=get_user_model()(email=new.owner_email)),
        new.owner_password,
    )
    if errors:
        raise ValidationError(errors)


def tenant_create(new: NewTenant) -> Tenant:
    """Create a tenant, its schema, its domain and its first owner, all or nothing.

    The schema is cloned from the template schema (well under a second); a failure at
    any step rolls every step back, schema included.
    """
    tenant_validate(new)
    tenant_base_schema_migrate()
    tenant = Tenant(
        schema_name=schema_name_for_slug(new.slug),
        slug=new.slug,
        name=new.name.strip(),
        timezone=new.timezone,
        language=new.language,
    )
    with transaction.atomic():
        tenant.save(verbosity=0)
        Domain.objects.create(domain=tenant_host(new.slug), tenant=tenant, is_primary=True)
        with schema_context(tenant.schema_name):
            get_user_model().objects.create_owner(
                email=new.owner_email, password=new.owner_password
            )
    logger.info("tenant %s created", tenant.schema_name)
    return tenant


def tenant_public_ensure() -> Tenant:
    """The public tenant and its domain: the platform admin's host (BASE_DOMAIN)."""
    public, _ = Tenant.objects.get_or_create(
        schema_name=get_public_schema_name(),
        defaults={"name": "Platform", "slug": "public"},
    )
    Domain.objects.get_or_create(
        domain=settings.BASE_DOMAIN, defaults={"tenant": public, "is_primary": True}
    )
    return public


def tenant_suspend(*, tenant: Tenant, reason: str = "") -> None:
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False, suspended_reason=reason[:200])
    transaction.on_commit(host_cache_clear)  # this process at once, the others within 5 s
    logger.info("tenant %s suspended", tenant.schema_name)


def tenant_reactivate(*, tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(is_active=True, suspended_reason="")
    transaction.on_commit(host_cache_clear)
    logger.info("tenant %s reactivated", tenant.schema_name)
