from django.core.management.base import BaseCommand
from django.db import transaction

from sessions_app.fields import EncryptedTextField
from sessions_app.models import WhatsAppSession


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEYS. "
        "Run it after putting a new key first; then the old key can be removed."
    )

    def handle(self, *args, **options):
        fields = [f.name for f in WhatsAppSession._meta.fields if isinstance(f, EncryptedTextField)]
        count = 0
        with transaction.atomic():
            for session in WhatsAppSession.objects.select_for_update().only("pk", *fields):
                # Reading decrypts with any key; saving encrypts with the first one.
                session.save(update_fields=fields)
                count += 1
        self.stdout.write(f"Re-encrypted {len(fields)} secret fields of {count} sessions.")
