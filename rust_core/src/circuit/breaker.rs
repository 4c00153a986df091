//! The breaker's transitions and the per-attempt bookkeeping: [`Circuits::admit_at`] before an
//! attempt, [`Circuits::done_at`] after it, [`Circuits::retry_allowed_at`] before a retry,
//! [`Circuits::trip_at`] for a trip another instance saw (reading: [`super::view`]). Each method
//! without `_at` is the same at the wall clock.
//!
//! Every transition is one compare-and-swap of the slot's [`Control`] word, so of two processes
//! deciding at once exactly one trips the breaker (and its `done` returns `true`), and probes
//! granted never exceed the policy's bound.

use std::sync::atomic::Ordering::SeqCst;

use super::cells::{
    update, Bucket, Control, Flight, State, BUCKETS, BUDGET, CONFIG, CONTROL, EWMA, FAILURE,
    FLIGHT, WINDOW,
};
use super::policy::Policy;
use super::table::Circuits;
use super::window::{self, Budget};
use crate::error::CircuitError;
use crate::ratelimit::now_ns;

/// What [`Circuits::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: send the attempt.
    Closed,
    /// Half-open: send it as a probe (pass `probe = true` to `done`).
    Probe,
    /// Open, or every probe place taken: do not send it (try another deployment).
    Skip,
}

impl Admit {
    /// The Python code: 0 closed, 1 probe, -1 skip.
    pub fn code(self) -> i32 {
        match self {
            Self::Closed => 0,
            Self::Probe => 1,
            Self::Skip => -1,
        }
    }
}

/// How an attempt ended (what [`Circuits::done`] is told).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    /// It succeeded (an answer the client gets; a 4xx of the client's making counts as ok).
    pub ok: bool,
    /// Its duration in seconds (negative: not measured).
    pub latency_s: f64,
    /// A stream's time to its first content in seconds (negative: none).
    pub ttft_s: f64,
    /// The upstream's `Retry-After` in seconds (0 or negative: none).
    pub retry_after_s: f64,
    /// It was admitted as a probe ([`Admit::Probe`]).
    pub probe: bool,
    /// The HTTP status, 0 for a connection fault, 1 for a timeout.
    pub status: u16,
}

/// `x` folded into the EWMA `old` (f64 bits; 0: no sample). A failure's duration only ever
/// raises the average (a refused connection answers fast: it must not make a broken deployment
/// look quick), and never starts it. Returns the new bits, or `None` when unchanged.
fn blend(old: u64, x: f64, alpha: f64, ok: bool) -> Option<u64> {
    if !(x.is_finite() && x >= 0.0) {
        return None;
    }
    let new = if old == 0 {
        if !ok {
            return None;
        }
        x
    } else {
        let avg = f64::from_bits(old);
        if !ok && x <= avg {
            return None;
        }
        avg + alpha * (x - avg)
    };
    Some(new.to_bits().max(1)) // 0.0 is stored as the smallest subnormal: 0 means no sample
}

impl Circuits {
    /// Before an attempt: whether to send it (see [`Admit`]). An admitted attempt counts one
    /// more in flight and one request of the retry budget; the first admit after a cool-down
    /// turns the breaker half-open. With the policy disabled every attempt is admitted but during an
    /// open period set by [`Circuits::trip`] (a provider's Retry-After).
    pub fn admit_at(&self, slot: usize, policy: &Policy, now: u64) -> Result<Admit, CircuitError> {
        let cells = self.cells(slot)?;
        let mut admit = Admit::Closed;
        if !policy.enabled {
            // No breaker, but a provider's Retry-After ([`Circuits::trip`]) still holds the deployment
            // back until it ends.
            let c = Control::unpack(cells[CONTROL].load(SeqCst));
            if c.state == State::Open && now < c.open_until {
                return Ok(Admit::Skip);
            }
        }
        if policy.enabled {
            let (old, new) = update(&cells[CONTROL], |v| {
                let c = Control::unpack(v);
                let next = match c.state {
                    State::Closed => return None,
                    State::Open if now < c.open_until => return None,
                    // A probe that never reported (its worker died) frees its place after
                    // `cooldown_max_s`: a new half-open period starts.
                    State::Open | State::HalfOpen if now >= c.open_until => Control {
                        probes: 1,
                        ..c.to(State::HalfOpen, now.saturating_add(policy.cooldown_max_ns))
                    },
                    State::HalfOpen if c.probes < policy.probes => Control {
                        probes: c.probes + 1,
                        ..c
                    },
                    State::Open | State::HalfOpen => return None,
                };
                Some(next.pack())
            });
            admit = match (Control::unpack(old).state, new) {
                (_, Some(_)) => Admit::Probe,
                (State::Closed, None) => Admit::Closed,
                (_, None) => return Ok(Admit::Skip),
            };
        }
        update(&cells[FLIGHT], |v| {
            let f = Flight::unpack(v);
            Some(
                Flight {
                    in_flight: f.in_flight.saturating_add(1),
                    ..f
                }
                .pack(),
            )
        });
        self.budget(cells, policy).request(now);
        Ok(admit)
    }

