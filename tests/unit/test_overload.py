"""The load shedder (pbx/overload.py) with a fake clock: delays in, the
share of new calls and the decisions out."""

from __future__ import annotations

from callbridge.pbx.overload import (
    REMEMBERED_CALLS,
    LoadShedder,
    OverloadChange,
    OverloadPolicy,
)

POLICY = OverloadPolicy(target_delay=0.03, retry_after=5, window=0.1, calm=5.0)


def call(n: int) -> tuple[str, str]:
    return (f"call-{n}@test", f"tag-{n}")


def admitted_of(shedder: LoadShedder, calls: range, now: float) -> int:
    return sum(shedder.admits_call(call(n), now) for n in calls)


def feed(shedder: LoadShedder, delay: float, start: float, end: float, step: float = 0.01) -> list:
    """Samples of `delay` every `step` from `start` to `end`; the changes they caused."""
    changes = []
    t = start
    while t < end - 1e-9:
        change = shedder.waited(delay, t)
        if change is not None:
            changes.append((t, change))
        t = round(t + step, 6)
    return changes


def test_a_server_that_keeps_up_admits_every_call() -> None:
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.002, 0.0, 10.0)
    assert admitted_of(shedder, range(1000), 10.0) == 1000
    assert not shedder.overloaded
    assert shedder.refused == 0


def test_a_standing_queue_cuts_the_share_and_new_calls_are_refused() -> None:
    shedder = LoadShedder(POLICY)
    changes = feed(shedder, 0.06, 0.0, 0.51)  # twice the target, five windows
    assert shedder.overloaded
    assert [change.overloaded for _, change in changes] == [True]  # logged once
    assert 0.0 < shedder.share <= 0.5**2
    admitted = admitted_of(shedder, range(1000), 0.51)
    assert admitted == round(1000 * shedder.share)  # spread evenly, no luck involved
    assert shedder.refused == 1000 - admitted


def test_one_slow_read_in_a_window_is_no_backlog() -> None:
    # A collector pass: the datagrams read just after it waited long, the
    # rest of the window did not. The smallest wait is what stands.
    shedder = LoadShedder(POLICY)
    t = 0.0
    for _ in range(50):
        shedder.waited(0.18, t)
        feed(shedder, 0.001, t + 0.01, t + 0.1)
        t = round(t + 0.1, 6)
    assert shedder.share == 1.0
    assert not shedder.overloaded


def test_one_window_cuts_at_most_half_of_the_calls() -> None:
    shedder = LoadShedder(POLICY)
    feed(shedder, 2.0, 0.0, 0.32)  # behind three windows in a row: the first cut
    assert shedder.share == 0.5


def test_the_share_comes_back_step_by_step_once_the_queue_is_gone() -> None:
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.3, 0.0, 0.71)
    low = shedder.share
    assert low < 0.1
    feed(shedder, 0.001, 0.71, 1.01)
    assert low < shedder.share < 1.0
    feed(shedder, 0.001, 1.01, 2.2)
    assert shedder.share == 1.0


def test_a_delay_between_half_the_target_and_the_target_holds_the_share() -> None:
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.06, 0.0, 0.11)
    share = shedder.share
    feed(shedder, 0.02, 0.11, 1.0)
    assert shedder.share == share


def test_an_idle_spell_counts_as_calm() -> None:
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.3, 0.0, 0.51)
    assert shedder.share < 1.0
    assert shedder.admits_call(call(1), 3600.0)  # an hour later, nothing read in between
    assert shedder.share == 1.0


def test_the_end_of_an_overload_is_told_once_after_the_calm_with_what_it_refused() -> None:
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.3, 0.0, 0.51)
    refused = 1000 - admitted_of(shedder, range(1000), 0.51)
    changes = feed(shedder, 0.001, 0.51, 10.0)
    ends = [change for _, change in changes if not change.overloaded]
    assert len(changes) == 1 and len(ends) == 1
    end = ends[0]
    assert isinstance(end, OverloadChange)
    assert end.refused == refused > 0
    assert 5.0 <= end.seconds < 7.0
    assert not shedder.overloaded


def test_a_dip_during_the_calm_keeps_it_one_episode() -> None:
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.3, 0.0, 0.51)
    feed(shedder, 0.001, 0.51, 3.0)
    changes = feed(shedder, 0.3, 3.0, 3.11)  # back before the calm was over
    assert changes == []
    assert shedder.episodes == 1


def test_an_invite_that_waited_longer_than_t1_is_refused_even_at_full_share() -> None:
    shedder = LoadShedder(POLICY)
    shedder.waited(0.6, 0.0)
    assert not shedder.admits_call(call(1), 0.0)
    assert shedder.refused_stale == 1
    shedder.waited(0.001, 0.01)
    assert shedder.admits_call(call(2), 0.01)


def test_the_invite_a_call_sends_again_with_credentials_is_not_refused() -> None:
    shedder = LoadShedder(POLICY)
    assert shedder.admits_call(call(1), 0.0)  # got its 407
    feed(shedder, 0.3, 0.0, 0.71)
    assert shedder.share < 0.1
    assert shedder.admits_call(call(1), 0.71)  # comes back with credentials
    refused = 100 - admitted_of(shedder, range(2, 102), 0.71)
    assert refused > 90


def test_calls_taken_on_are_remembered_for_32_seconds_and_in_bounded_number() -> None:
    shedder = LoadShedder(POLICY)
    for n in range(REMEMBERED_CALLS + 10):
        assert shedder.admits_call(call(n), 0.0)
    assert len(shedder._admitted) == REMEMBERED_CALLS
    shedder.admits_call(call(-1), 33.0)
    assert len(shedder._admitted) == 1


