"""Messaging's Prometheus counters (defined in config/metrics.py), with each label
combination's child looked up once per process: counting costs a dict lookup and an
increment in the process's memory-mapped file."""

from __future__ import annotations

import functools

from config import metrics


@functools.cache
def _received(provider: str):
    return metrics.MESSAGES_RECEIVED.labels(provider=provider)


@functools.cache
def _sent(provider: str, result: str):
    return metrics.MESSAGES_SENT.labels(provider=provider, result=result)


@functools.cache
def _latency(provider: str):
    return metrics.SEND_LATENCY.labels(provider=provider)


@functools.cache
def _retries(provider: str):
    return metrics.SEND_RETRIES.labels(provider=provider)


@functools.cache
def _dead_letters(provider: str):
    return metrics.DEAD_LETTERS.labels(provider=provider)


@functools.cache
def _limit_waits(limit: str):
    return metrics.RATE_LIMIT_WAITS.labels(limit=limit)


@functools.cache
def _webhooks(result: str):
    return metrics.WEBHOOK_DELIVERIES.labels(result=result)


def received_count(provider: str) -> None:
    """An inbound message was stored (not a repeat of one already stored)."""
    _received(provider or "unknown").inc()


def sent_count(provider: str, *, latency_seconds: float | None = None) -> None:
    """The provider accepted a message, `latency_seconds` after it was queued."""
    provider = provider or "unknown"
    _sent(provider, "sent").inc()
    if latency_seconds is not None:
        _latency(provider).observe(max(0.0, latency_seconds))


def failed_count(provider: str) -> None:
    """A message failed for good: a dead letter."""
    provider = provider or "unknown"
    _sent(provider, "failed").inc()
    _dead_letters(provider).inc()


def suppressed_count(provider: str) -> None:
    _sent(provider or "unknown", "suppressed").inc()


def retry_count(provider: str) -> None:
    _retries(provider or "unknown").inc()


def limit_wait_count(limit: str) -> None:
    _limit_waits(limit or "unknown").inc()


def webhook_count(result: str) -> None:
    """`delivered`, `failed` or `retry`."""
    _webhooks(result).inc()
