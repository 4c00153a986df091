//! The GCRA arithmetic: one theoretical arrival time (TAT) per key, pure functions of
//! `(tat, now, cost)`.
//!
//! A [`Rate`] of `limit` units per `period` has an emission interval `T = period / limit` per
//! unit and a burst of `limit` units. A key's bucket is described by its TAT alone: it holds
//! `used = max(tat - now, 0)` nanoseconds of work, i.e. `used / T` units; it is full (all
//! `limit` units available) when `tat <= now`. A request of `cost` units is admitted when
//! `used + cost * T <= period`, and then moves the TAT to `max(tat, now) + cost * T`.
//!
//! Times are whole nanoseconds in a `u64` (wall clock since the Unix epoch). Each increment
//! `cost * T` is rounded **up** to a whole nanosecond, and the fit test allows a slack of
//! `min(ceil(limit), T / 2)` nanoseconds for that rounding, so a sequence of cost-1 requests
//! admits exactly `limit` from a full bucket whenever `T > limit` ns (up to ~244,000 per
//! minute); above that the rounding may cost a unit here and there, never add a whole one
//! early by more than the slack. The same formulas (in microseconds) run in Redis, see
//! `python/ferrogate/limits/redis.py`.
//!
//! The guarantee this gives: in any window of length `w`, the admitted cost is at most
//! `limit + w * limit / period` (the burst plus what refilled), which is the token-bucket
//! bound; from a full bucket, at most `limit` units within the first emission interval.
//!
//! A [`Rate::charge`] (settling a stream that used more than it reserved) consumes whatever
//! the bucket holds: the TAT may run ahead of `now + period`, a debt later requests wait out.
//! The debt is bounded: a charge never moves the TAT more than [`MAX_DEBT_PERIODS`] periods
//! ahead of `now`, so one runaway request costs its key at most that long a pause.

use crate::error::LimitError;

/// Longest period accepted: about 31 years, so TAT arithmetic never nears `u64::MAX`.
const MAX_PERIOD_NS: f64 = 1e18;

/// A [`Rate::charge`] never puts the TAT more than this many periods ahead of `now`: a bucket
/// holds at most one period of debt beyond being empty, so the next request of cost `c` waits
/// at most one period plus `c` intervals.
pub const MAX_DEBT_PERIODS: u64 = 2;

/// One limit: `limit` units per `period`, burst `limit`. Built once per decision from the
/// caller's plain values (cheap: a few float operations).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    limit: f64,
    period_ns: u64,
    interval_ns: f64,
    slack_ns: u64,
}

/// The outcome of one [`Rate::check`] (or a [`Rate::peek`], with `allowed = true`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Whether the request's cost was admitted (and consumed).
    pub allowed: bool,
    /// Units left in the bucket now, after this decision (`0.0..=limit`).
    pub remaining: f64,
    /// 0 when allowed; else seconds until `cost` would fit; `f64::INFINITY` when `cost` is
    /// larger than the whole bucket and never fits.
    pub retry_after_s: f64,
    /// Seconds until the bucket is full again (0 when it is full).
    pub reset_s: f64,
}

impl Rate {
    /// `limit` units per `period_s` seconds. Errors unless `limit > 0`, `0 < period_s` (at most
    /// ~31 years) and both are finite.
    pub fn new(limit: f64, period_s: f64) -> Result<Self, LimitError> {
        if !(limit.is_finite() && limit > 0.0) {
            return Err(LimitError::InvalidRate(format!(
                "limit must be a positive finite number, got {limit}"
            )));
        }
        let period = period_s * 1e9;
        if !(1.0..=MAX_PERIOD_NS).contains(&period) {
            return Err(LimitError::InvalidRate(format!(
                "period_s must be between 1e-9 and 1e9 seconds, got {period_s}"
            )));
        }
        let period_ns = period.round() as u64;
        let interval_ns = period_ns as f64 / limit;
        let slack_ns = limit.ceil().min((interval_ns / 2.0).floor()).max(0.0) as u64;
        Ok(Self {
            limit,
            period_ns,
            interval_ns,
            slack_ns,
        })
    }