    /// [`Circuits::admit_at`] now.
    pub fn admit(&self, slot: usize, policy: &Policy) -> Result<Admit, CircuitError> {
        self.admit_at(slot, policy, now_ns())
    }

    fn budget<'a>(&self, cells: &'a [portable_atomic::AtomicU128], policy: &Policy) -> Budget<'a> {
        Budget {
            ring: &cells[BUDGET..BUDGET + 2],
            width: policy.budget_window_ns,
        }
    }

    /// After an admitted attempt: one less in flight; the attempt counted in the window, the
    /// failures in a row and the EWMAs; then the transitions. A probe's success closes the
    /// breaker (and empties its window), a probe's failure opens it again; a failure while
    /// closed opens it when `consecutive` attempts in a row failed or, with at least
    /// `min_requests` in the window, `error_rate` of them did. The cool-down is the policy's
    /// ([`Policy::cooldown_ns`]). Returns `true` when this call opened the breaker.
    pub fn done_at(
        &self,
        slot: usize,
        policy: &Policy,
        attempt: &Attempt,
        now: u64,
    ) -> Result<bool, CircuitError> {
        let cells = self.cells(slot)?;
        let ok = attempt.ok;
        let (_, flight) = update(&cells[FLIGHT], |v| {
            let f = Flight::unpack(v);
            Some(
                Flight {
                    in_flight: f.in_flight.saturating_sub(1),
                    consecutive: if ok {
                        0
                    } else {
                        f.consecutive.saturating_add(1)
                    },
                    last_status: u32::from(attempt.status) + 1,
                }
                .pack(),
            )
        });
        let consecutive = flight.map_or(0, |f| Flight::unpack(f).consecutive);
        if cells[CONFIG].load(SeqCst) != u128::from(policy.bucket_ns) {
            cells[CONFIG].store(u128::from(policy.bucket_ns), SeqCst);
        }
        let ring = &cells[WINDOW..WINDOW + BUCKETS];
        let epoch = Bucket::epoch_of(now, policy.bucket_ns);
        window::record(ring, epoch, 1, u64::from(!ok));
        self.fold_ewmas(&cells[EWMA], policy.alpha, attempt);
        if !ok {
            cells[FAILURE].store(u128::from(now), SeqCst);
        }
        if !policy.enabled {
            return Ok(false);
        }
        let control = &cells[CONTROL];
        if attempt.probe {
            let (old, new) = update(control, |v| {
                let c = Control::unpack(v);
                if c.state != State::HalfOpen {
                    return None;
                }
                let next = if ok {
                    Control {
                        trips: 0,
                        ..c.to(State::Closed, 0)
                    }
                } else {
                    let trips = c.trips.saturating_add(1);
                    let until =
                        now.saturating_add(policy.cooldown_ns(trips, attempt.retry_after_s));
                    Control {
                        trips,
                        ..c.to(State::Open, until)
                    }
                };
                Some(next.pack())
            });
            if new.is_some() {
                if ok {
                    window::clear(ring);
                    update(&cells[FLIGHT], |v| {
                        Some(
                            Flight {
                                consecutive: 0,
                                ..Flight::unpack(v)
                            }
                            .pack(),
                        )
                    });
                }
                return Ok(!ok);
            }
            // The half-open period ended meanwhile (another probe decided): an ordinary attempt.
            if Control::unpack(old).state != State::Closed {
                return Ok(false);
            }
        }
        if ok {
            return Ok(false);
        }
        let trip = consecutive >= policy.consecutive || {
            let (attempts, failures) = window::total(ring, epoch);
            attempts >= policy.min_requests
                && failures as f64 >= policy.error_rate * attempts as f64
        };
        if !trip {
            return Ok(false);
        }
        let (_, new) = update(control, |v| {
            let c = Control::unpack(v);
            if c.state != State::Closed {
                return None;
            }
            let trips = c.trips.saturating_add(1);
            let until = now.saturating_add(policy.cooldown_ns(trips, attempt.retry_after_s));
            Some(
                Control {
                    trips,
                    ..c.to(State::Open, until)
                }
                .pack(),
            )
        });
        Ok(new.is_some())
    }

    /// [`Circuits::done_at`] now.
    pub fn done(
        &self,
        slot: usize,
        policy: &Policy,
        attempt: &Attempt,
    ) -> Result<bool, CircuitError> {
        self.done_at(slot, policy, attempt, now_ns())
    }

    fn fold_ewmas(&self, cell: &portable_atomic::AtomicU128, alpha: f64, attempt: &Attempt) {
        update(cell, |v| {
            let (latency, ttft) = (v as u64, (v >> 64) as u64);
            let new_latency = blend(latency, attempt.latency_s, alpha, attempt.ok);
            let new_ttft = blend(ttft, attempt.ttft_s, alpha, attempt.ok);
            if new_latency.is_none() && new_ttft.is_none() {
                return None;
            }
            let (l, t) = (new_latency.unwrap_or(latency), new_ttft.unwrap_or(ttft));
            Some(u128::from(l) | (u128::from(t) << 64))
        });
    }

    /// Before a retry on this deployment: whether the retry budget allows it (retries stay under
    /// `retry_budget_min` or `retry_budget_pct` of the requests admitted in the sliding
    /// `retry_budget_window_s`); counts it when `true`.
    pub fn retry_allowed_at(
        &self,
        slot: usize,
        policy: &Policy,
        now: u64,
    ) -> Result<bool, CircuitError> {
        let cells = self.cells(slot)?;
        Ok(self
            .budget(cells, policy)
            .retry(now, policy.budget_share, policy.budget_min))
    }

    /// [`Circuits::retry_allowed_at`] now.
    pub fn retry_allowed(&self, slot: usize, policy: &Policy) -> Result<bool, CircuitError> {
        self.retry_allowed_at(slot, policy, now_ns())
    }

    /// Opens the breaker for `open_for_s` from `now` (a trip another instance saw). An open
    /// breaker only ever gets longer; a closed or half-open one opens (one more trip in a row).
    /// A non-positive or non-finite duration changes nothing.
    pub fn trip_at(&self, slot: usize, open_for_s: f64, now: u64) -> Result<(), CircuitError> {
        let cells = self.cells(slot)?;
        if !(open_for_s.is_finite() && open_for_s > 0.0) {
            return Ok(());
        }
        let until = now.saturating_add((open_for_s.min(1e9) * 1e9) as u64);
        update(&cells[CONTROL], |v| {
            let c = Control::unpack(v);
            let next = match c.state {
                State::Open if c.open_until >= until => return None,
                State::Open => Control {
                    open_until: until,
                    ..c
                },
                State::Closed | State::HalfOpen => Control {
                    trips: c.trips.saturating_add(1),
                    ..c.to(State::Open, until)
                },
            };
            Some(next.pack())
        });
        Ok(())
    }

    /// [`Circuits::trip_at`] now.
    pub fn trip(&self, slot: usize, open_for_s: f64) -> Result<(), CircuitError> {
        self.trip_at(slot, open_for_s, now_ns())
    }
}
