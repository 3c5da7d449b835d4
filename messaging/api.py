"""/api/v1/messages, /api/v1/conversations and /api/v1/webhook-endpoints. Thin: parse,
call the messaging services (outbound, bulk, conversations, webhooks), shape."""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models.functions import Coalesce
from django.http import FileResponse
from django.utils.text import get_valid_filename
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api.auth import ApiKeyPrincipal
from config.api.errors import ApiError, error_json
from config.api.pagination import PageQuery, keyset_page, page_params, page_serializer
from messaging import conversations, webhooks
from messaging.bulk import bulk_send_create, bulk_send_progress
from messaging.models import BulkSend, Conversation, Message, WebhookEndpoint
from messaging.outbound import message_dead_letters, message_retry, message_send
from messaging.serializers import (
    BulkProgressSerializer,
    BulkSendSerializer,
    ConversationQuery,
    ConversationSerializer,
    DeliveryQuery,
    MessageQuery,
    MessageSendSerializer,
    MessageSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointUpdateSerializer,
    WebhookEndpointWriteSerializer,
)
from sessions_app.models import WhatsAppSession

UUID_PATTERN = r"[0-9a-fA-F-]{36}"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_VALUE = re.compile(r"^[\x21-\x7e]{1,80}$")  # printable ASCII, no spaces
UPLOAD_DIR = "api-uploads"

MessagePage = page_serializer(MessageSerializer, "MessagePage")
ConversationPage = page_serializer(ConversationSerializer, "ConversationPage")
DeliveryPage = page_serializer(WebhookDeliverySerializer, "WebhookDeliveryPage")

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="1 to 80 printable characters. A retried request with the same key "
    "returns the first message (200, `Idempotent-Replayed: true`) and sends nothing again.",
)


def _session_ids(tenant) -> dict[int, uuid.UUID]:
    return dict(WhatsAppSession.objects.filter(tenant=tenant).values_list("pk", "public_id"))


def _tenant_session(request, public_id, *, field: str = "session") -> WhatsAppSession:
    session = next(
        iter(WhatsAppSession.objects.filter(tenant=request.tenant, public_id=public_id)[:1]), None
    )
    if session is None:
        raise ValidationError({field: ["This business has no session with this id."]})
    session.tenant = request.tenant  # the one the host resolved: no second read
    return session


def _message_by_id(public_id, *, field: str) -> Message:
    message = Message.objects.filter(public_id=public_id).first()
    if message is None:
        raise ValidationError({field: ["There is no message with this id."]})
    return message


def _idempotency_key(request) -> str | None:
    value = request.headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if not _IDEMPOTENCY_VALUE.match(value):
        raise ValidationError(
            {IDEMPOTENCY_HEADER: ["Use 1 to 80 printable ASCII characters, without spaces."]}
        )
    user = request.user
    who = f"k{user.key_id}" if isinstance(user, ApiKeyPrincipal) else f"u{user.pk}"
    return f"api:{who}:{value}"  # each caller has its own keys


def _store_upload(request, upload) -> str:
    """Keep an uploaded file and return the unguessable URL the provider fetches it at."""
    token = uuid.uuid4().hex
    name = get_valid_filename(upload.name or "file")[-100:] or "file"
    default_storage.save(f"{UPLOAD_DIR}/{connection.schema_name}/{token}/{name}", upload)
    return request.build_absolute_uri(f"/api/v1/media/{token}/{name}")


@csrf_exempt  # read-only; any other method is answered 405 in the API's shape
def uploaded_media(request, token: str, name: str):
    """GET /api/v1/media/<token>/<name>: an uploaded file, for the provider sending it
    (no key: the 128-bit token in the address is the permission, as Twilio needs)."""
    if request.method not in ("GET", "HEAD"):
        response = error_json(405, "method_not_allowed", f"Method {request.method} not allowed.")
        response["Allow"] = "GET, HEAD"
        return response
    tenant = getattr(request, "tenant", None)
    path = f"{UPLOAD_DIR}/{getattr(tenant, 'schema_name', '')}/{token}/{name}"
    if not re.fullmatch(r"[0-9a-f]{32}", token) or not default_storage.exists(path):
        return error_json(404, "not_found", "There is no such file.")
    return FileResponse(default_storage.open(path, "rb"), filename=name)


