"""Celery tasks of the inbound path. Each takes an id and calls a service."""

from celery import shared_task

from messaging.models import Message
from sessions_app.models import WhatsAppSession


@shared_task(name="messaging.inbound_route", acks_late=True)
def inbound_route(message_id: int) -> str:
    """Hand a stored inbound message to the owner menu or the customer flow."""
    from messaging.routing import inbound_route_message

    return inbound_route_message(message_id=message_id)


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
