"""The API's shapes of a WhatsApp session. Secrets (auth token, proxy password) are
written, never read back: a session only says whether it has one."""

from __future__ import annotations

from rest_framework import serializers

from sessions_app.models import CustomerMode, HumanizationProfile, Provider, WhatsAppSession


class SessionSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    has_twilio_auth_token = serializers.SerializerMethodField()
    has_proxy_password = serializers.SerializerMethodField()
    qr_available = serializers.SerializerMethodField()

    class Meta:
        model = WhatsAppSession
        fields = [
            "id",
            "name",
            "provider",
            "status",
            "desired_state",
            "phone_number",
            "owner_numbers",
            "customer_mode",
            "humanization_profile",
            "proxy_host",
            "proxy_port",
            "proxy_username",
            "has_proxy_password",
            "twilio_account_sid",
            "twilio_from_number",
            "twilio_messaging_service_sid",
            "has_twilio_auth_token",
            "qr_available",
            "qr_expires_at",
            "pairing_code",
            "reconnect_attempts",
            "last_disconnect_reason",
            "banned_until",
            "last_heartbeat_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_has_twilio_auth_token(self, session) -> bool:
        return bool(session.twilio_auth_token)

    def get_has_proxy_password(self, session) -> bool:
        return bool(session.proxy_password)

    def get_qr_available(self, session) -> bool:
        return bool(session.qr_payload)


def _phone_list():
    return serializers.ListField(
        child=serializers.CharField(max_length=40), max_length=50, required=False
    )


class SessionUpdateSerializer(serializers.Serializer):
    """Every field optional: what is left out keeps its value."""

    name = serializers.CharField(max_length=80, required=False, allow_blank=True)
    owner_numbers = _phone_list()
    customer_mode = serializers.ChoiceField(choices=CustomerMode.choices, required=False)
    humanization_profile = serializers.ChoiceField(
        choices=HumanizationProfile.choices, required=False
    )
    proxy_host = serializers.CharField(max_length=255, required=False, allow_blank=True)
    proxy_port = serializers.IntegerField(
        min_value=1, max_value=65535, required=False, allow_null=True
    )
    proxy_username = serializers.CharField(max_length=255, required=False, allow_blank=True)
    proxy_password = serializers.CharField(
        max_length=255, required=False, allow_blank=True, write_only=True
    )
    twilio_account_sid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    twilio_auth_token = serializers.CharField(
        max_length=128,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="Empty or left out: keep the stored token.",
    )
    twilio_from_number = serializers.CharField(max_length=40, required=False, allow_blank=True)
    twilio_messaging_service_sid = serializers.CharField(
        max_length=64, required=False, allow_blank=True
    )


class SessionCreateSerializer(SessionUpdateSerializer):
    name = serializers.CharField(max_length=80)
    provider = serializers.ChoiceField(choices=Provider.choices)


class PairCodeSerializer(serializers.Serializer):
    phone_number = serializers.CharField(
        max_length=40, help_text="The WhatsApp number to link, E.164 (+972501234567)."
    )


class CommandSerializer(serializers.Serializer):
    """A request queued for the runner holding the session."""

    id = serializers.IntegerField()
    kind = serializers.CharField()
    state = serializers.CharField()
    created_at = serializers.DateTimeField()


class SessionCommandResultSerializer(serializers.Serializer):
    session = SessionSerializer()
    command = CommandSerializer(allow_null=True)


class QrSerializer(serializers.Serializer):
    qr = serializers.CharField(help_text="The raw value encoded in the QR code.")
    svg = serializers.CharField(help_text="The QR code as an inline SVG image.")
    png_data_url = serializers.CharField(help_text="The QR code as a data:image/png URL.")
    expires_at = serializers.DateTimeField(allow_null=True)
    expires_in_seconds = serializers.IntegerField(
        help_text="Seconds until it expires (0: expired)."
    )


class HealthCountsSerializer(serializers.Serializer):
    sent = serializers.IntegerField()
    received = serializers.IntegerField()
    failed = serializers.IntegerField()


class SessionHealthSerializer(serializers.Serializer):
    status = serializers.CharField()
    desired_state = serializers.CharField()
    phone_number = serializers.CharField(allow_blank=True)
    last_activity_at = serializers.DateTimeField(
        allow_null=True, help_text="The latest of: last message, runner heartbeat, change."
    )
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)
    reconnect_attempts = serializers.IntegerField()
    last_disconnect_reason = serializers.CharField(allow_blank=True)
    messages_last_24h = HealthCountsSerializer()
