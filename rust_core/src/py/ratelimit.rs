//! `RateLimiter` for Python: the limit phase's GCRA table (see [`crate::ratelimit`]).
//!
//! Decisions take well under a microsecond, less than releasing and re-taking the GIL costs,
//! so no method detaches; the table is lock-free (atomics), so the class is `frozen` and safe
//! to share between threads.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::ratelimit::Limiter;

/// A GCRA rate limiter over a bounded table (Python `RateLimiter`): process-local memory, or a
/// shared file that makes every worker process of an instance share the buckets exactly.
#[pyclass(name = "RateLimiter", module = "ferrogate._core", frozen)]
pub struct PyRateLimiter {
    inner: Limiter,
}

#[pymethods]
impl PyRateLimiter {
    #[new]
    #[pyo3(signature = (path = None, capacity = 65536))]
    fn new(path: Option<PathBuf>, capacity: usize) -> PyResult<Self> {
        let inner = match path {
            Some(path) => Limiter::shared(&path, capacity)?,
            None => Limiter::in_memory(capacity)?,
        };
        Ok(Self { inner })
    }

    /// `(allowed, remaining, retry_after_s, reset_s)` for `cost` units of `key` against `limit`
    /// per `period_s`; the cost is consumed when allowed.
    #[pyo3(signature = (key, limit, period_s, cost = 1.0))]
    fn check(
        &self,
        key: &str,
        limit: f64,
        period_s: f64,
        cost: f64,
    ) -> PyResult<(bool, f64, f64, f64)> {
        let d = self.inner.check(key, limit, period_s, cost)?;
        Ok((d.allowed, d.remaining, d.retry_after_s, d.reset_s))
    }

    /// Gives `cost` units back to `key` (never more than a full bucket).
    fn refund(&self, key: &str, limit: f64, period_s: f64, cost: f64) -> PyResult<()> {
        Ok(self.inner.refund(key, limit, period_s, cost)?)
    }

    /// Consumes `cost` units of `key` even when they do not fit: the bucket may go into debt
    /// (at most `MAX_DEBT_PERIODS` periods ahead), which later requests wait out.
    fn charge(&self, key: &str, limit: f64, period_s: f64, cost: f64) -> PyResult<()> {
        Ok(self.inner.charge(key, limit, period_s, cost)?)
    }

    /// `(remaining, reset_s)` of `key` without consuming.
    fn peek(&self, key: &str, limit: f64, period_s: f64) -> PyResult<(f64, f64)> {
        Ok(self.inner.peek(key, limit, period_s)?)
    }

    /// The number of slots (keys held at once).
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The shared file's path, or `None` for process-local memory.
    #[getter]
    fn path(&self) -> Option<String> {
        self.inner.path().map(|p| p.display().to_string())
    }

    /// `(slots holding a key, slots whose bucket is in use)`.
    fn occupancy(&self) -> (usize, usize) {
        self.inner.occupancy(crate::ratelimit::now_ns())
    }

    fn __repr__(&self) -> String {
        match self.inner.path() {
            Some(path) => format!(
                "RateLimiter(path={:?}, capacity={})",
                path.display().to_string(),
                self.inner.capacity()
            ),
            None => format!("RateLimiter(path=None, capacity={})", self.inner.capacity()),
        }
    }
}
