from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dashboard.realtime import tenant_group

# Close codes a browser can tell apart: not signed in, signed in elsewhere, suspended.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """One socket per dashboard page; joins its tenant's group and relays events.

    TenantAuthMiddleware has already resolved the tenant from the host and loaded the
    user from that tenant's own session table.
    """

    group = None

    async def connect(self):
        tenant, user = self.scope.get("tenant"), self.scope.get("user")
        if tenant is None or not tenant.is_active:
            await self.refuse(CLOSE_FORBIDDEN)
            return
        if user is None or not user.is_authenticated:
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        self.group = tenant_group(tenant.schema_name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "tenant": tenant.slug})

    async def refuse(self, code: int) -> None:
        # Accept, then close with a code: a browser can read the code and stop retrying,
        # where a refused handshake looks like a network error worth retrying.
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def dashboard_event(self, message):
        await self.send_json(message["event"])