def test_lag_and_waits_are_judged_apart() -> None:
    # A busy loop fires its timers a little late every time; the datagrams
    # queued behind it wait long. The small lag must not hide the queue.
    shedder = LoadShedder(POLICY)
    t = 0.0
    while t < 0.51:
        shedder.lag(0.004, t)
        shedder.waited(0.2, t + 0.005)
        t = round(t + 0.01, 6)
    assert shedder.share < 0.5


def test_a_message_that_waited_alone_on_a_quiet_server_is_no_queue() -> None:
    shedder = LoadShedder(POLICY)
    for n in range(20):  # one message a window, each through a slow moment
        shedder.waited(0.2, n * 0.1 + 0.05)
        shedder.lag(0.001, n * 0.1 + 0.06)
    assert shedder.share == 1.0
    assert shedder.admits_call(call(1), 2.0)


def test_a_late_timer_alone_shows_overload() -> None:
    # Over TCP no datagram says how long it waited: the loop's lag does.
    shedder = LoadShedder(POLICY)
    t = 0.0
    while t < 0.41:
        shedder.lag(0.08, t)
        t = round(t + 0.02, 6)
    assert shedder.overloaded


def test_a_target_of_zero_turns_shedding_off() -> None:
    shedder = LoadShedder(OverloadPolicy(target_delay=0))
    feed(shedder, 5.0, 0.0, 1.0)
    assert admitted_of(shedder, range(100), 1.0) == 100
    assert not shedder.overloaded


def test_a_queue_that_piled_up_while_the_loop_stood_still_and_drains_cuts_nothing() -> None:
    # A collector pass of 150 ms: the probe fires 150 ms late, the datagrams
    # read after it waited up to as long, then less and less as they drain.
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.002, 0.0, 1.0)
    shedder.lag(0.15, 1.0)
    t, wait = 1.0, 0.15
    while t < 1.6:
        shedder.waited(max(wait, 0.001), t)
        shedder.lag(0.001, t)
        t, wait = round(t + 0.005, 6), wait - 0.0015
    feed(shedder, 0.002, 1.6, 2.0)
    assert shedder.share == 1.0
    assert not shedder.overloaded


def test_a_queue_that_grows_after_a_stall_is_overload_all_the_same() -> None:
    shedder = LoadShedder(POLICY)
    shedder.lag(0.15, 0.0)
    t, wait = 0.0, 0.15
    while t < 0.7:
        shedder.waited(wait, t)
        shedder.lag(0.001, t)
        t, wait = round(t + 0.005, 6), wait + 0.002
    assert shedder.share < 0.5


def test_a_draining_queue_is_not_cut_again() -> None:
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.12, 0.0, 0.11)  # one cut
    share = shedder.share
    feed(shedder, 0.08, 0.11, 0.21)
    feed(shedder, 0.05, 0.21, 0.31)
    assert shedder.share == share


def test_a_stall_explains_the_waits_of_the_half_second_after_it_even_draining_slowly() -> None:
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.002, 0.0, 1.0)
    shedder.lag(0.15, 1.0)
    t, wait = 1.0, 0.15
    while t < 1.5:  # a busy server drains it slowly: 10 ms less per window
        shedder.waited(wait, t)
        shedder.lag(0.001, t)
        t, wait = round(t + 0.005, 6), wait - 0.0005
    assert shedder.share == 1.0


def test_a_dip_shorter_than_three_windows_out_of_an_overload_refuses_nothing() -> None:
    # Another process took the CPU for 200 ms: the queue grew, then drained.
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.002, 0.0, 1.0)
    feed(shedder, 0.05, 1.0, 1.22)
    assert admitted_of(shedder, range(100), 1.22) == 100
    feed(shedder, 0.002, 1.22, 2.0)
    assert shedder.share == 1.0 and not shedder.overloaded


def test_once_shedding_every_window_behind_cuts_at_once() -> None:
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.06, 0.0, 0.32)
    assert shedder.share < 1.0
    feed(shedder, 0.001, 0.32, 0.62)  # given back some
    recovered = shedder.share
    feed(shedder, 0.06, 0.62, 0.82)  # one window behind
    assert shedder.share < recovered


def test_an_overload_found_while_judging_a_call_is_told_by_the_next_sample() -> None:
    # The SIP service judges new calls as they are read (the door), before
    # their wait is sampled: the change a call's judgement finds is not lost.
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.06, 0.0, 0.3)  # three windows behind, the third not yet closed
    assert not shedder.overloaded
    shedder.admits_call(call(1), 0.31)  # closes it: the overload starts here
    assert shedder.overloaded
    change = shedder.waited(0.06, 0.311)
    assert change is not None and change.overloaded
    assert shedder.waited(0.06, 0.312) is None  # told once


def test_a_call_that_would_wait_behind_a_backlog_older_than_half_t1_is_refused() -> None:
    # Judged as it is read: the messages ahead of it have waited 0.3 s, and
    # it would wait as long and more while the backlog grows: its caller
    # would have sent it again before we could answer.
    shedder = LoadShedder(POLICY)
    feed(shedder, 0.002, 0.0, 1.0)
    assert not shedder.admits_call(call(1), 1.0, queued=0.3)
    assert shedder.refused_stale == 1
    assert shedder.admits_call(call(2), 1.0, queued=0.2)
