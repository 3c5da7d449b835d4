import secrets

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.services import NewTenant, tenant_create, tenant_host


class Command(BaseCommand):
    help = "Create a tenant: its schema, its domain and its first owner, in one step."

    def add_arguments(self, parser):
        parser.add_argument(
            "--slug", required=True, help="Subdomain, e.g. pizza -> pizza.<BASE_DOMAIN>"
        )
        parser.add_argument("--name", required=True, help='Business name, e.g. "Pizza Roma"')
        parser.add_argument("--owner-email", required=True)
        parser.add_argument(
            "--owner-password",
            help="Omit it to have a strong password generated and printed once.",
        )
        parser.add_argument("--timezone", default="Asia/Jerusalem")
        parser.add_argument("--language", default="he", choices=["he", "en", "ar"])

    def handle(self, *args, **options):
        password = options["owner_password"] or secrets.token_urlsafe(12)
        try:
            tenant = tenant_create(
                NewTenant(
                    slug=options["slug"],
                    name=options["name"],
                    owner_email=options["owner_email"],
                    owner_password=password,
                    timezone=options["timezone"],
                    language=options["language"],
                )
            )
        except ValidationError as error:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()
            )
            raise CommandError(f"Tenant not created. {problems}") from error
        self.stdout.write(self.style.SUCCESS(f"Created {tenant.name}"))
        self.stdout.write(f"  dashboard: http://{tenant_host(tenant.slug)}:8000/")
        self.stdout.write(f"  owner:     {options['owner_email']}")
        if not options["owner_password"]:
            self.stdout.write(f"  password:  {password}   (shown once)")
