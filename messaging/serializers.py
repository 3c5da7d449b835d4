"""The API's shapes of messages, bulk jobs, conversations and webhook endpoints.

Input serializers check types and sizes only; what a message may be (kinds per provider,
E.164 numbers, payloads) is decided by the services, whose errors come back by field."""

from __future__ import annotations

from rest_framework import serializers

from messaging.bulk import MAX_ITEMS
from messaging.models import Conversation, Message, WebhookDelivery, WebhookEndpoint
from messaging.outbound import MAX_TEXT_LENGTH, SENDABLE_KINDS

MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # WhatsApp's limit for images, audio and video


class _SessionIdField(serializers.UUIDField):
    """A session's public id, from the row's session_id through the view's context."""

    def __init__(self, **kwargs):
        super().__init__(source="session_id", read_only=True, **kwargs)

    def to_representation(self, value):
        public_ids = self.context.get("session_public_ids") or {}
        found = public_ids.get(value)
        return str(found) if found else None


class ContactBriefSerializer(serializers.Serializer):
    phone = serializers.CharField()
    name = serializers.CharField(source="push_name", allow_blank=True)


# Declared field by field, not from the model: this is on the hot path of every send,
# and a ModelSerializer rebuilds its fields from the model each time it is used.
class MessageSerializer(serializers.Serializer):
    """A message, either direction, with its status and a timestamp per status."""

    id = serializers.UUIDField(source="public_id", read_only=True)
    session = _SessionIdField(allow_null=True)
    conversation = serializers.IntegerField(source="conversation_id", read_only=True)
    contact = ContactBriefSerializer(source="conversation.contact", read_only=True)
    direction = serializers.ChoiceField(choices=Message.Direction.choices, read_only=True)
    kind = serializers.CharField(read_only=True)
    text = serializers.CharField(read_only=True, help_text="The text, or the caption of media")
    media_url = serializers.CharField(read_only=True, help_text="Where the media is fetched from")
    media_mime_type = serializers.CharField(read_only=True)
    payload = serializers.JSONField(read_only=True, help_text="location, contact, reaction")
    reply_to = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=Message.Status.choices, read_only=True)
    attempts = serializers.IntegerField(read_only=True)
    last_error = serializers.CharField(read_only=True)
    error_code = serializers.CharField(read_only=True)
    dead_letter = serializers.BooleanField(read_only=True, help_text="Failed after the last retry")
    provider_message_id = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    sent_at = serializers.DateTimeField(read_only=True, allow_null=True)
    delivered_at = serializers.DateTimeField(read_only=True, allow_null=True)
    read_at = serializers.DateTimeField(read_only=True, allow_null=True)
    failed_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def get_reply_to(self, message) -> str | None:
        if message.reply_to_id is None or message.reply_to is None:
            return None
        return str(message.reply_to.public_id)


class LocationInput(serializers.Serializer):
    latitude = serializers.FloatField(min_value=-90, max_value=90)
    longitude = serializers.FloatField(min_value=-180, max_value=180)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    address = serializers.CharField(max_length=300, required=False, allow_blank=True)


class ContactCardInput(serializers.Serializer):
    display_name = serializers.CharField(max_length=200)
    vcard = serializers.CharField(max_length=5000, required=False, allow_blank=True)


class ReactionInput(serializers.Serializer):
    emoji = serializers.CharField(max_length=16, allow_blank=True, help_text='"" removes it')
    message = serializers.UUIDField(
        required=False, help_text="The id of the message reacted to (or give reply_to)."
    )


class MessageSendSerializer(serializers.Serializer):
    session = serializers.UUIDField(help_text="The id of the session that sends.")
    to = serializers.CharField(max_length=40, help_text="The recipient, E.164 (+972501234567).")
    kind = serializers.ChoiceField(choices=list(SENDABLE_KINDS), default="text")
    text = serializers.CharField(
        max_length=MAX_TEXT_LENGTH,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="The text, or a media message's caption.",
    )
    media_url = serializers.URLField(max_length=1000, required=False, allow_blank=True)
    file = serializers.FileField(
        required=False,
        allow_empty_file=False,
        max_length=200,
        help_text="Media uploaded with the request (multipart/form-data), instead of media_url.",
    )
    location = LocationInput(required=False)
    contact = ContactCardInput(required=False)
    reaction = ReactionInput(required=False)
    reply_to = serializers.UUIDField(required=False, help_text="The id of the message quoted.")
    template_sid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    template_variables = serializers.DictField(
        child=serializers.CharField(max_length=1000, allow_blank=True), required=False
    )

    def validate_file(self, value):
        if value.size > MAX_UPLOAD_BYTES:
            raise serializers.ValidationError(
                f"A file has at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB."
            )
        return value

    def validate(self, data):
        if data.get("file") and data.get("media_url"):
            raise serializers.ValidationError({"file": ["Give a file or a media_url, not both."]})
        return data


class BulkItemSerializer(serializers.Serializer):
    to = serializers.CharField(max_length=40)
    kind = serializers.ChoiceField(choices=list(SENDABLE_KINDS), required=False)
    text = serializers.CharField(max_length=MAX_TEXT_LENGTH, required=False, allow_blank=True)
    media_url = serializers.URLField(max_length=1000, required=False, allow_blank=True)
    location = LocationInput(required=False)
    contact = ContactCardInput(required=False)
    template_sid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    template_variables = serializers.DictField(
        child=serializers.CharField(max_length=1000, allow_blank=True), required=False
    )
    delay_seconds = serializers.FloatField(
        min_value=0, max_value=7 * 24 * 3600, required=False, default=0
    )


class BulkSendSerializer(serializers.Serializer):
    session = serializers.UUIDField()
    items = BulkItemSerializer(many=True, allow_empty=False, max_length=MAX_ITEMS)


class BulkProgressSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    session = serializers.UUIDField(allow_null=True)
    origin = serializers.CharField()
    state = serializers.ChoiceField(choices=["pending", "running", "done", "failed"])
    total = serializers.IntegerField()
    handed_out = serializers.IntegerField()
    queued = serializers.IntegerField()
    sent = serializers.IntegerField()
    suppressed = serializers.IntegerField()
    failed = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.JSONField())
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class ConversationSerializer(serializers.ModelSerializer):
    session = _SessionIdField(allow_null=True)
    contact = ContactBriefSerializer(read_only=True)

    class Meta:
        model = Conversation
        fields = [
            "id",
            "session",
            "contact",
            "unread_count",
            "human_takeover",
            "last_message_at",
            "created_at",
        ]
        read_only_fields = fields


class ConversationQuery(serializers.Serializer):
    session = serializers.UUIDField(required=False)
    unread = serializers.BooleanField(required=False, allow_null=True, default=None)
    taken_over = serializers.BooleanField(required=False, allow_null=True, default=None)


class MessageQuery(serializers.Serializer):
    session = serializers.UUIDField(required=False)
    direction = serializers.ChoiceField(choices=Message.Direction.values, required=False)


class WebhookEndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "is_active", "description", "created_at"]
        read_only_fields = fields


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        help_text="Signs every delivery. Shown only now: store it.", read_only=True
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookEndpointWriteSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEndpoint.Event.choices), max_length=20
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)


class WebhookEndpointUpdateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500, required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEndpoint.Event.choices),
        max_length=20,
        required=False,
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_type",
            "state",
            "attempts",
            "last_status_code",
            "last_error",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
            "created_at",
            "payload",
        ]
        read_only_fields = fields


class DeliveryQuery(serializers.Serializer):
    state = serializers.ChoiceField(choices=WebhookDelivery.State.values, required=False)
