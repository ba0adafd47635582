"""Overload control (RFC 6357's congestion collapse): how far behind the
SIP side runs, and what share of new calls it takes on while behind.

The `LoadShedder` is fed delay samples of two kinds, each with the time it
was taken: how long a datagram waited in the kernel before it was read
(`waited`), and how late a periodic timer fired (`lag`). Every `window` it
takes the window's *standing* delay, the smallest sample of each kind (a
burst that the next reads clear is no backlog; a queue that never empties
is; a kind with fewer than three samples in the window says nothing), the
larger of the two, and moves the share of new INVITEs it admits: cut in
proportion when the standing delay is over the target and growing (out of
an overload, three windows in a row), raised a step when it is under half
of it. A queue that piled up while the loop stood still (a collector pass:
the timer fired as late as the messages waited, within the last half
second) is no overload, and cuts nothing. A refused INVITE costs a 503
with Retry-After, a fraction of what a call costs, so a server offered
more calls than it can set up keeps its queue short and serves at capacity
instead of falling into a retransmission storm. What is already
admitted (in-dialog requests, ACK, BYE, CANCEL, the INVITE a call sends
again with credentials) and what is no call (REGISTER, OPTIONS) is always
served. Sans-IO: time is passed in, so a fake clock tests it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# RFC 3261's T1: a new INVITE that waited longer has been sent again by its
# caller already; it gets a 503 rather than a call that starts that late.
T1 = 0.5
# Share of new calls taken back per calm window: all of them within a second.
RECOVERY_STEP = 0.1
# A window judges a kind of sample only with this many of it: one message
# that waited alone (on a quiet server, through a collector pass) is no
# queue; under a real overload every window holds hundreds.
MIN_SAMPLES = 3
# How many windows (of 100 ms) a stall of the loop explains the waits that
# follow it: what piled up during a stall drains over several windows.
STALL_WINDOWS = 5
# Windows in a row behind before the first cut: a queue that a short dip
# of the machine (another process's burst, a slow pass) builds and then
# drains costs some latency, not calls. Once shedding, every window counts.
ONSET_WINDOWS = 3
# A queue whose standing delay fell below this share of the last window's
# is draining: no cut for it.
DRAINING = 0.8
# A cut never takes more than this share away at once: one slow window (a
# collector pass, say) must not refuse every call.
DEEPEST_CUT = 0.5
# Calls admitted lately, by Call-ID and From tag: their INVITE sent again
# with credentials after our 407 belongs to a call already taken on.
REMEMBERED_CALLS = 4096
REMEMBER_FOR = 32.0  # 64*T1: how long a caller may take to come back


@dataclass(frozen=True, slots=True)
class OverloadPolicy:
    """`target_delay`: the standing delay (seconds) the shedder keeps the SIP
    side under; 0 turns shedding off. `retry_after`: seconds a refused
    caller is asked to wait. `window`: seconds over which the standing
    delay is judged. `calm`: seconds at the full share before an overload
    is said to be over (so an episode is logged once, not per dip)."""

    target_delay: float = 0.015
    retry_after: int = 5
    window: float = 0.1
    calm: float = 5.0
    stale_after: float = T1

    @property
    def enabled(self) -> bool:
        return self.target_delay > 0


@dataclass(frozen=True, slots=True)
class OverloadChange:
    """The shedder started refusing calls (`overloaded`), or stopped: with the
    standing delay that started it, and when it ends how long it lasted and
    how many new calls it refused."""

    overloaded: bool
    delay: float
    seconds: float = 0.0
    refused: int = 0


class LoadShedder:
    """Decides each new INVITE from the delays it is fed (see the module)."""

    def __init__(self, policy: OverloadPolicy, now: float = 0.0) -> None:
        self.policy = policy
        self.share = 1.0
        self._credit = 0.0
        self._window_start = now
        self._window_min: dict[str, float] = {}
        self._window_count: dict[str, int] = {}
        self._window_stall = 0.0  # the longest lag of the window: the loop stood still
        self._stalls: deque[float] = deque(maxlen=STALL_WINDOWS)  # of the last windows
        self._behind = 0  # windows behind in a row
        self._previous_standing = 0.0
        self._latest = 0.0
        self._overloaded_since: float | None = None
        self._full_since: float | None = None
        self._episode_refused = 0
        # A change found while judging a call, reported by the next sample.
        self._unreported: OverloadChange | None = None
        self._admitted: dict[int, float] = {}
        self.refused = 0
        self.refused_stale = 0
        self.episodes = 0
        self.worst_delay = 0.0

    @property
    def overloaded(self) -> bool:
        return self._overloaded_since is not None

    def waited(self, delay: float, now: float) -> OverloadChange | None:
        """A message read at `now` had waited `delay` seconds to be read.
        Returns the change of state it caused, if any."""
        return self._observe("waited", delay, now)

    def lag(self, delay: float, now: float) -> OverloadChange | None:
        """A timer due `delay` seconds before `now` fired at `now`."""
        return self._observe("lag", delay, now)

    def _observe(self, kind: str, delay: float, now: float) -> OverloadChange | None:
        if not self.policy.enabled:
            return None
        self._latest = delay
        if delay > self.worst_delay:
            self.worst_delay = delay
        change = self._close_windows(now) or self._unreported
        self._unreported = None
        smallest = self._window_min.get(kind)
        if smallest is None or delay < smallest:
            self._window_min[kind] = delay
        self._window_count[kind] = self._window_count.get(kind, 0) + 1
        if kind == "lag" and delay > self._window_stall:
            self._window_stall = delay
        return change

    def admits_call(self, call: tuple[str, str | None], now: float, *, queued: float = 0.0) -> bool:
        """Whether the new INVITE of `call` (Call-ID, From tag) is taken on;
        `queued`: how long what would be handled before it has waited
        already (the SIP side's backlog). Refused: a 503 with Retry-After
        (`policy.retry_after`) is its answer."""
        if not self.policy.enabled:
            return True
        key = hash(call)
        if key in self._admitted:
            return True  # its first INVITE was taken on: this one brings credentials
        self._unreported = self._close_windows(now) or self._unreported
        # Taken on behind a backlog, a call waits as long as the backlog's
        # oldest has, and longer while it grows: half of T1 is the bound.
        if self._latest > self.policy.stale_after or 2 * queued > self.policy.stale_after:
            self.refused_stale += 1
            return self._refuse()
        if self.share < 1.0:
            self._credit += self.share
            if self._credit < 1.0:
                return self._refuse()
            self._credit -= 1.0
        self._remember(key, now)
        return True

    def stats(self) -> dict[str, float | int]:
        return {
            "overload_share": round(self.share, 3),
            "overload_refused": self.refused,
            "overload_refused_stale": self.refused_stale,
            "overload_episodes": self.episodes,
            "overload_worst_delay_ms": round(self.worst_delay * 1000, 1),
        }

    def _refuse(self) -> bool:
        self.refused += 1
        self._episode_refused += 1
        return False

    def _remember(self, key: int, now: float) -> None:
        admitted = self._admitted
        admitted[key] = now
        if len(admitted) > REMEMBERED_CALLS:
            del admitted[next(iter(admitted))]
        # Insertion order is age order: the oldest go first.
        while admitted:
            oldest = next(iter(admitted))
            if admitted[oldest] > now - REMEMBER_FOR:
                break
            del admitted[oldest]

    def _close_windows(self, now: float) -> OverloadChange | None:
        """Judge every window that ended by `now`: the one with samples by its
        smallest, each empty one after it as calm (nothing waited)."""
        policy = self.policy
        elapsed = now - self._window_start
        if elapsed < policy.window:
            return None
        windows = int(elapsed / policy.window)
        waited, lag = self._standing("waited"), self._standing("lag")
        standing = max(waited, lag)
        stalls = self._stalls
        stalls.append(self._window_stall if windows == 1 else 0.0)
        stall = max(stalls)
        self._window_min = {}
        self._window_count = {}
        self._window_stall = 0.0
        self._window_start += windows * policy.window
        target = policy.target_delay
        # A loop late all through the window is behind; messages that waited
        # no longer than the loop once stood still are what piled up meanwhile.
        behind = lag > target or waited > max(target, stall)
        self._behind = self._behind + 1 if behind and windows == 1 else int(behind)
        # Out of an overload, a dip of the machine's capacity that a queue
        # absorbs is no reason to refuse calls: it takes a few windows.
        started = self._overloaded_since is not None or self._behind >= ONSET_WINDOWS
        if behind and started and standing > DRAINING * self._previous_standing:
            self.share *= max(DEEPEST_CUT, target / standing)
        elif standing < target / 2:
            self._recover()
        self._previous_standing = standing if windows == 1 else 0.0
        # The windows after it had nothing read in them: nothing waited.
        self._recover(windows - 1)
        return self._state(standing, now)

    def _standing(self, kind: str) -> float:
        """The window's smallest sample of `kind`, if it had enough of them."""
        if self._window_count.get(kind, 0) < MIN_SAMPLES:
            return 0.0
        return self._window_min[kind]

    def _recover(self, steps: int = 1) -> None:
        self.share = min(1.0, self.share + steps * RECOVERY_STEP)

    def _state(self, standing: float, now: float) -> OverloadChange | None:
        if self.share < 1.0:
            self._full_since = None
            if self._overloaded_since is None:
                self._overloaded_since = now
                self._episode_refused = 0
                self.episodes += 1
                return OverloadChange(True, standing)
            return None
        if self._overloaded_since is None:
            return None
        if self._full_since is None:
            self._full_since = now
        if now - self._full_since < self.policy.calm:
            return None
        since, self._overloaded_since = self._overloaded_since, None
        self._full_since = None
        self._credit = 0.0
        return OverloadChange(False, standing, now - since, self._episode_refused)
