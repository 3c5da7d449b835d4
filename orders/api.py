"""/api/v1/orders and /api/v1/menu-items. Thin: the orders services and selectors do
the work; an illegal transition is a 409 with what is allowed."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api.auth import actor_of
from config.api.errors import ApiError
from config.api.pagination import PageQuery, keyset_page, page_params
from orders import selectors, services
from orders.events import order_as_event
from orders.models import MenuItem, Order, OrderStatus
from orders.serializers import (
    MenuItemSerializer,
    MenuItemUpdateSerializer,
    OrderPageSerializer,
    OrderQuery,
    OrderSerializer,
    OrderTransitionSerializer,
)
from sessions_app.models import WhatsAppSession

UUID_PATTERN = r"[0-9a-fA-F-]{36}"


@extend_schema(tags=["orders"])
class OrderViewSet(viewsets.GenericViewSet):
    serializer_class = OrderSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "order_id"
    lookup_value_regex = UUID_PATTERN
    write_scope = "manage"

    def get_queryset(self):
        return Order.objects.select_related("contact").prefetch_related("lines")

    @extend_schema(
        summary="List orders",
        description="Newest first, drafts left out unless asked for by status; filter by "
        "status, day and session.",
        parameters=[PageQuery, OrderQuery],
        responses=OrderPageSerializer,
    )
    def list(self, request):
        limit, before = page_params(request)
        query = OrderQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data
        if "date" in wanted:
            rows = selectors.orders_of_day(day=wanted["date"], status=wanted.get("status"))
        else:
            rows = self.get_queryset()
            if "status" in wanted:
                rows = rows.filter(status=wanted["status"])
            else:
                rows = rows.exclude(status=OrderStatus.DRAFT)
        if "session" in wanted:
            session = WhatsAppSession.objects.filter(
                tenant=request.tenant, public_id=wanted["session"]
            ).first()
            if session is None:
                raise ApiError(
                    status_code=400,
                    code="validation_error",
                    message="session: This business has no session with this id.",
                    details={"session": ["This business has no session with this id."]},
                )
            rows = rows.filter(session_id=session.pk)
        page, next_cursor = keyset_page(rows, limit=limit, before=before)
        return Response(
            {"results": [order_as_event(order) for order in page], "next_cursor": next_cursor}
        )

    @extend_schema(summary="Get an order", responses=OrderSerializer)
    def retrieve(self, request, order_id=None):
        return Response(order_as_event(self.get_object()))

    @extend_schema(
        summary="Move an order to another status",
        description="Through the same transition as the dashboard and the owner menu: "
        "recorded, and the customer is told. 409 `illegal_transition` (with `allowed`) "
        "when the order cannot go there from where it is.",
        request=OrderTransitionSerializer,
        responses={
            200: OrderSerializer,
            409: OpenApiResponse(description="Illegal transition (details.allowed)"),
        },
    )
    @action(detail=True, methods=["post"])
    def transition(self, request, order_id=None):
        data = OrderTransitionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = self.get_object()
        actor_kind, actor_label = actor_of(request)
        services.order_transition(
            order_id=order.pk,
            to=data.validated_data["to"],
            actor_kind=actor_kind,
            actor_label=actor_label,
            note=data.validated_data.get("note", ""),
        )
        return Response(order_as_event(self.get_queryset().get(pk=order.pk)))


@extend_schema(tags=["menu"])
class MenuItemViewSet(viewsets.GenericViewSet):
    serializer_class = MenuItemSerializer
    lookup_url_kwarg = "item_id"
    lookup_value_regex = r"[0-9]{1,18}"
    write_scope = "manage"

    def get_queryset(self):
        return MenuItem.objects.order_by("sort_order", "id")

    @extend_schema(summary="List menu items", responses=MenuItemSerializer(many=True))
    def list(self, request):
        return Response(MenuItemSerializer(self.get_queryset(), many=True).data)

    @extend_schema(
        summary="Create a menu item",
        description="Prices in minor units of the business's currency (agorot, cents).",
        request=MenuItemSerializer,
        responses={201: MenuItemSerializer},
    )
    def create(self, request):
        data = MenuItemSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        item = services.menu_item_create(**data.validated_data)
        return Response(MenuItemSerializer(item).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Get a menu item", responses=MenuItemSerializer)
    def retrieve(self, request, item_id=None):
        return Response(MenuItemSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change a menu item", request=MenuItemUpdateSerializer, responses=MenuItemSerializer
    )
    def partial_update(self, request, item_id=None):
        data = MenuItemUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        item = services.menu_item_update(item=self.get_object(), **data.validated_data)
        return Response(MenuItemSerializer(item).data)

    @extend_schema(summary="Delete a menu item", responses={204: None})
    def destroy(self, request, item_id=None):
        services.menu_item_delete(item=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