    /// The configured limit (units per period).
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// The period in nanoseconds.
    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }

    /// `cost` units in nanoseconds of bucket, rounded up; saturates for costs that never fit.
    /// Errors unless `cost` is finite and `>= 0`.
    pub fn cost_ns(&self, cost: f64) -> Result<u64, LimitError> {
        if !(cost.is_finite() && cost >= 0.0) {
            return Err(LimitError::InvalidRate(format!(
                "cost must be a finite number >= 0, got {cost}"
            )));
        }
        let ns = (cost * self.interval_ns).ceil();
        // Anything beyond twice the period never fits; clamp far below u64::MAX.
        Ok(if ns > 2.0 * MAX_PERIOD_NS {
            (2.0 * MAX_PERIOD_NS) as u64
        } else {
            ns as u64
        })
    }

    /// How much bucket (ns) may be in use at most: the period plus the rounding slack.
    fn budget_ns(&self) -> u64 {
        self.period_ns + self.slack_ns
    }

    fn remaining(&self, used_ns: u64) -> f64 {
        let free = self.budget_ns().saturating_sub(used_ns) as f64;
        (free / self.interval_ns).clamp(0.0, self.limit)
    }

    /// Decides a request of `cost_ns` (from [`Rate::cost_ns`]) against a bucket with TAT `tat`
    /// at time `now`. Returns the new TAT to store (`None`: leave the slot as it is) and the
    /// decision.
    pub fn check(&self, tat: u64, now: u64, cost_ns: u64) -> (Option<u64>, Decision) {
        let base = tat.max(now);
        let used = base - now;
        let budget = self.budget_ns();
        if cost_ns <= budget.saturating_sub(used) {
            let after = used + cost_ns;
            let decision = Decision {
                allowed: true,
                remaining: self.remaining(after),
                retry_after_s: 0.0,
                reset_s: after as f64 / 1e9,
            };
            let new_tat = (cost_ns > 0).then_some(base + cost_ns);
            (new_tat, decision)
        } else {
            let retry_after_s = if cost_ns > budget {
                f64::INFINITY
            } else {
                (used + cost_ns - budget) as f64 / 1e9
            };
            let decision = Decision {
                allowed: false,
                remaining: self.remaining(used),
                retry_after_s,
                reset_s: used as f64 / 1e9,
            };
            (None, decision)
        }
    }

    /// Gives `cost_ns` back to a bucket with TAT `tat`: the new TAT, never below `now` (a
    /// refund cannot make a bucket more than full). `None` when there is nothing to change.
    pub fn refund(&self, tat: u64, now: u64, cost_ns: u64) -> Option<u64> {
        (tat > now && cost_ns > 0).then(|| tat.saturating_sub(cost_ns).max(now))
    }

    /// Consumes `cost_ns` from a bucket with TAT `tat` whether or not it fits (the account
    /// phase charging tokens a request used beyond its reservation): the new TAT is
    /// `max(tat, now) + cost_ns`, capped at `now + MAX_DEBT_PERIODS * period` (a TAT already
    /// beyond the cap is left as it is). `None` when there is nothing to change.
    pub fn charge(&self, tat: u64, now: u64, cost_ns: u64) -> Option<u64> {
        if cost_ns == 0 {
            return None;
        }
        let cap = now.saturating_add(MAX_DEBT_PERIODS.saturating_mul(self.period_ns));
        let new = tat.max(now).saturating_add(cost_ns).min(cap).max(tat);
        (new != tat).then_some(new)
    }

    /// The state of a bucket with TAT `tat` at `now` without consuming: `(remaining, reset_s)`.
    pub fn peek(&self, tat: u64, now: u64) -> (f64, f64) {
        let used = tat.saturating_sub(now);
        (self.remaining(used), used as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn admitted(rate: &Rate, now: u64, n: usize) -> (usize, u64) {
        let mut tat = 0;
        let mut count = 0;
        for _ in 0..n {
            let (new, d) = rate.check(tat, now, rate.cost_ns(1.0).unwrap());
            if let Some(t) = new {
                tat = t;
            }
            count += usize::from(d.allowed);
        }
        (count, tat)
    }

    #[test]
    fn full_bucket_admits_exactly_limit() {
        for (limit, period) in [
            (1.0, 1.0),
            (3.0, 1.0),
            (3.0, 2.0),
            (7.0, 60.0),
            (100.0, 60.0),
        ] {
            let rate = Rate::new(limit, period).unwrap();
            let (count, _) = admitted(&rate, 10 * S, 1000);
            assert_eq!(count, limit as usize, "{limit}/{period}s");
        }
        let rate = Rate::new(100_000.0, 60.0).unwrap();
        assert_eq!(admitted(&rate, 10 * S, 100_010).0, 100_000);
    }

    #[test]
    fn decision_values() {
        let rate = Rate::new(100.0, 60.0).unwrap();
        let now = 100 * S;
        let (_, d) = rate.check(0, now, rate.cost_ns(1.0).unwrap());
        assert!(d.allowed);
        assert_eq!(d.remaining.floor(), 99.0);
        assert!((d.reset_s - 0.6).abs() < 1e-6);
        assert_eq!(d.retry_after_s, 0.0);
        // Empty the bucket, then one more is refused for one interval.
        let (_, tat) = admitted(&rate, now, 100);
        let (new, d) = rate.check(tat, now, rate.cost_ns(1.0).unwrap());
        assert!(!d.allowed && new.is_none());
        assert!(d.remaining < 1.0);
        assert!((d.retry_after_s - 0.6).abs() < 1e-6, "{}", d.retry_after_s);
        assert!((d.reset_s - 60.0).abs() < 1e-6);
        // After the retry-after, it fits.
        let later = now + (d.retry_after_s * 1e9).ceil() as u64;
        assert!(rate.check(tat, later, rate.cost_ns(1.0).unwrap()).1.allowed);
    }

    #[test]
    fn oversize_cost_never_fits() {
        let rate = Rate::new(10.0, 1.0).unwrap();
        let (new, d) = rate.check(0, S, rate.cost_ns(11.0).unwrap());
        assert!(new.is_none() && !d.allowed && d.retry_after_s.is_infinite());
        assert_eq!(d.remaining, 10.0);
    }

    #[test]
    fn refund_floors_at_now() {
        let rate = Rate::new(10.0, 1.0).unwrap();
        let now = 5 * S;
        let (tat, _) = rate.check(0, now, rate.cost_ns(4.0).unwrap());
        let tat = tat.unwrap();
        let back = rate.refund(tat, now, rate.cost_ns(1.0).unwrap()).unwrap();
        assert!((rate.peek(back, now).0 - 7.0).abs() < 1e-6);
        assert_eq!(
            rate.refund(tat, now, rate.cost_ns(100.0).unwrap()),
            Some(now)
        );
        assert_eq!(rate.refund(now, now, 5), None);
        assert_eq!(rate.peek(now, now), (10.0, 0.0));
    }

    #[test]
    fn charge_goes_into_debt_up_to_the_cap() {
        let rate = Rate::new(10.0, 1.0).unwrap();
        let now = 5 * S;
        // Nine of ten used, then a charge of five: four units of debt.
        let (tat, _) = rate.check(0, now, rate.cost_ns(9.0).unwrap());
        let tat = rate
            .charge(tat.unwrap(), now, rate.cost_ns(5.0).unwrap())
            .unwrap();
        assert_eq!(tat, now + 14 * S / 10);
        let (new, d) = rate.check(tat, now, rate.cost_ns(1.0).unwrap());
        assert!(new.is_none() && !d.allowed && d.remaining == 0.0);
        assert!((d.retry_after_s - 0.5).abs() < 1e-6, "{}", d.retry_after_s);
        assert!((d.reset_s - 1.4).abs() < 1e-6);
        // Once the debt and one interval have refilled, one unit fits again.
        let later = now + 5 * S / 10;
        assert!(
            !rate
                .check(tat, later - 1000, rate.cost_ns(1.0).unwrap())
                .1
                .allowed
        );
        assert!(rate.check(tat, later, rate.cost_ns(1.0).unwrap()).1.allowed);
        // A huge charge stops at MAX_DEBT_PERIODS periods ahead; an empty bucket charges from now.
        let capped = rate.charge(tat, now, rate.cost_ns(1e6).unwrap()).unwrap();
        assert_eq!(capped, now + MAX_DEBT_PERIODS * S);
        assert_eq!(rate.charge(capped, now, 1), None);
        assert_eq!(rate.charge(capped + S, now, 1), None); // beyond the cap: left as it is
        assert_eq!(
            rate.charge(0, now, rate.cost_ns(3.0).unwrap()),
            Some(now + 3 * S / 10)
        );
        assert_eq!(rate.charge(tat, now, 0), None);
    }

    #[test]
    fn invalid_rates() {
        assert!(Rate::new(0.0, 1.0).is_err());
        assert!(Rate::new(f64::NAN, 1.0).is_err());
        assert!(Rate::new(1.0, 0.0).is_err());
        assert!(Rate::new(1.0, f64::INFINITY).is_err());
        let rate = Rate::new(1.0, 1.0).unwrap();
        assert!(rate.cost_ns(-1.0).is_err());
        assert!(rate.cost_ns(f64::NAN).is_err());
    }
}
