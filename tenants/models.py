import re
import zoneinfo

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
# Subdomains we keep for ourselves, and django-tenants' own schemas.
RESERVED_SLUGS = frozenset(
    {"public", "www", "admin", "api", "app", "static", "media", "mail", "health", "metrics",
     "webhooks", "status", "help", "support", "docs", "tenant-template", "information-schema"}
)  # fmt: skip


def validate_slug(value: str) -> None:
    if not SLUG_PATTERN.match(value or ""):
        raise ValidationError(
            _(
                "Use 3 to 40 lowercase letters, digits or hyphens, starting with a letter "
                "and not ending with a hyphen."
            ),
            code="invalid_slug",
        )
    if value in RESERVED_SLUGS or value.startswith("pg-"):
        raise ValidationError(_("This name is reserved."), code="reserved_slug")


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(_("Unknown time zone: %(tz)s"), params={"tz": value})


def schema_name_for_slug(slug: str) -> str:
    """Hyphens are fine in a host name but not in a bare schema name."""
    return slug.replace("-", "_")


class Tenant(TenantMixin):
    """One business. Its rows live in its own PostgreSQL schema."""

    class Language(models.TextChoices):
        HEBREW = "he", "עברית"
        ENGLISH = "en", "English"
        ARABIC = "ar", "العربية"

    name = models.CharField(max_length=120)
    slug = models.CharField(max_length=40, unique=True, validators=[validate_slug])
    timezone = models.CharField(
        max_length=64, default="Asia/Jerusalem", validators=[validate_timezone]
    )
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.HEBREW)
    is_active = models.BooleanField(
        default=True, help_text="Suspended tenants' dashboard, API and webhooks are refused."
    )
    suspended_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    auto_create_schema = True
    auto_drop_schema = True

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def is_public(self) -> bool:
        from django_tenants.utils import get_public_schema_name

        return self.schema_name == get_public_schema_name()

    def create_schema(self, check_if_exists=False, sync_schema=True, verbosity=1):
        """Clone the always-migrated template schema, and nothing more.

        django-tenants runs `migrate_schemas --fake` after cloning; with clone mode DATA
        the clone already holds the template's django_migrations rows, so that command
        records nothing and only loads the whole migration graph: a fifth of a
        provisioning. Without a template it falls back to django-tenants' own path."""
        from django.db import connection
        from django_tenants.clone import CloneSchema
        from django_tenants.postgresql_backend.base import _check_schema_name
        from django_tenants.utils import get_creation_fakes_migrations, schema_exists

        base = self.get_base_schema() if get_creation_fakes_migrations() else None
        if not (sync_schema and base and self.clone_mode == "DATA" and schema_exists(base)):
            return super().create_schema(
                check_if_exists=check_if_exists, sync_schema=sync_schema, verbosity=verbosity
            )
        _check_schema_name(self.schema_name)
        if check_if_exists and schema_exists(self.schema_name):
            return False
        CloneSchema().clone_schema(base, self.schema_name, self.clone_mode)
        connection.set_schema_to_public()
        return True


class Domain(DomainMixin):
    """A host name that resolves to a tenant (`<slug>.<BASE_DOMAIN>`)."""

    def __str__(self) -> str:
        return self.domain


class ApiKey(models.Model):
    """A key an integrator's program uses on the REST API of one tenant.

    Only a SHA-256 hash of the key is stored (keys are 256 random bits, so a fast hash
    is enough) with a visible prefix to tell keys apart; the key itself is shown once,
    when it is created (`tenants.api_keys.api_key_create`)."""

    class Scope(models.TextChoices):
        READ = "read", _("Read")
        SEND = "send", _("Send messages")
        MANAGE = "manage", _("Manage sessions, webhooks, orders and the menu")

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=80)
    prefix = models.CharField(
        max_length=16, help_text="The key's first characters, to tell keys apart"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=8, choices=Scope.choices), default=list)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant_id", "-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
