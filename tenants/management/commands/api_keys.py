"""manage.py api_keys: create, list and revoke a tenant's REST API keys from a terminal
(the same services the dashboard uses)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.api_keys import api_key_create, api_key_revoke, api_keys_of
from tenants.models import ApiKey, Tenant


class Command(BaseCommand):
    help = "Create, list or revoke a tenant's API keys. A new key is printed once."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["create", "list", "revoke"])
        parser.add_argument("--tenant", required=True, help="The tenant's slug, e.g. demo")
        parser.add_argument("--name", help="create: what the key is for, e.g. POS")
        parser.add_argument(
            "--scopes",
            default="read,send,manage",
            help="create: comma-separated, of read, send, manage (default: all three)",
        )
        parser.add_argument("--prefix", help="revoke: the key's prefix, e.g. wak_3f9c1a2b")

    def handle(self, *args, action, **options):
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"There is no tenant {options['tenant']!r}.")
        if action == "create":
            scopes = [s.strip() for s in (options["scopes"] or "").split(",") if s.strip()]
            try:
                key, raw = api_key_create(
                    tenant=tenant, name=options["name"] or "", scopes=scopes, created_by="cli"
                )
            except ValidationError as error:
                problems = "; ".join(
                    f"{field}: {' '.join(messages)}"
                    for field, messages in error.message_dict.items()
                )
                raise CommandError(f"Key not created. {problems}") from error
            self.stdout.write(self.style.SUCCESS(f"Created {key.name} ({', '.join(key.scopes)})"))
            self.stdout.write(f"  key: {raw}   (shown once: store it now)")
        elif action == "list":
            for key in api_keys_of(tenant=tenant):
                state = "revoked" if key.revoked_at else "active"
                used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "-"
                self.stdout.write(
                    f"{key.prefix}  {key.name:<24} {','.join(key.scopes):<18} {state:<8} {used}"
                )
        else:
            key = ApiKey.objects.filter(tenant=tenant, prefix=options["prefix"] or "").first()
            if key is None:
                raise CommandError(f"{tenant.slug} has no key with prefix {options['prefix']!r}.")
            api_key_revoke(key=key)
            self.stdout.write(self.style.SUCCESS(f"Revoked {key.prefix} ({key.name})"))
