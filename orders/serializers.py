"""The API's shapes of orders (the same JSON as `order.updated` events) and menu items."""

from __future__ import annotations

from rest_framework import serializers

from orders.models import Fulfilment, MenuItem, OrderStatus


class OrderContactSerializer(serializers.Serializer):
    phone = serializers.CharField()
    name = serializers.CharField(allow_blank=True)


class OrderLineSerializer(serializers.Serializer):
    name = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price_minor = serializers.IntegerField()
    total_minor = serializers.IntegerField()
    notes = serializers.CharField(allow_blank=True)


class OrderSerializer(serializers.Serializer):
    """Describes `orders.events.order_as_event(order)`, which the API answers with."""

    id = serializers.UUIDField()
    pk = serializers.IntegerField()
    number = serializers.IntegerField(help_text="What people say: 'order 104'.")
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    next_status = serializers.ChoiceField(choices=OrderStatus.choices, allow_null=True)
    allowed = serializers.ListField(child=serializers.ChoiceField(choices=OrderStatus.choices))
    fulfilment = serializers.ChoiceField(choices=Fulfilment.choices)
    address = serializers.CharField(allow_blank=True)
    notes = serializers.CharField(allow_blank=True)
    total_minor = serializers.IntegerField()
    currency = serializers.CharField()
    total_display = serializers.CharField()
    is_late = serializers.BooleanField()
    rating = serializers.IntegerField(allow_null=True)
    rating_comment = serializers.CharField(allow_blank=True)
    rating_prompt = serializers.CharField(allow_blank=True)
    cancel_reason = serializers.CharField(allow_blank=True)
    session_id = serializers.IntegerField()
    contact = OrderContactSerializer()
    lines = OrderLineSerializer(many=True)
    created_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)
    confirmed_at = serializers.DateTimeField(allow_null=True)
    preparing_at = serializers.DateTimeField(allow_null=True)
    out_for_delivery_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    rated_at = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)


class OrderPageSerializer(serializers.Serializer):
    results = OrderSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class OrderQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=OrderStatus.choices, required=False)
    date = serializers.DateField(
        required=False, help_text="Orders of this day (the business's time zone), YYYY-MM-DD."
    )
    session = serializers.UUIDField(required=False)


class OrderTransitionSerializer(serializers.Serializer):
    to = serializers.ChoiceField(choices=OrderStatus.choices)
    note = serializers.CharField(
        max_length=300,
        required=False,
        allow_blank=True,
        help_text="Why; required to cancel (the customer is told).",
    )


class MenuItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = MenuItem
        fields = [
            "id",
            "name_he",
            "name_en",
            "name_ar",
            "description_he",
            "description_en",
            "description_ar",
            "price_minor",
            "category",
            "available",
            "sort_order",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"price_minor": {"max_value": 100_000_000}}


class MenuItemUpdateSerializer(MenuItemSerializer):
    class Meta(MenuItemSerializer.Meta):
        extra_kwargs = {
            "price_minor": {"max_value": 100_000_000, "required": False},
            "name_he": {"required": False},
        }
