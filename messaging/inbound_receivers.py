"""Messages that live connections (neonize, sandbox) received, in the runner process."""

from django.dispatch import receiver

from messaging.inbound import inbound_receive
from sessions_app.signals import inbound_received


@receiver(inbound_received, dispatch_uid="messaging.inbound_receive")
def store_inbound(sender, *, session, message, **kwargs):
    inbound_receive(session=session, inbound=message)
