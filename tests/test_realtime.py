"""dashboard/realtime.py's synchronous group send against a real channels-redis layer:
consumers (channels-redis's own `receive`) get exactly what `group_send` would give."""

import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from dashboard import realtime
from dashboard.realtime import tenant_event_publish, tenant_group


class Listener:
    def __init__(self, schema: str):
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(tenant_group(schema), self.channel)

    def received(self) -> list[dict]:
        async def receive_all():
            import asyncio

            messages = []
            while True:
                try:
                    messages.append(await asyncio.wait_for(self.layer.receive(self.channel), 0.3))
                except TimeoutError:
                    return messages

        return async_to_sync(receive_all)()


def test_the_sync_path_is_used_with_channels_redis(platform):
    assert realtime._sync_capable(get_channel_layer())


def test_every_socket_of_the_tenant_gets_the_event_and_no_other_tenant_does(platform):
    schema, other = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    first, second, stranger = Listener(schema), Listener(schema), Listener(other)
    event = {"type": "message.new", "message": {"id": "m1", "text": "שלום", "n": [1, 2]}}

    tenant_event_publish(schema_name=schema, event=event)
    tenant_event_publish(schema_name=schema, event={"type": "message.status", "n": 2})

    for listener in (first, second):
        assert [m["event"] for m in listener.received()] == [
            event,
            {"type": "message.status", "n": 2},
        ]
    assert stranger.received() == []


def test_a_group_without_sockets_costs_nothing_and_raises_nothing(platform):
    tenant_event_publish(schema_name=f"t{uuid.uuid4().hex[:8]}", event={"type": "x"})


def test_an_event_without_a_type_is_refused(platform):
    import pytest

    with pytest.raises(ValueError):
        tenant_event_publish(schema_name="t1", event={"data": 1})
