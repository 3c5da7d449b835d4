"""The Celery app. tenant-schemas-celery puts the current schema in every task's headers
and switches the worker's connection to it before the task runs."""

import logging
import os

from celery import bootsteps
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
