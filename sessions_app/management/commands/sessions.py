"""`manage.py sessions ...`: manage WhatsApp sessions from a terminal.

The dashboard and the API call the same services; this is for operators, scripts and
trying the product out after `make run`:

    manage.py sessions list --tenant demo
    manage.py sessions create --tenant demo --name "Front desk" --provider sandbox
    manage.py sessions start --tenant demo --name "Front desk"
    manage.py sessions scan --tenant demo --name "Front desk" --phone +972501234567
    manage.py sessions write --tenant demo --name "Front desk" --phone +972509999999 --text Hi
    manage.py sessions send --tenant demo --name "Front desk" --to +972509999999 --text Hello
"""

from urllib.parse import parse_qs, urlparse

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from sessions_app.models import Provider, WhatsAppSession
from sessions_app.phone_numbers import to_e164
from sessions_app.providers.sandbox import sandbox_phone_writes
from sessions_app.services import (
    sandbox_scan,
    session_create,
    session_logout,
    session_pair_phone,
    session_restart,
    session_start,
    session_stop,
)
from tenants.models import Tenant

ACTIONS = ("list", "create", "start", "stop", "restart", "logout", "pair", "scan", "write", "send")


class Command(BaseCommand):
    help = "List, create, start, stop, restart, log out and try out WhatsApp sessions."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("--tenant", required=True, help="The tenant's slug")
        parser.add_argument("--name", help="The session's name")
        parser.add_argument("--provider", choices=Provider.values, default=Provider.SANDBOX)
        parser.add_argument("--owner", action="append", default=[], help="Owner number (repeat)")
        parser.add_argument("--mode", choices=["silent", "ordering"], default="silent")
        parser.add_argument("--phone", help="pair/scan: the phone; write: who writes")
        parser.add_argument("--to", help="send: the recipient")
        parser.add_argument("--text", default="")
        parser.add_argument("--twilio-account-sid", default="")
        parser.add_argument("--twilio-auth-token", default="")
        parser.add_argument("--twilio-from", default="")

    def handle(self, *args, **options):
        try:
            tenant = Tenant.objects.get(slug=options["tenant"])
        except Tenant.DoesNotExist as error:
            raise CommandError(f"No tenant with the slug {options['tenant']!r}.") from error
        action = options["action"]
        try:
            if action == "list":
                self._list(tenant)
            elif action == "create":
                self._create(tenant, options)
            else:
                self._act(action, self._session(tenant, options["name"]), options)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error

    def _session(self, tenant, name) -> WhatsAppSession:
        if not name:
            raise CommandError("Say which session with --name.")
        try:
            return WhatsAppSession.objects.get(tenant=tenant, name=name)
        except WhatsAppSession.DoesNotExist as error:
            raise CommandError(f"{tenant.slug} has no session called {name!r}.") from error

    def _list(self, tenant) -> None:
        sessions = WhatsAppSession.objects.filter(tenant=tenant)
        if not sessions:
            self.stdout.write("No sessions yet.")
        for session in sessions:
            self.stdout.write(
                f"{session.name:<24} {session.provider:<8} {session.status:<12} "
                f"{session.phone_number or '-':<16} {session.last_disconnect_reason}"
            )

    def _create(self, tenant, options) -> None:
        session = session_create(
            tenant=tenant,
            name=options["name"] or "",
            provider=options["provider"],
            owner_numbers=options["owner"],
            customer_mode=options["mode"],
            twilio_account_sid=options["twilio_account_sid"],
            twilio_auth_token=options["twilio_auth_token"],
            twilio_from_number=options["twilio_from"],
        )
        self.stdout.write(
            self.style.SUCCESS(f"Created {session.name} ({session.provider}), stopped.")
        )

    def _act(self, action, session, options) -> None:
        if action == "start":
            session = session_start(session=session)
            self.stdout.write(f"{session.name}: asked to run (now {session.status}).")
        elif action == "stop":
            session_stop(session=session)
            self.stdout.write(f"{session.name}: asked to stop.")
        elif action == "restart":
            session_restart(session=session)
            self.stdout.write(f"{session.name}: restart requested.")
        elif action == "logout":
            session_logout(session=session)
            self.stdout.write(f"{session.name}: logout requested.")
        elif action == "pair":
            session_pair_phone(session=session, phone_number=self._phone(options))
            self.stdout.write(f"{session.name}: pairing code requested; `list` shows it soon.")
        elif action == "scan":
            if not session.qr_payload:
                raise CommandError(f"{session.name} shows no QR code (status {session.status}).")
            code = parse_qs(urlparse(session.qr_payload).query).get("code", [""])[0]
            sandbox_scan(session=session, code=code, phone_number=self._phone(options))
            self.stdout.write(f"{session.name}: scanned as {self._phone(options)}.")
        elif action == "write":
            if session.provider != Provider.SANDBOX:
                raise CommandError("Only sandbox sessions have simulated phones.")
            sandbox_phone_writes(
                session_id=session.pk, phone_number=self._phone(options), text=options["text"]
            )
            self.stdout.write(f"{self._phone(options)} wrote to {session.name}.")
        elif action == "send":
            if not options["to"]:
                raise CommandError("Say who to send to with --to.")
            from django_tenants.utils import schema_context

            from messaging.outbound import message_send

            with schema_context(session.tenant.schema_name):
                message = message_send(session=session, to=options["to"], text=options["text"])
            self.stdout.write(f"Message {message.public_id}: {message.status}.")

    def _phone(self, options) -> str:
        if not options["phone"]:
            raise CommandError("Say which phone with --phone.")
        return to_e164(options["phone"])
