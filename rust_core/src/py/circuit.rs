//! `CircuitPolicy` and `Circuits` for Python: the circuit breakers' table (see [`crate::circuit`]).
//!
//! Every call takes well under a microsecond, less than releasing and re-taking the GIL costs,
//! so none detaches; the table is lock-free (atomics), so both classes are `frozen` and safe to
//! share between threads.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::circuit::{Attempt, Circuits, Policy, PolicySettings};
use crate::ratelimit::now_ns;

/// What [`PyCircuits::view`] returns: (state, error_rate, window_requests, consecutive_failures,
/// open_remaining_s, trips_in_a_row, in_flight, ttft_ewma_s, latency_ewma_s, last_status,
/// last_failure_age_s).
type ViewTuple = (u8, f64, u64, u32, f64, u32, u32, f64, f64, i64, f64);

/// What [`PyCircuits::facts`] returns per slot: (state, in_flight, error_rate, latency_ewma_s,
/// ttft_ewma_s).
type FactsTuple = (u8, u32, f64, f64, f64);

/// A model group's circuit breaker and retry budget settings (Python `CircuitPolicy`), checked
/// once at construction.
#[pyclass(name = "CircuitPolicy", module = "ferrogate._core", frozen)]
pub struct PyCircuitPolicy {
    inner: Policy,
}

#[pymethods]
impl PyCircuitPolicy {
    #[new]
    #[pyo3(signature = (
        *, enabled, window_s, min_requests, error_rate, consecutive, cooldown_s, cooldown_max_s,
        probes, latency_alpha, retry_budget_pct, retry_budget_min, retry_budget_window_s
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        enabled: bool,
        window_s: f64,
        min_requests: u64,
        error_rate: f64,
        consecutive: u32,
        cooldown_s: f64,
        cooldown_max_s: f64,
        probes: u32,
        latency_alpha: f64,
        retry_budget_pct: f64,
        retry_budget_min: u64,
        retry_budget_window_s: f64,
    ) -> PyResult<Self> {
        let inner = Policy::new(PolicySettings {
            enabled,
            window_s,
            min_requests,
            error_rate,
            consecutive,
            cooldown_s,
            cooldown_max_s,
            probes,
            latency_alpha,
            retry_budget_pct,
            retry_budget_min,
            retry_budget_window_s,
        })?;
        Ok(Self { inner })
    }

    /// Whether breakers trip.
    #[getter]
    fn enabled(&self) -> bool {
        self.inner.settings().enabled
    }

    /// The sliding window (seconds).
    #[getter]
    fn window_s(&self) -> f64 {
        self.inner.settings().window_s
    }

    /// Half-open probes at once.
    #[getter]
    fn probes(&self) -> u32 {
        self.inner.settings().probes
    }

    /// The first cool-down (seconds).
    #[getter]
    fn cooldown_s(&self) -> f64 {
        self.inner.settings().cooldown_s
    }

    /// The longest cool-down (seconds).
    #[getter]
    fn cooldown_max_s(&self) -> f64 {
        self.inner.settings().cooldown_max_s
    }

    fn __repr__(&self) -> String {
        let s = self.inner.settings();
        format!(
            "CircuitPolicy(enabled={}, window_s={}, min_requests={}, error_rate={}, consecutive={}, \
             cooldown_s={}, cooldown_max_s={}, probes={}, latency_alpha={}, retry_budget_pct={}, \
             retry_budget_min={}, retry_budget_window_s={})",
            if s.enabled { "True" } else { "False" },
            s.window_s,
            s.min_requests,
            s.error_rate,
            s.consecutive,
            s.cooldown_s,
            s.cooldown_max_s,
            s.probes,
            s.latency_alpha,
            s.retry_budget_pct,
            s.retry_budget_min,
            s.retry_budget_window_s
        )
    }
}

/// The circuit breakers of up to `capacity` deployment keys (Python `Circuits`): process-local
/// memory, or a shared file every worker process of an instance maps.
#[pyclass(name = "Circuits", module = "ferrogate._core", frozen)]
pub struct PyCircuits {
    inner: Circuits,
}

impl PyCircuits {
    /// The table (for the routing rules' one-call order: `py/policy.rs`).
    pub(super) fn table(&self) -> &Circuits {
        &self.inner
    }
}

#[pymethods]
impl PyCircuits {
    #[new]
    #[pyo3(signature = (path = None, capacity = 4096))]
    fn new(path: Option<PathBuf>, capacity: usize) -> PyResult<Self> {
        let inner = match path {
            Some(path) => Circuits::shared(&path, capacity)?,
            None => Circuits::in_memory(capacity)?,
        };
        Ok(Self { inner })
    }

    /// The slot of deployment key `key` (stable across the processes mapping the file).
    fn slot(&self, key: &str) -> PyResult<usize> {
        Ok(self.inner.slot(key)?)
    }

