"""/api/v1/sessions: the tenant's WhatsApp sessions. Thin: each view calls one service of
sessions_app.services and shapes the answer."""

from __future__ import annotations

import base64
import io
from datetime import timedelta

import segno
from django.core.exceptions import ValidationError
from django.db.models import Count, Max, Q
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api.errors import Conflict
from config.api.pagination import PageQuery, keyset_page, page_params, page_serializer
from messaging.models import Message
from sessions_app import services
from sessions_app.models import WhatsAppSession
from sessions_app.qr import qr_svg
from sessions_app.serializers import (
    PairCodeSerializer,
    QrSerializer,
    SessionCommandResultSerializer,
    SessionCreateSerializer,
    SessionHealthSerializer,
    SessionSerializer,
    SessionUpdateSerializer,
)

SessionPage = page_serializer(SessionSerializer, "SessionPage")
UUID_PATTERN = r"[0-9a-fA-F-]{36}"


def qr_png_data_url(payload: str) -> str:
    buffer = io.BytesIO()
    segno.make(payload, error="m").save(buffer, kind="png", scale=5, border=2)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _command_result(session: WhatsAppSession, command=None) -> dict:
    session.refresh_from_db()
    return {
        "session": SessionSerializer(session).data,
        "command": None
        if command is None
        else {
            "id": command.pk,
            "kind": command.kind,
            "state": command.state,
            "created_at": command.created_at,
        },
    }


@extend_schema(tags=["sessions"])
class SessionViewSet(viewsets.GenericViewSet):
    serializer_class = SessionSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "session_id"
    lookup_value_regex = UUID_PATTERN
    write_scope = "manage"

    def get_queryset(self):
        return WhatsAppSession.objects.filter(tenant=self.request.tenant).select_related("tenant")

    @extend_schema(summary="List sessions", parameters=[PageQuery], responses=SessionPage)
    def list(self, request):
        limit, before = page_params(request)
        rows, next_cursor = keyset_page(self.get_queryset(), limit=limit, before=before)
        return Response(
            {"results": SessionSerializer(rows, many=True).data, "next_cursor": next_cursor}
        )

    @extend_schema(
        summary="Create a session",
        description="Validated per provider; a Twilio session's credentials are checked "
        "with Twilio before it is saved. The session is created stopped: `start` it.",
        request=SessionCreateSerializer,
        responses={201: SessionSerializer},
    )
    def create(self, request):
        data = SessionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = services.session_create(tenant=request.tenant, **data.validated_data)
        return Response(SessionSerializer(session).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Get a session", responses=SessionSerializer)
    def retrieve(self, request, session_id=None):
        return Response(SessionSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change a session's settings",
        request=SessionUpdateSerializer,
        responses=SessionSerializer,
    )
    def partial_update(self, request, session_id=None):
        data = SessionUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = services.session_update(session=self.get_object(), **data.validated_data)
        return Response(SessionSerializer(session).data)

    @extend_schema(
        summary="Delete a session",
        description="A session a runner still holds must be stopped first (409).",
        responses={204: None, 409: OpenApiResponse(description="Still running: stop it first")},
    )
    def destroy(self, request, session_id=None):
        session = self.get_object()
        try:
            services.session_delete(session=session)
        except ValidationError as error:
            raise Conflict(
                " ".join(error.messages), code="session_running", details=error.message_dict
            ) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Start (run) a session", request=None, responses=SessionSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, session_id=None):
        session = services.session_start(session=self.get_object())
        session.refresh_from_db()
        return Response(SessionSerializer(session).data)

    @extend_schema(summary="Stop a session", request=None, responses=SessionSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request, session_id=None):
        session = services.session_stop(session=self.get_object())
        session.refresh_from_db()
        return Response(SessionSerializer(session).data)

    @extend_schema(
        summary="Restart a session",
        description="A running session is restarted by its runner; a stopped one is started.",
        request=None,
        responses=SessionSerializer,
    )
    @action(detail=True, methods=["post"])
    def restart(self, request, session_id=None):
        session = services.session_restart(session=self.get_object())
        session.refresh_from_db()
        return Response(SessionSerializer(session).data)

    @extend_schema(
        summary="Log a session out (unlink the device)",
        request=None,
        responses={202: SessionCommandResultSerializer},
    )
    @action(detail=True, methods=["post"])
    def logout(self, request, session_id=None):
        session = self.get_object()
        command = services.session_logout(session=session)
        return Response(_command_result(session, command), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="The QR code to scan",
        description="While the session waits for a scan (WAIT_QR): the raw value, an SVG, "
        "a PNG data URL and the seconds until it expires. 409 `no_qr` otherwise.",
        responses={200: QrSerializer, 409: OpenApiResponse(description="No QR code now")},
    )
    @action(detail=True, methods=["get"])
    def qr(self, request, session_id=None):
        session = self.get_object()
        if not session.qr_payload:
            raise Conflict(
                f"There is no QR code to scan: the session is {session.status}.",
                code="no_qr",
                details={"status": session.status},
            )
        expires_in = 0
        if session.qr_expires_at:
            expires_in = max(0, int((session.qr_expires_at - timezone.now()).total_seconds()))
        return Response(
            {
                "qr": session.qr_payload,
                "svg": qr_svg(session.qr_payload),
                "png_data_url": qr_png_data_url(session.qr_payload),
                "expires_at": session.qr_expires_at,
                "expires_in_seconds": expires_in,
            }
        )

    @extend_schema(
        summary="Ask for a pairing code",
        description="Instead of scanning: the runner asks WhatsApp for a code to type on "
        "the phone with this number; it appears as `pairing_code` on the session.",
        request=PairCodeSerializer,
        responses={202: SessionCommandResultSerializer},
    )
    @action(detail=True, methods=["post"], url_path="pair-code")
    def pair_code(self, request, session_id=None):
        data = PairCodeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = self.get_object()
        command = services.session_pair_phone(
            session=session, phone_number=data.validated_data["phone_number"]
        )
        return Response(_command_result(session, command), status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="A session's health", responses=SessionHealthSerializer)
    @action(detail=True, methods=["get"])
    def health(self, request, session_id=None):
        session = self.get_object()
        since = timezone.now() - timedelta(hours=24)
        out, inbound = Message.Direction.OUTBOUND, Message.Direction.INBOUND
        sent_statuses = [Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ]
        counts = Message.objects.filter(session_id=session.pk, created_at__gte=since).aggregate(
            sent=Count("id", filter=Q(direction=out, status__in=sent_statuses)),
            received=Count("id", filter=Q(direction=inbound)),
            failed=Count("id", filter=Q(direction=out, status=Message.Status.FAILED)),
        )
        last_message = Message.objects.filter(session_id=session.pk).aggregate(
            at=Max("created_at")
        )["at"]
        moments = [t for t in (last_message, session.last_heartbeat_at, session.updated_at) if t]
        return Response(
            {
                "status": session.status,
                "desired_state": session.desired_state,
                "phone_number": session.phone_number,
                "last_activity_at": max(moments) if moments else None,
                "last_heartbeat_at": session.last_heartbeat_at,
                "reconnect_attempts": session.reconnect_attempts,
                "last_disconnect_reason": session.last_disconnect_reason,
                "messages_last_24h": counts,
            }
        )
