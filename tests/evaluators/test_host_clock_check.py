"""The parent's host clock exposes a child whose timer runs slow, but not a busy machine."""
from evaluators.judge import TimedRun, host_clock_consistent

PING = 60_000  # ns of messaging per timed call


def test_honest_samples_agree_with_the_host_clock():
    child = [10_000_000 + 1000 * i for i in range(20)]
    host = [c + PING + 20_000 for c in child]
    assert host_clock_consistent(TimedRun(child, host, 0), PING) is None


def test_a_timer_that_reports_half_the_time_is_caught():
    real = [10_000_000 + 1000 * i for i in range(20)]
    assert "not to be trusted" in host_clock_consistent(TimedRun([r // 2 for r in real], [r + PING for r in real], 0),
                                                        PING)


def test_scheduling_delays_on_a_busy_machine_are_not_cheating():
    child = [5_000] * 20                              # microsecond calls
    host = [PING + 5_000 + 400_000 * (i % 3) for i in range(20)]   # the child waited for a core after some calls
    assert host_clock_consistent(TimedRun(child, host, 0), PING) is None


def test_a_few_slow_replies_do_not_outvote_the_quiet_calls():
    child = [10_000_000] * 20
    host = [c + PING + (8_000_000 if i % 5 == 0 else 10_000) for i, c in enumerate(child)]
    assert host_clock_consistent(TimedRun(child, host, 0), PING) is None
