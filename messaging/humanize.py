"""How a person would send a message: the timing of read receipts, typing and pauses.

Pure timing math, no I/O. `humanize_plan()` turns a message into timed steps, relative to
when the send was cleared to go:

    [Step(0.0, "read"), Step(0.4, "typing"), Step(3.1, "paused"), Step(3.6, "send")]

The session runner executes them as scheduled steps (sessions_app/runner.py): each due
step is done at once and the send goes back to the outbox's delayed set until the next
one, so a session that is "typing" holds neither the runner nor a worker. Only live
sessions (neonize, sandbox) are humanised; Twilio is the official API and is not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sessions_app.models import HumanizationProfile

TYPING_MIN_SECONDS = 1.0
TYPING_MAX_SECONDS = 25.0
TYPING_JITTER = 0.2  # ±20%
# WhatsApp drops "typing…" after a while unless it is sent again.
TYPING_REFRESH_SECONDS = 20.0

READ = "read"
TYPING = "typing"
PAUSED = "paused"
SEND = "send"
ACTIONS = (READ, TYPING, PAUSED, SEND)

# Kinds a person does not type: they pick a file or an emoji.
_NOT_TYPED = frozenset({"reaction", "sticker", "location", "contact"})


@dataclass(frozen=True)
class Profile:
    chars_per_second: float
    read_delay: tuple[float, float]  # seconds from "cleared to go" to the read receipt
    think: tuple[float, float]  # from the read receipt to "typing…"
    pause: tuple[float, float]  # from the end of typing to the send
    first_contact: tuple[float, float]  # extra, before the first message to a contact


PROFILES: dict[str, Profile | None] = {
    HumanizationProfile.INSTANT: None,
    HumanizationProfile.FAST: Profile(
        chars_per_second=25.0,
        read_delay=(0.1, 0.4),
        think=(0.2, 0.5),
        pause=(0.2, 0.5),
        first_contact=(0.5, 1.5),
    ),
    HumanizationProfile.NORMAL: Profile(
        chars_per_second=12.0,
        read_delay=(0.5, 1.5),
        think=(0.5, 1.5),
        pause=(0.4, 1.2),
        first_contact=(2.0, 5.0),
    ),
    HumanizationProfile.SLOW: Profile(
        chars_per_second=6.0,
        read_delay=(1.0, 3.0),
        think=(1.0, 2.5),
        pause=(0.8, 2.0),
        first_contact=(4.0, 8.0),
    ),
}


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the plan starts
    action: str  # one of ACTIONS

    def as_list(self) -> list:
        return [round(self.at, 3), self.action]

    @classmethod
    def from_list(cls, value) -> Step:
        at, action = value
        return cls(at=float(at), action=str(action))


def profile_for(name: str) -> Profile | None:
    """The profile's timings; None for `instant` (and for a name we do not know)."""
    return PROFILES.get(name)


def typing_seconds(text: str, *, chars_per_second: float, rng: random.Random) -> float:
    """How long "typing…" shows: grows with the text, ±20% jitter, within 1 to 25 s."""
    base = len(text or "") / chars_per_second
    jittered = base * rng.uniform(1 - TYPING_JITTER, 1 + TYPING_JITTER)
    return min(TYPING_MAX_SECONDS, max(TYPING_MIN_SECONDS, jittered))


def humanize_plan(
    *,
    profile: str,
    text: str,
    kind: str = "text",
    first_contact: bool = False,
    rng: random.Random | None = None,
) -> list[Step]:
    """The steps before a send, for this session profile and message.

    `instant` (or an unknown profile) sends at once. Otherwise: an extra delay before
    the first message to a new contact, the read receipt, "typing…" for a time that
    grows with the text (refreshed every 20 s), a pause, then the send. Reactions,
    stickers, locations and contacts are not typed: read, pause, send.
    """
    timings = profile_for(profile)
    if timings is None:
        return [Step(0.0, SEND)]
    rng = rng or random.Random()  # noqa: S311 - jitter, not security
    at = rng.uniform(*timings.first_contact) if first_contact else 0.0
    at += rng.uniform(*timings.read_delay)
    steps = [Step(at, READ)]
    if kind not in _NOT_TYPED:
        at += rng.uniform(*timings.think)
        typing = typing_seconds(text, chars_per_second=timings.chars_per_second, rng=rng)
        refresh = 0.0
        while refresh < typing:
            steps.append(Step(at + refresh, TYPING))
            refresh += TYPING_REFRESH_SECONDS
        at += typing
        steps.append(Step(at, PAUSED))
    at += rng.uniform(*timings.pause)
    steps.append(Step(at, SEND))
    return steps


def plan_seconds(steps: list[Step]) -> float:
    """From the start of the plan to the send."""
    return steps[-1].at if steps else 0.0
