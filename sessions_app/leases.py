"""Which runner owns which session: a lease per session in Redis.

A runner acquires a free lease (SET NX with a time to live), renews it on every
heartbeat, and releases it when it lets the session go. A runner that dies stops
renewing: its leases expire after LEASE_TTL_SECONDS and another runner takes the
sessions. Renew and release only act on a lease the caller still holds.
"""

from django.conf import settings

from config.redis_client import redis_client

_KEY = "lease:session:{}"

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def _ttl_ms() -> int:
    return int(settings.SESSION_LEASE_TTL_SECONDS * 1000)


def lease_acquire(session_id: int, runner: str) -> bool:
    return bool(redis_client().set(_KEY.format(session_id), runner, nx=True, px=_ttl_ms()))


def lease_renew(session_ids: list[int], runner: str) -> set[int]:
    """Renew several leases at once; returns the ids this runner still holds."""
    if not session_ids:
        return set()
    client = redis_client()
    renew = client.register_script(_RENEW)
    pipe = client.pipeline(transaction=False)
    for session_id in session_ids:
        renew(keys=[_KEY.format(session_id)], args=[runner, _ttl_ms()], client=pipe)
    results = pipe.execute()
    return {sid for sid, held in zip(session_ids, results, strict=True) if held}


def lease_release(session_id: int, runner: str) -> None:
    client = redis_client()
    client.register_script(_RELEASE)(keys=[_KEY.format(session_id)], args=[runner])


def lease_owner(session_id: int) -> str | None:
    return redis_client().get(_KEY.format(session_id))


def lease_owners(session_ids: list[int]) -> dict[int, str | None]:
    if not session_ids:
        return {}
    values = redis_client().mget([_KEY.format(sid) for sid in session_ids])
    return dict(zip(session_ids, values, strict=True))