    /// 0 closed (send), 1 probe (send, pass `probe=True` to `done`), -1 skip; an admitted attempt
    /// counts one more in flight.
    fn admit(&self, slot: usize, policy: &Bound<'_, PyCircuitPolicy>) -> PyResult<i32> {
        Ok(self.inner.admit(slot, &policy.get().inner)?.code())
    }

    /// Ends an admitted attempt; `True` when this call tripped the breaker open.
    #[allow(clippy::too_many_arguments)]
    fn done(
        &self,
        slot: usize,
        policy: &Bound<'_, PyCircuitPolicy>,
        ok: bool,
        latency_s: f64,
        ttft_s: f64,
        retry_after_s: f64,
        probe: bool,
        status: u16,
    ) -> PyResult<bool> {
        let attempt = Attempt {
            ok,
            latency_s,
            ttft_s,
            retry_after_s,
            probe,
            status,
        };
        Ok(self.inner.done(slot, &policy.get().inner, &attempt)?)
    }

    /// Whether the retry budget allows one more retry (counted when `True`).
    fn retry_allowed(&self, slot: usize, policy: &Bound<'_, PyCircuitPolicy>) -> PyResult<bool> {
        Ok(self.inner.retry_allowed(slot, &policy.get().inner)?)
    }

    /// Opens the breaker for `open_for_s` seconds (a trip another instance saw).
    fn trip(&self, slot: usize, open_for_s: f64) -> PyResult<()> {
        Ok(self.inner.trip(slot, open_for_s)?)
    }

    /// Just the state now: 0 closed, 1 open, 2 half-open (as in `view`), counting nothing.
    fn state(&self, slot: usize) -> PyResult<u8> {
        Ok(self.inner.state_at(slot, now_ns())? as u8)
    }

    /// The deployment's health now (see the stub for the tuple's fields).
    fn view(&self, slot: usize) -> PyResult<ViewTuple> {
        let v = self.inner.view(slot)?;
        Ok((
            v.state as u8,
            v.error_rate,
            v.requests,
            v.consecutive_failures,
            v.open_remaining_s,
            v.trips_in_a_row,
            v.in_flight,
            v.ttft_ewma_s.unwrap_or(-1.0),
            v.latency_ewma_s.unwrap_or(-1.0),
            v.last_status.map_or(-1, i64::from),
            v.last_failure_age_s.unwrap_or(-1.0),
        ))
    }

    /// For ordering a group's deployments in one call: per slot, `(state, in_flight, error_rate,
    /// latency_ewma_s, ttft_ewma_s)` (EWMAs -1 when unknown; state as in `view`).
    fn facts(&self, slots: Vec<usize>) -> PyResult<Vec<FactsTuple>> {
        let now = now_ns();
        slots
            .into_iter()
            .map(|slot| {
                let v = self.inner.view_at(slot, now)?;
                Ok((
                    v.state as u8,
                    v.in_flight,
                    v.error_rate,
                    v.latency_ewma_s.unwrap_or(-1.0),
                    v.ttft_ewma_s.unwrap_or(-1.0),
                ))
            })
            .collect()
    }

    /// The positions of `slots` in ascending order of `by` (0: in-flight count, 1: latency EWMA,
    /// 2: time-to-first-token EWMA; an EWMA not known yet first, so that deployment gets a
    /// sample), ties in the given order: the `least_in_flight` and `latency` strategies in one
    /// call.
    fn rank(&self, slots: Vec<usize>, by: u8) -> PyResult<Vec<usize>> {
        let now = now_ns();
        let mut keyed = Vec::with_capacity(slots.len());
        for (i, slot) in slots.into_iter().enumerate() {
            let v = self.inner.view_at(slot, now)?;
            let key = match by {
                0 => v.in_flight as f64,
                1 => v.latency_ewma_s.unwrap_or(-1.0),
                _ => v.ttft_ewma_s.unwrap_or(-1.0),
            };
            keyed.push((key, i));
        }
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0)); // stable: ties keep the priority order
        Ok(keyed.into_iter().map(|(_, i)| i).collect())
    }

    /// Sets every in-flight count to 0 (after a worker was killed mid-request; see the Rust docs).
    fn clear_in_flight(&self) {
        self.inner.clear_in_flight();
    }

    /// The number of slots.
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The shared file's path, or `None` for process-local memory.
    #[getter]
    fn path(&self) -> Option<String> {
        self.inner.path().map(|p| p.display().to_string())
    }

    /// Slots holding a deployment key.
    fn occupancy(&self) -> usize {
        self.inner.occupancy()
    }

    fn __repr__(&self) -> String {
        match self.inner.path() {
            Some(path) => format!(
                "Circuits(path={:?}, capacity={})",
                path.display().to_string(),
                self.inner.capacity()
            ),
            None => format!("Circuits(path=None, capacity={})", self.inner.capacity()),
        }
    }
}
