"""Keyset pagination: `?limit=N&before=<cursor>`, newest first, never by offset.

A page answers `{"results": [...], "next_cursor": "..." | null}`; pass `next_cursor` as
`before` for the next (older) page. Cursors are opaque (messaging.conversations'
encoding of a row's sort time and id); one we did not make is a 400 on `before`.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import F, Q, QuerySet
from rest_framework import serializers

from messaging.conversations import cursor_decode, cursor_encode

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class PageQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)
    before = serializers.CharField(required=False, max_length=200, allow_blank=False)


def page_params(request) -> tuple[int, str | None]:
    query = PageQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data["limit"], query.validated_data.get("before")


def keyset_page(
    rows: QuerySet, *, limit: int, before: str | None, time_field: str = "created_at"
) -> tuple[list, str | None]:
    """One page of `rows` ordered by (time_field, id) descending, and the next cursor.
    `time_field` may be an annotation; it must not be NULL on any row."""
    if before is not None:
        try:
            stamp, row_id = cursor_decode(before)
        except ValidationError as error:
            raise ValidationError({"before": error.messages}) from None
        rows = rows.filter(
            Q(**{f"{time_field}__lt": stamp}) | Q(**{time_field: stamp, "id__lt": row_id})
        )
    page = list(rows.order_by(F(time_field).desc(), "-id")[: limit + 1])
    if len(page) <= limit:
        return page, None
    page = page[:limit]
    last = page[-1]
    return page, cursor_encode(getattr(last, time_field), last.pk)


def page_serializer(item_serializer, name: str):
    """A serializer class describing one page of `item_serializer` (for the schema)."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "results": item_serializer(many=True),
            "next_cursor": serializers.CharField(allow_null=True),
            "__module__": __name__,
        },
    )
