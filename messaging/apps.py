from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self):
        # Connect the signal receivers: the inbound path's and the outbound path's.
        from messaging import inbound_receivers, receivers  # noqa: F401
