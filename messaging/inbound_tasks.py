"""Celery tasks of the inbound path. Each takes an id and calls a service."""

import base64
import functools
import json
import uuid

from celery import current_app, shared_task

from messaging.models import Message
from sessions_app.models import WhatsAppSession


@shared_task(name="messaging.inbound_route", acks_late=True)
def inbound_route(message_id: int) -> str | None:
    """The one task of a stored inbound message: hand it to the owner menu or the
    customer flow and publish `message.new` (dashboards and outgoing webhooks) -- once,
    however often the task runs (messaging.routing.inbound_message_route). The event
    carries the message as routing left it: an owner's PIN already redacted."""
    from messaging.routing import inbound_message_route

    return inbound_message_route(message_id=message_id)


@shared_task(
    name="messaging.inbound_media_fetch",
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=5,
    max_retries=5,
)
def inbound_media_fetch(message_id: int) -> str:
    """Download a Twilio media file with the session's own credentials, and keep it."""
    from messaging.inbound import inbound_media_store
    from sessions_app.providers.twilio_provider import TwilioProvider

    message = Message.objects.get(pk=message_id)
    session = WhatsAppSession.objects.get(pk=message.session_id)
    provider = TwilioProvider(session)
    return inbound_media_store(
        message_id=message_id, download=lambda: provider.media_download(message.media_url)
    )


@functools.cache
def _celery_template(name: str) -> tuple[str, dict, dict, dict]:
    """Celery's own protocol-2 message for task `name`, made once per process."""
    app = current_app
    task = app.amqp.as_task_v2(
        "-", name, args=(), kwargs={}, reply_to=app.thread_oid, ignore_result=True
    )
    properties = {
        **task.properties,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": app.conf.task_default_queue},
        "priority": 0,
        "body_encoding": "base64",
    }
    return app.conf.task_default_queue, task.headers, properties, task.body[2]


def celery_message(name: str, *, args: tuple, schema: str) -> tuple[str, str]:
    """(Redis list, message) that `<task>.apply_async(args)` from `schema` would LPUSH
    onto the Redis broker: Celery's protocol 2 headers and body in kombu's envelope, with
    tenant-schemas-celery's schema header. The Twilio fast path (messaging/twilio_fast.py)
    sends it in its own Redis pipeline; tests/test_inbound.py checks that it matches what
    Celery sends."""
    queue, headers, properties, embed = _celery_template(name)
    task_id = str(uuid.uuid4())
    body = json.dumps([list(args), {}, embed]).encode()
    message = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            **headers,
            "id": task_id,
            "root_id": task_id,
            "argsrepr": repr(tuple(args)),
            "_schema_name": schema,
        },
        "properties": {**properties, "correlation_id": task_id, "delivery_tag": str(uuid.uuid4())},
    }
    return queue, json.dumps(message)
