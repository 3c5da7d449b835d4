"""SyncStackMiddleware: keeps the middleware stack in one thread with the (sync) views.

Under ASGI, Django runs a middleware in async mode whenever the one below it can, and
its own middleware (sessions, locale, CSRF, auth, messages...) then hops to a thread and
back for each of its hooks: about 13 thread handoffs per request, 12-18% of a webhook's
CPU when profiled. Last in MIDDLEWARE and sync-only, this one makes Django run the whole
stack in sync mode, in the thread that runs the view: one handoff into it at the top of
the stack, and one round trip to the event loop here, where Django's ASGI handler is
async at the bottom.
"""


class SyncStackMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