def _message_context(request, *, session: WhatsAppSession | None = None) -> dict:
    if session is not None:
        return {"session_public_ids": {session.pk: session.public_id}}
    return {"session_public_ids": _session_ids(request.tenant)}


@extend_schema(tags=["messages"])
class MessageViewSet(viewsets.GenericViewSet):
    serializer_class = MessageSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "message_id"
    lookup_value_regex = UUID_PATTERN
    write_scope = "send"

    def get_queryset(self):
        return Message.objects.select_related("conversation__contact", "reply_to")

    @extend_schema(
        summary="Send a message",
        description="Any kind: text, image, video, audio, document (by `media_url`, or a "
        "`file` uploaded as multipart/form-data), location, contact, reaction, and a reply "
        "to a message (`reply_to`). Answers 201 with the message, `queued` (or "
        "`suppressed` when the contact opted out or got the same text just now).",
        parameters=[IDEMPOTENCY_PARAMETER],
        request={
            "application/json": MessageSendSerializer,
            "multipart/form-data": MessageSendSerializer,
        },
        responses={201: MessageSerializer, 200: MessageSerializer},
    )
    def create(self, request):
        key = _idempotency_key(request)
        if key is not None:
            existing = Message.objects.filter(
                idempotency_key=key, direction=Message.Direction.OUTBOUND
            ).first()
            if existing is not None:
                return self._replay(request, existing)
        data = MessageSendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        session = _tenant_session(request, fields.pop("session"))
        reply_to = None
        if "reply_to" in fields:
            reply_to = _message_by_id(fields.pop("reply_to"), field="reply_to")
        reaction = fields.pop("reaction", None)
        if reaction is not None:
            reaction = dict(reaction)
            target = reaction.pop("message", None)
            if target is not None:
                quoted = _message_by_id(target, field="reaction")
                if not quoted.provider_message_id:
                    raise ValidationError(
                        {"reaction": ["That message has no WhatsApp id yet: react later."]}
                    )
                reaction["target_id"] = quoted.provider_message_id
        for name in ("location", "contact"):
            if name in fields:
                fields[name] = dict(fields[name])
        upload = fields.pop("file", None)
        if upload is not None:
            fields["media_url"] = _store_upload(request, upload)
        message = message_send(
            session=session,
            reply_to=reply_to,
            reaction=reaction,
            idempotency_key=key,
            **fields,
        )
        body = MessageSerializer(message, context=_message_context(request, session=session))
        return Response(body.data, status=status.HTTP_201_CREATED)

    def _replay(self, request, message: Message) -> Response:
        message = self.get_queryset().get(pk=message.pk)
        body = MessageSerializer(message, context=_message_context(request))
        response = Response(body.data, status=status.HTTP_200_OK)
        response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(
        summary="List messages",
        description="Newest first, both directions; keyset pages.",
        parameters=[PageQuery, MessageQuery],
        responses=MessagePage,
    )
    def list(self, request):
        limit, before = page_params(request)
        query = MessageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        session_id = None
        if "session" in query.validated_data:
            session_id = _tenant_session(request, query.validated_data["session"]).pk
        rows, next_cursor = conversations.messages_page(
            session_id=session_id,
            direction=query.validated_data.get("direction"),
            before=before,
            limit=limit,
        )
        return Response(
            {
                "results": MessageSerializer(
                    rows, many=True, context=_message_context(request)
                ).data,
                "next_cursor": next_cursor,
            }
        )

    @extend_schema(summary="Get a message (status and timestamps)", responses=MessageSerializer)
    def retrieve(self, request, message_id=None):
        message = self.get_object()
        return Response(MessageSerializer(message, context=_message_context(request)).data)

    @extend_schema(
        summary="Dead letters",
        description="Messages that failed after their last try, newest first.",
        parameters=[PageQuery],
        responses=MessagePage,
    )
    @action(detail=False, methods=["get"], url_path="dead-letters")
    def dead_letters(self, request):
        limit, before = page_params(request)
        rows, next_cursor = keyset_page(
            message_dead_letters().select_related("reply_to"), limit=limit, before=before
        )
        return Response(
            {
                "results": MessageSerializer(
                    rows, many=True, context=_message_context(request)
                ).data,
                "next_cursor": next_cursor,
            }
        )

    @extend_schema(
        summary="Retry a dead letter",
        description="The same message (same idempotency key) is queued again.",
        request=None,
        responses=MessageSerializer,
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, message_id=None):
        message = message_retry(message=self.get_object())
        message = self.get_queryset().get(pk=message.pk)
        return Response(MessageSerializer(message, context=_message_context(request)).data)

    @extend_schema(
        summary="Send many messages (a bulk job)",
        description="Items are sent in order, each `delay_seconds` after the job starts. "
        "Answers 202 with the job; read its progress at /messages/bulk/{id}.",
        request=BulkSendSerializer,
        responses={202: BulkProgressSerializer},
    )
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk(self, request):
        data = BulkSendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = _tenant_session(request, data.validated_data["session"])
        items = [_plain(item) for item in data.validated_data["items"]]
        job = bulk_send_create(session=session, items=items, origin="api")
        return Response(_progress(job, session.public_id), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="A bulk job's progress",
        parameters=[OpenApiParameter("job_id", str, OpenApiParameter.PATH)],
        responses=BulkProgressSerializer,
    )
    @action(detail=False, methods=["get"], url_path=rf"bulk/(?P<job_id>{UUID_PATTERN})")
    def bulk_progress(self, request, job_id=None):
        job = BulkSend.objects.filter(public_id=job_id).first()
        if job is None:
            raise ApiError(status_code=404, code="not_found", message="No such bulk job.")
        public_id = _session_ids(request.tenant).get(job.session_id)
        return Response(_progress(job, public_id))


