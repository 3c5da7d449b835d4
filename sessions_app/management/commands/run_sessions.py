from django.core.management.base import BaseCommand

from sessions_app.runner import SessionRunner


class Command(BaseCommand):
    help = "Run the session runner (the `sessions` process). Stops cleanly on SIGTERM or Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--name", help="Runner name (default: runner@<host>:<pid>)")

    def handle(self, *args, **options):
        SessionRunner(name=options["name"]).run()
