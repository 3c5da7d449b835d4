"""The Celery app. tenant-schemas-celery puts the current schema in every task's headers
and switches the worker's connection to it before the task runs."""

import logging
import os

from celery import bootsteps
from celery.signals import task_postrun
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)

app = CeleryApp("whatsapp_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Record this worker in Redis every few seconds, for /health/."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.timer_entry = None
        self.worker_name = None

    def start(self, worker):
        from django.conf import settings

        self.worker_name = worker.hostname
        self._beat()
        self.timer_entry = worker.timer.call_repeatedly(
            settings.HEARTBEAT_INTERVAL_SECONDS, self._beat, priority=10
        )

    def _beat(self):
        from config.heartbeats import WORKERS, heartbeat_record

        try:
            heartbeat_record(WORKERS, self.worker_name)
        except Exception:  # Redis down: /health/ says so; the worker keeps working
            logger.warning("worker heartbeat not recorded", exc_info=True)

    def stop(self, worker):
        from config.heartbeats import WORKERS, heartbeat_remove

        if self.timer_entry is not None:
            self.timer_entry.cancel()
        try:
            heartbeat_remove(WORKERS, self.worker_name)
        except Exception:  # shutting down anyway; the entry goes stale and is pruned
            logger.warning("worker heartbeat not removed", exc_info=True)


app.steps["worker"].add(WorkerHeartbeat)


def _close_old_database_connections(**kwargs):
    """After each task, close the database connections Django would close after a
    request: past DATABASE_CONN_MAX_AGE (0: every time) or broken. Celery's own closing
    per task is turned off (CELERY_DB_REUSE_MAX), so a worker run with a connection age
    keeps its connections instead of reconnecting twice per task."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()


task_postrun.connect(_close_old_database_connections, dispatch_uid="close_old_db_connections")

# tenant-schemas-celery switches the connection back to the public schema after every
# task, so the next task of the same tenant switches again and django-tenants sends
# `SET search_path` once more. Every task switches to its own schema (public when it
# carries none) before it runs, so switching back is not needed.
task_postrun.disconnect(dispatch_uid="tenant_schemas_restore_schema")
