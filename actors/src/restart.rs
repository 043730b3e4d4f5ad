//! The supervisor's restart arithmetic, as a pure type: a child's failure history, the backoff
//! before its next restart, and the restart-intensity limit beyond which the tree escalates.
//! Time is passed in, so every edge is a unit test; the supervisor only records the failure
//! and acts on the verdict.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// OTP-style restart policy.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// Backoff before the first restart; doubles with each further failure in the window.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// More failures than this within `window` escalate.
    pub max_restarts: usize,
    pub window: Duration,
}

/// Backoffs stop doubling after this many doublings (the cap usually bites long before).
const MAX_DOUBLINGS: u32 = 16;

impl RestartPolicy {
    /// The wait before restarting after the `attempt`-th failure in the window (1-based):
    /// `backoff_initial * 2^(attempt-1)`, at most `backoff_max`.
    pub fn backoff(&self, attempt: usize) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX).min(MAX_DOUBLINGS);
        self.backoff_initial.saturating_mul(1 << doublings).min(self.backoff_max)
    }
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Restart after `backoff`; this is failure number `attempt` within the window.
    Restart { attempt: usize, backoff: Duration },
    /// Failure number `attempt` within the window is more than the policy allows.
    Escalate { attempt: usize },
}

/// One child's failures within the policy's window.
#[derive(Debug, Default, Clone)]
pub struct FailureHistory {
    at: VecDeque<Instant>,
}

impl FailureHistory {
    /// Records a failure at `now`, forgets those older than the window, and decides.
    pub fn record(&mut self, now: Instant, policy: &RestartPolicy) -> Verdict {
        self.at.push_back(now);
        while self.at.front().is_some_and(|t| now.saturating_duration_since(*t) > policy.window) {
            self.at.pop_front();
        }
        let attempt = self.at.len();
        if attempt > policy.max_restarts {
            Verdict::Escalate { attempt }
        } else {
            Verdict::Restart { attempt, backoff: policy.backoff(attempt) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_restarts: 3,
            window: Duration::from_secs(10),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_backoff_doubles_from_the_first_restart_and_stops_at_the_cap() {
        let p = policy();
        let waits: Vec<Duration> = (1..=8).map(|a| p.backoff(a)).collect();
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(800), ms(1600), ms(3200), ms(5000), ms(5000)]);
        assert_eq!(p.backoff(0), ms(100), "attempt 0 is treated as the first");
    }

    #[test]
    fn the_doubling_is_clamped_so_a_huge_attempt_or_cap_cannot_overflow() {
        let p = RestartPolicy { backoff_max: Duration::MAX, ..policy() };
        assert_eq!(p.backoff(17), ms(100) * (1 << 16));
        assert_eq!(p.backoff(usize::MAX), ms(100) * (1 << 16), "clamped at 16 doublings");
        let huge = RestartPolicy { backoff_initial: Duration::MAX, backoff_max: Duration::MAX, ..policy() };
        assert_eq!(huge.backoff(5), Duration::MAX, "saturates instead of overflowing");
    }

    #[test]
    fn max_restarts_failures_restart_and_the_next_one_escalates() {
        let (p, t0) = (policy(), Instant::now());
        let mut h = FailureHistory::default();
        for attempt in 1..=3 {
            let verdict = h.record(t0 + ms(attempt as u64), &p);
            assert_eq!(verdict, Verdict::Restart { attempt, backoff: p.backoff(attempt) });
        }
        assert_eq!(h.record(t0 + ms(4), &p), Verdict::Escalate { attempt: 4 });
    }

    #[test]
    fn a_failure_exactly_one_window_old_still_counts_and_one_older_is_forgotten() {
        let (p, t0) = (policy(), Instant::now());
        let mut h = FailureHistory::default();
        for i in 0..3 {
            h.record(t0 + ms(i), &p);
        }
        // The first failure is exactly `window` old: still within it.
        assert_eq!(h.record(t0 + p.window, &p), Verdict::Escalate { attempt: 4 });

        let mut h = FailureHistory::default();
        for i in 0..3 {
            h.record(t0 + ms(i), &p);
        }
        // One millisecond later the first has aged out: three in the window, a restart.
        let verdict = h.record(t0 + p.window + ms(1), &p);
        assert_eq!(verdict, Verdict::Restart { attempt: 3, backoff: p.backoff(3) });
    }

    #[test]
    fn after_a_quiet_window_the_backoff_starts_again_from_the_initial() {
        let (p, t0) = (policy(), Instant::now());
        let mut h = FailureHistory::default();
        h.record(t0, &p);
        h.record(t0 + ms(1), &p);
        let later = t0 + p.window + ms(2);
        assert_eq!(h.record(later, &p), Verdict::Restart { attempt: 1, backoff: ms(100) });
    }

    #[test]
    fn zero_max_restarts_escalates_on_the_first_failure() {
        let p = RestartPolicy { max_restarts: 0, ..policy() };
        assert_eq!(FailureHistory::default().record(Instant::now(), &p), Verdict::Escalate { attempt: 1 });
    }

    #[test]
    fn a_zero_window_counts_only_failures_at_the_same_instant() {
        let (p, t0) = (RestartPolicy { window: Duration::ZERO, ..policy() }, Instant::now());
        let mut h = FailureHistory::default();
        for i in 0..10 {
            assert!(matches!(h.record(t0 + ms(i), &p), Verdict::Restart { attempt: 1, .. }));
        }
    }
}
