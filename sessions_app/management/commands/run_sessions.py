import logging
import os
import sys

from django.core.management.base import BaseCommand

from sessions_app.runner import SessionRunner


class Command(BaseCommand):
    help = "Run the session runner (the `sessions` process). Stops cleanly on SIGTERM or Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--name", help="Runner name (default: runner@<host>:<pid>)")

    def handle(self, *args, **options):
        SessionRunner(name=options["name"]).run()
        # neonize can leave a non-daemon Go thread busy-waiting after a QR timeout; the
        # sessions are already disconnected and their leases released: exit regardless.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
