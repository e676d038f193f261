"""Replicas of one model behind several base URLs: which one gets the next request.

    fleet = Fleet(["http://gpu1:8000/v1", "http://gpu2:8000/v1"])
    i = fleet.pick()                    # least outstanding requests among those in rotation
    fleet.start(i); ...; fleet.done(i, ok=False, rest=True)   # a failed replica rests

Least outstanding requests, not round robin: a replica that answers slowly (a longer queue, a
smaller GPU) holds its requests longer and so gets fewer new ones. A replica whose attempt
fails because of the server or the way to it (connection error, 5xx, timeout) is taken out of
rotation for a cool-down that doubles with each failure in a row (1 s, 2 s, 4 s, ... 60 s);
when it ends, ONE probe request goes there (not a burst that would all fail again), and the
first success puts it back. The runner retries the failed request on another replica at once.
With one URL there is nobody to fail over to: nothing is ever taken out. `concurrency` is
the total in flight over all replicas (raise it with the fleet's size).

Counts per replica (`stats()`): attempts sent, attempts failed, seconds out of rotation (from
its first failure to its next success, or to the end of the run). Single-threaded: the
runner's workers all live on one event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

COOLDOWN_BASE = 1.0
COOLDOWN_CAP = 60.0


@dataclass
class _Replica:
    url: str
    outstanding: int = 0
    requests: int = 0
    failures: int = 0
    in_a_row: int = 0  # consecutive rested failures; 0 = healthy
    out_until: float = 0.0
    out_since: float | None = None
    out_total: float = 0.0


class Fleet:
    def __init__(
        self,
        urls: list[str],
        cooldown_base: float = COOLDOWN_BASE,
        cooldown_cap: float = COOLDOWN_CAP,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.replicas = [_Replica(u) for u in urls] or [_Replica("")]
        self.cooldown_base = cooldown_base
        self.cooldown_cap = cooldown_cap
        self.clock = clock

    def __len__(self) -> int:
        return len(self.replicas)

    def _usable(self, r: _Replica, now: float) -> bool:
        if now < r.out_until:
            return False
        return not (r.in_a_row and r.outstanding)  # back from a rest: one probe at a time

    def pick(self, avoid: int | None = None) -> int:
        """The replica for the next attempt: in rotation, fewest requests in flight (ties: the
        fewest sent so far), and not `avoid` (the one that just failed it) when there is a
        choice. When every replica rests, the one whose rest ends first."""
        reps = self.replicas
        if len(reps) == 1:
            return 0
        now = self.clock()
        ok = [i for i, r in enumerate(reps) if self._usable(r, now)]
        if avoid is not None and len(ok) > 1:
            ok = [i for i in ok if i != avoid] or ok
        if not ok:
            return min(range(len(reps)), key=lambda i: (i == avoid, reps[i].out_until))
        return min(ok, key=lambda i: (reps[i].outstanding, reps[i].requests))

    def has_alternative(self, failed: int) -> bool:
        """Is another replica than `failed` in rotation right now?"""
        now = self.clock()
        return any(i != failed and self._usable(r, now) for i, r in enumerate(self.replicas))

    def start(self, i: int) -> None:
        r = self.replicas[i]
        r.outstanding += 1
        r.requests += 1

    def done(self, i: int, ok: bool, rest: bool = False) -> None:
        """An attempt on replica `i` ended; `rest`: it failed because of the replica."""
        r = self.replicas[i]
        r.outstanding -= 1
        now = self.clock()
        if ok:
            if r.out_since is not None:
                r.out_total += now - r.out_since
                r.out_since = None
            r.in_a_row = 0
            r.out_until = 0.0
            return
        r.failures += 1
        # Requests that were in flight when the replica died fail together: that is one
        # failure for the cool-down, not one per request (or the rest would grow to minutes).
        if rest and len(self.replicas) > 1 and now >= r.out_until:
            r.in_a_row += 1
            if r.out_since is None:
                r.out_since = now
            pause = min(self.cooldown_cap, self.cooldown_base * 2 ** (r.in_a_row - 1))
            r.out_until = max(r.out_until, now + pause)

    def stats(self) -> dict[str, dict[str, float]]:
        """{url: {"requests", "failures", "out_of_rotation_s"}}, as of now."""
        now = self.clock()
        return {
            r.url: {
                "requests": r.requests,
                "failures": r.failures,
                "out_of_rotation_s": round(
                    r.out_total + (now - r.out_since if r.out_since is not None else 0.0), 3
                ),
            }
            for r in self.replicas
        }
