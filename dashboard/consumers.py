"""The dashboard websocket: one per open dashboard page, hearing its tenant's events.

Fan-out happens in this process, not in Redis. With channels-redis, a group message is
stored once per member channel and a process pops its channels' messages one Redis round
trip at a time, at most `capacity` waiting: a thousand dashboards of one tenant on one
web process would cost a thousand round trips per event, and drop events past the
capacity. So each process joins each tenant's group ONCE, through a `TenantHub` (one
channel of its own, one reader task), and the hub hands every event to that tenant's
sockets in this process: one Redis message per event per process, whatever the number of
screens. A socket only ever joins the hub of the tenant its host resolved to, after its
user was found in that tenant's own schema.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from config.metrics import WEBSOCKET_CLIENTS
from dashboard.realtime import tenant_group

logger = logging.getLogger(__name__)

# Close codes a browser can tell apart: not signed in, signed in elsewhere, suspended.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403

# channels-redis forgets group members after `group_expiry` (a day by default): a hub
# that lives longer joins again now and then.
HUB_REJOIN_SECONDS = 3600
HUB_RETRY_SECONDS = 1.0


class TenantHub:
    """One tenant group's membership for this process, shared by its local sockets."""

    def __init__(self, layer, group: str):
        self.layer = layer
        self.group = group
        self.members: set[DashboardConsumer] = set()
        self.channel = ""
        self.reader: asyncio.Task | None = None

    async def start(self) -> None:
        # The default prefix: channels-redis reads all of a process's "specific." channels
        # through one blocking pop, which a channel of another prefix would never get.
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        self.reader = asyncio.get_running_loop().create_task(self.read())

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        try:
            await self.layer.group_discard(self.group, self.channel)
        except Exception:  # the membership expires by itself
            logger.warning("could not leave %s", self.group, exc_info=True)

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        joined_at = loop.time()
        while True:
            try:
                if loop.time() - joined_at > HUB_REJOIN_SECONDS:
                    await self.layer.group_add(self.group, self.channel)
                    joined_at = loop.time()
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away for a moment: the sockets stay, events resume
                logger.warning("dashboard hub %s: receive failed", self.group, exc_info=True)
                await asyncio.sleep(HUB_RETRY_SECONDS)
                continue
            if message.get("type") == "dashboard.event":
                await self.fan_out(json.dumps(message["event"]))

    async def fan_out(self, text: str) -> None:
        for consumer in list(self.members):
            try:
                await consumer.send(text_data=text)
            except Exception:  # that socket is going away; its disconnect cleans up
                logger.debug("could not send to %s", consumer.channel_name, exc_info=True)


class _Hubs:
    """This event loop's hubs, by group; joins and leaves are serialised by one lock."""

    def __init__(self):
        self.lock = asyncio.Lock()
        self.by_group: dict[str, TenantHub] = {}

    async def join(self, layer, group: str, consumer: DashboardConsumer) -> None:
        async with self.lock:
            hub = self.by_group.get(group)
            if hub is None:
                hub = TenantHub(layer, group)
                await hub.start()
                self.by_group[group] = hub
            hub.members.add(consumer)

    async def leave(self, group: str, consumer: DashboardConsumer) -> None:
        async with self.lock:
            hub = self.by_group.get(group)
            if hub is None:
                return
            hub.members.discard(consumer)
            if not hub.members:
                del self.by_group[group]
                await hub.stop()


_hubs_by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def hubs() -> _Hubs:
    loop = asyncio.get_running_loop()
    found = _hubs_by_loop.get(loop)
    if found is None:
        found = _hubs_by_loop[loop] = _Hubs()
    return found


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """One socket per dashboard page; joins its tenant's hub and relays its events.

    TenantAuthMiddleware has already resolved the tenant from the host and loaded the
    user from that tenant's own session table.
    """

    group = None
    counted = False  # in WEBSOCKET_CLIENTS (config/metrics.py)

    async def connect(self):
        tenant, user = self.scope.get("tenant"), self.scope.get("user")
        if tenant is None or not tenant.is_active:
            await self.refuse(CLOSE_FORBIDDEN)
            return
        if user is None or not user.is_authenticated:
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        await self.accept()  # before joining: the hub only ever sends to accepted sockets
        self.counted = True
        WEBSOCKET_CLIENTS.inc()
        group = tenant_group(tenant.schema_name)
        await hubs().join(self.channel_layer, group, self)
        self.group = group
        await self.send_json({"type": "hello", "tenant": tenant.slug})

    async def refuse(self, code: int) -> None:
        # Accept, then close with a code: a browser can read the code and stop retrying,
        # where a refused handshake looks like a network error worth retrying.
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code):
        if self.counted:
            self.counted = False
            WEBSOCKET_CLIENTS.dec()
        if self.group:
            await hubs().leave(self.group, self)

    @classmethod
    async def decode_json(cls, text_data):
        try:
            return json.loads(text_data)
        except ValueError:
            return None  # not JSON: ignored, never a crash

    async def receive_json(self, content, **kwargs):
        """Dashboards only listen; a `ping` gets a `pong` (a client's liveness check)."""
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
