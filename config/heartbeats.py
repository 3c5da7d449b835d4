"""Heartbeats of long-running processes (Celery workers, session runners) in Redis.

Each kind is a Redis hash: member = process name, value = JSON with the time of the
last beat. /health/ reads them; a member that stopped beating shows as stale until it
is pruned, so an operator sees which process died rather than nothing at all.
"""

import json
import os
import socket
import time
from dataclasses import dataclass

from django.conf import settings

from config.redis_client import redis_client

WORKERS = "heartbeat:workers"
RUNNERS = "heartbeat:runners"
PRUNE_AFTER_SECONDS = 600


def process_name(prefix: str) -> str:
    return f"{prefix}@{socket.gethostname()}:{os.getpid()}"


def heartbeat_record(kind: str, name: str, **extra) -> None:
    payload = {"ts": time.time(), "pid": os.getpid(), "host": socket.gethostname(), **extra}
    redis_client().hset(kind, name, json.dumps(payload))


def heartbeat_remove(kind: str, name: str) -> None:
    redis_client().hdel(kind, name)


@dataclass(frozen=True)
class Heartbeat:
    name: str
    last_beat: float
    age_seconds: float
    extra: dict

    @property
    def fresh(self) -> bool:
        return self.age_seconds <= settings.HEARTBEAT_STALE_SECONDS


def heartbeats_read(kind: str) -> list[Heartbeat]:
    """Every process of one kind, freshest first; very old entries are pruned."""
    client = redis_client()
    now = time.time()
    beats, dead = [], []
    for name, raw in client.hgetall(kind).items():
        try:
            payload = json.loads(raw)
            ts = float(payload.pop("ts"))
        except (ValueError, KeyError, TypeError):
            dead.append(name)
            continue
        if now - ts > PRUNE_AFTER_SECONDS:
            dead.append(name)
            continue
        beats.append(Heartbeat(name=name, last_beat=ts, age_seconds=now - ts, extra=payload))
    if dead:
        client.hdel(kind, *dead)
    return sorted(beats, key=lambda beat: beat.age_seconds)
