import re
import zoneinfo

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


class Domain(DomainMixin):
    """A host name that resolves to a tenant (`<slug>.<BASE_DOMAIN>`)."""

    def __str__(self) -> str:
        return self.domain