def _plain(value):
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _progress(job: BulkSend, session_public_id) -> dict:
    progress = bulk_send_progress(job)
    progress.pop("session_id", None)
    progress["session"] = str(session_public_id) if session_public_id else None
    return progress


@extend_schema(tags=["conversations"])
class ConversationViewSet(viewsets.GenericViewSet):
    serializer_class = ConversationSerializer
    lookup_url_kwarg = "conversation_id"
    lookup_value_regex = r"[0-9]{1,18}"
    write_scope = "send"

    def get_queryset(self):
        return Conversation.objects.select_related("contact")

    @extend_schema(
        summary="List conversations",
        description="Newest message first; filter by session, unread, taken over.",
        parameters=[PageQuery, ConversationQuery],
        responses=ConversationPage,
    )
    def list(self, request):
        limit, before = page_params(request)
        query = ConversationQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        session_id = None
        if "session" in query.validated_data:
            session_id = _tenant_session(request, query.validated_data["session"]).pk
        rows = conversations.conversations_list(
            session_id=session_id,
            unread=query.validated_data.get("unread"),
            taken_over=query.validated_data.get("taken_over"),
        ).annotate(sort_at=Coalesce("last_message_at", "created_at"))
        page, next_cursor = keyset_page(rows, limit=limit, before=before, time_field="sort_at")
        context = {"session_public_ids": _session_ids(request.tenant)}
        return Response(
            {
                "results": ConversationSerializer(page, many=True, context=context).data,
                "next_cursor": next_cursor,
            }
        )

    def _shaped(self, conversation) -> dict:
        context = {"session_public_ids": _session_ids(self.request.tenant)}
        return ConversationSerializer(conversation, context=context).data

    @extend_schema(summary="Get a conversation", responses=ConversationSerializer)
    def retrieve(self, request, conversation_id=None):
        return Response(self._shaped(self.get_object()))

    @extend_schema(
        summary="A conversation's messages",
        description="Newest first; keyset pages (`before` = the previous page's next_cursor).",
        parameters=[PageQuery],
        responses=MessagePage,
    )
    @action(detail=True, methods=["get"])
    def messages(self, request, conversation_id=None):
        limit, before = page_params(request)
        rows, next_cursor = conversations.conversation_messages_page(
            conversation=self.get_object(), before=before, limit=limit
        )
        return Response(
            {
                "results": MessageSerializer(
                    rows, many=True, context=_message_context(request)
                ).data,
                "next_cursor": next_cursor,
            }
        )

    @extend_schema(summary="Mark read", request=None, responses=ConversationSerializer)
    @action(detail=True, methods=["post"])
    def read(self, request, conversation_id=None):
        conversation = conversations.conversation_mark_read(conversation=self.get_object())
        return Response(self._shaped(conversation))

    @extend_schema(
        summary="Take over from the bot (a person answers)",
        request=None,
        responses=ConversationSerializer,
    )
    @action(detail=True, methods=["post"])
    def takeover(self, request, conversation_id=None):
        conversation = conversations.conversation_takeover_set(
            conversation=self.get_object(), human=True
        )
        return Response(self._shaped(conversation))

    @extend_schema(summary="Hand back to the bot", request=None, responses=ConversationSerializer)
    @action(detail=True, methods=["post"])
    def handback(self, request, conversation_id=None):
        conversation = conversations.conversation_takeover_set(
            conversation=self.get_object(), human=False
        )
        return Response(self._shaped(conversation))


