//! Reading a deployment's health: [`Circuits::view_at`] (the admin API, metrics, the strategies),
//! and [`Circuits::clear_in_flight`] after a worker died mid-request.

use std::sync::atomic::Ordering::SeqCst;

use super::cells::{
    update, Bucket, Control, Flight, State, BUCKETS, CONFIG, CONTROL, EWMA, FAILURE, FLIGHT, WINDOW,
};
use super::table::Circuits;
use super::window;
use crate::error::CircuitError;
use crate::ratelimit::now_ns;

/// A deployment's health at one instant (see [`Circuits::view_at`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// The state; an open breaker whose cool-down is over reads as half-open.
    pub state: State,
    /// Failed attempts / attempts in the window (0 without attempts).
    pub error_rate: f64,
    /// Attempts in the window.
    pub requests: u64,
    /// Attempts that failed in a row.
    pub consecutive_failures: u32,
    /// Seconds left of the cool-down (0 unless open).
    pub open_remaining_s: f64,
    /// Trips since the breaker last closed.
    pub trips_in_a_row: u32,
    /// Half-open probes in flight.
    pub probes: u32,
    /// Attempts in flight (every worker's).
    pub in_flight: u32,
    /// EWMA of streams' time to first content (`None`: no sample yet).
    pub ttft_ewma_s: Option<f64>,
    /// EWMA of attempts' duration (`None`: no sample yet).
    pub latency_ewma_s: Option<f64>,
    /// The last attempt's status (`None`: none done yet).
    pub last_status: Option<u32>,
    /// Seconds since the last failure (`None`: none).
    pub last_failure_age_s: Option<f64>,
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl Circuits {
    /// Sets every slot's in-flight count to 0: after a worker was killed mid-request (its attempts
    /// would otherwise stay counted). The live workers' attempts then end on a count that stays at
    /// 0, so the counts are right again once those end.
    pub fn clear_in_flight(&self) {
        for slot in 0..self.capacity() {
            if let Ok(cells) = self.cells(slot) {
                update(&cells[FLIGHT], |v| {
                    let f = Flight::unpack(v);
                    (f.in_flight != 0).then(|| Flight { in_flight: 0, ..f }.pack())
                });
            }
        }
    }

    /// The deployment's health at `now` (reads only).
    pub fn view_at(&self, slot: usize, now: u64) -> Result<View, CircuitError> {
        let cells = self.cells(slot)?;
        let c = Control::unpack(cells[CONTROL].load(SeqCst));
        let f = Flight::unpack(cells[FLIGHT].load(SeqCst));
        let ewma = cells[EWMA].load(SeqCst);
        let failure = cells[FAILURE].load(SeqCst) as u64;
        let width = cells[CONFIG].load(SeqCst) as u64;
        let (requests, failures) = if width == 0 {
            (0, 0)
        } else {
            window::total(
                &cells[WINDOW..WINDOW + BUCKETS],
                Bucket::epoch_of(now, width),
            )
        };
        let (state, remaining) = match c.state {
            State::Open if now < c.open_until => (State::Open, c.open_until - now),
            State::Open => (State::HalfOpen, 0),
            other => (other, 0),
        };
        let average = |bits: u64| (bits != 0).then(|| f64::from_bits(bits));
        Ok(View {
            state,
            error_rate: if requests == 0 {
                0.0
            } else {
                failures as f64 / requests as f64
            },
            requests,
            consecutive_failures: f.consecutive,
            open_remaining_s: seconds(remaining),
            trips_in_a_row: u32::from(c.trips),
            probes: if c.state == State::HalfOpen {
                u32::from(c.probes)
            } else {
                0
            },
            in_flight: f.in_flight,
            ttft_ewma_s: average((ewma >> 64) as u64),
            latency_ewma_s: average(ewma as u64),
            last_status: f.last_status.checked_sub(1),
            last_failure_age_s: (failure != 0).then(|| seconds(now.saturating_sub(failure))),
        })
    }

    /// Just the state at `now` (one read; an open breaker whose cool-down is over reads as
    /// half-open), for a check before [`Circuits::admit`] that must not count anything.
    pub fn state_at(&self, slot: usize, now: u64) -> Result<State, CircuitError> {
        let c = Control::unpack(self.cells(slot)?[CONTROL].load(SeqCst));
        Ok(match c.state {
            State::Open if now >= c.open_until => State::HalfOpen,
            other => other,
        })
    }

    /// [`Circuits::view_at`] now.
    pub fn view(&self, slot: usize) -> Result<View, CircuitError> {
        self.view_at(slot, now_ns())
    }
}
