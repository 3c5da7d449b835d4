"""The session runner: the long-lived process that will hold live WhatsApp connections.

For now it proves it is alive: a heartbeat in Redis every few seconds, which /health/
reads. The sessions issue gives it sessions, leases and sends.
"""

import logging
import signal
import threading

from django.conf import settings

from config.heartbeats import RUNNERS, heartbeat_record, heartbeat_remove, process_name

logger = logging.getLogger(__name__)


class SessionRunner:
    def __init__(self, *, name: str | None = None):
        self.name = name or process_name("runner")
        self.stopping = threading.Event()

    def beat(self) -> None:
        try:
            heartbeat_record(RUNNERS, self.name, sessions=0)
        except Exception:
            logger.warning("runner %s could not record its heartbeat", self.name, exc_info=True)

    def request_stop(self, *_args) -> None:
        self.stopping.set()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        logger.info("session runner %s started", self.name)
        while not self.stopping.is_set():
            self.beat()
            self.stopping.wait(settings.HEARTBEAT_INTERVAL_SECONDS)
        try:
            heartbeat_remove(RUNNERS, self.name)
        except Exception:
            logger.warning("runner %s could not remove its heartbeat", self.name, exc_info=True)
        logger.info("session runner %s stopped", self.name)