@extend_schema(tags=["webhooks"])
class WebhookEndpointViewSet(viewsets.GenericViewSet):
    serializer_class = WebhookEndpointSerializer
    lookup_url_kwarg = "endpoint_id"
    lookup_value_regex = r"[0-9]{1,18}"
    write_scope = "manage"
    scopes_by_action = {"list": "manage", "retrieve": "manage", "deliveries": "manage"}

    def get_queryset(self):
        return WebhookEndpoint.objects.all()

    @extend_schema(summary="List webhook endpoints", responses=WebhookEndpointSerializer(many=True))
    def list(self, request):
        return Response(WebhookEndpointSerializer(self.get_queryset(), many=True).data)

    @extend_schema(
        summary="Create a webhook endpoint",
        description="The answer holds the signing `secret`, shown only this once.",
        request=WebhookEndpointWriteSerializer,
        responses={201: WebhookEndpointCreatedSerializer},
    )
    def create(self, request):
        data = WebhookEndpointWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = webhooks.webhook_endpoint_create(**data.validated_data)
        body = {**WebhookEndpointSerializer(endpoint).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Get a webhook endpoint", responses=WebhookEndpointSerializer)
    def retrieve(self, request, endpoint_id=None):
        return Response(WebhookEndpointSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change a webhook endpoint",
        request=WebhookEndpointUpdateSerializer,
        responses=WebhookEndpointSerializer,
    )
    def partial_update(self, request, endpoint_id=None):
        data = WebhookEndpointUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = webhooks.webhook_endpoint_update(
            endpoint=self.get_object(), **data.validated_data
        )
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(summary="Delete a webhook endpoint", responses={204: None})
    def destroy(self, request, endpoint_id=None):
        webhooks.webhook_endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Send a test delivery",
        description="Queues a `webhook.test` event to this endpoint (202 with the delivery).",
        request=None,
        responses={202: WebhookDeliverySerializer},
    )
    @action(detail=True, methods=["post"])
    def test(self, request, endpoint_id=None):
        delivery = webhooks.webhook_endpoint_test(endpoint=self.get_object())
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Rotate the signing secret",
        description="A new secret, shown only in this answer.",
        request=None,
        responses=WebhookEndpointCreatedSerializer,
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, endpoint_id=None):
        endpoint = self.get_object()
        secret = webhooks.webhook_endpoint_secret_rotate(endpoint=endpoint)
        return Response({**WebhookEndpointSerializer(endpoint).data, "secret": secret})

    @extend_schema(
        summary="The delivery log",
        description="Newest first; keyset pages; optionally of one state.",
        parameters=[PageQuery, DeliveryQuery],
        responses=DeliveryPage,
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, endpoint_id=None):
        limit, before = page_params(request)
        query = DeliveryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = webhooks.webhook_deliveries(
            self.get_object(), state=query.validated_data.get("state")
        )
        page, next_cursor = keyset_page(rows, limit=limit, before=before)
        return Response(
            {
                "results": WebhookDeliverySerializer(page, many=True).data,
                "next_cursor": next_cursor,
            }
        )
