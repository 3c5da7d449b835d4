from django.core.management import call_command
from django.core.management.base import BaseCommand

from tenants.services import tenant_base_schema_migrate, tenant_public_ensure


class Command(BaseCommand):
    help = (
        "Migrate everything: the public schema, every tenant schema and the template "
        "schema new tenants are cloned from. Run it on every deploy."
    )

    def handle(self, *args, **options):
        verbosity = options["verbosity"]
        call_command("migrate_schemas", shared=True, interactive=False, verbosity=verbosity)
        tenant_public_ensure()
        tenant_base_schema_migrate(verbosity=verbosity)
        call_command("migrate_schemas", tenant=True, interactive=False, verbosity=verbosity)
