import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django_tenants.utils import schema_context

from tenants.models import Tenant
from tenants.services import NewTenant, tenant_create, tenant_host, tenant_public_ensure


class Command(BaseCommand):
    help = (
        "Development setup after migrate_platform: a platform operator and the demo tenant. "
        "Idempotent; credentials are generated once and kept in --credentials-file."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--credentials-file",
            default=str(settings.BASE_DIR / ".local" / "credentials.json"),
        )

    def handle(self, *args, **options):
        path = Path(options["credentials_file"])
        credentials = json.loads(path.read_text()) if path.exists() else {}
        credentials.setdefault("operator_email", "admin@example.com")
        credentials.setdefault("operator_password", secrets.token_urlsafe(12))
        credentials.setdefault("demo_email", "owner@demo.example.com")
        credentials.setdefault("demo_password", secrets.token_urlsafe(12))

        tenant_public_ensure()
        User = get_user_model()
        with schema_context("public"):
            if not User.objects.filter(email=credentials["operator_email"]).exists():
                User.objects.create_superuser(
                    email=credentials["operator_email"], password=credentials["operator_password"]
                )
        if not Tenant.objects.filter(slug="demo").exists():
            tenant_create(
                NewTenant(
                    slug="demo",
                    name="Demo Restaurant",
                    owner_email=credentials["demo_email"],
                    owner_password=credentials["demo_password"],
                )
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(credentials, indent=2))
        path.chmod(0o600)
        credentials["demo_url"] = f"http://{tenant_host('demo')}:8000/"
        credentials["admin_url"] = f"http://{settings.BASE_DOMAIN}:8000/admin/"
        self.stdout.write(json.dumps(credentials))
