"""Refresh the dashboard's catalogues (dashboard/locale) from its code and templates.

makemessages only reads files under the app's folder; the dashboard's templates live in
the project's templates/ folder, so they are linked in for the run. The live pages'
templates and views (log, board, inbox) are left to their own catalogue.
"""

from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand

APP = Path(__file__).resolve().parents[2]
LINK = APP / "_templates"


class Command(BaseCommand):
    help = "Update dashboard/locale/{he,ar,en} from the dashboard's code and templates."

    def handle(self, *args, **options):
        import os

        previous = Path.cwd()
        LINK.symlink_to(APP.parent / "templates", target_is_directory=True)
        try:
            os.chdir(APP)
            call_command(
                "makemessages",
                locale=["he", "ar", "en"],
                symlinks=True,
                no_obsolete=True,
                ignore_patterns=[
                    "_templates/dashboard/log*",
                    "_templates/dashboard/board*",
                    "_templates/dashboard/inbox*",
                    "live_views.py",
                    "consumers.py",
                    "management/*",
                ],
                verbosity=options["verbosity"],
            )
        finally:
            os.chdir(previous)
            LINK.unlink()
        self.stdout.write(
            "Translate dashboard/locale/*/LC_MESSAGES/django.po, then compilemessages."
        )
