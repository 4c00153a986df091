//! `RateLimiter` for Python: the limit phase's GCRA table (see [`crate::ratelimit`]).
//!
//! Decisions take well under a microsecond, less than releasing and re-taking the GIL costs,
//! so no method detaches; the table is lock-free (atomics), so the class is `frozen` and safe
//! to share between threads.

use std::path::PathBuf;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyString;

use crate::ratelimit::headers::{self, Taken};
use crate::ratelimit::Limiter;

/// What [`PyRateLimiter::take_many`] returns: the index of the refusing bucket (`-1`: all taken),
/// its retry-after in seconds, and the `x-ratelimit-*` headers.
type Taking<'py> = (isize, f64, Vec<(Bound<'py, PyString>, String)>);

/// The header name as an interned Python string (made once, not on every response).
fn header_name<'py>(py: Python<'py>, name: &'static str) -> Bound<'py, PyString> {
    let interned = match name {
        "x-ratelimit-limit-requests" => intern!(py, "x-ratelimit-limit-requests"),
        "x-ratelimit-remaining-requests" => intern!(py, "x-ratelimit-remaining-requests"),
        "x-ratelimit-reset-requests" => intern!(py, "x-ratelimit-reset-requests"),
        "x-ratelimit-limit-tokens" => intern!(py, "x-ratelimit-limit-tokens"),
        "x-ratelimit-remaining-tokens" => intern!(py, "x-ratelimit-remaining-tokens"),
        "x-ratelimit-reset-tokens" => intern!(py, "x-ratelimit-reset-tokens"),
        other => return PyString::new(py, other),
    };
    interned.clone()
}

/// [`headers::rate_headers`] with interned names.
fn py_headers<'py>(py: Python<'py>, taken: &[Taken]) -> Vec<(Bound<'py, PyString>, String)> {
    headers::rate_headers(taken)
        .into_iter()
        .map(|(name, value)| (header_name(py, name), value))
        .collect()
}

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

    /// Takes a request's chain of buckets all or none: `buckets` are `(key, limit, tokens)`, each
    /// costing `tokens_cost` when `tokens` is true and 1 otherwise, per `period_s`. Returns
    /// `(refused, retry_after_s, headers)`: the index of the first bucket that did not fit (what
    /// the earlier ones took is given back) or -1, its retry-after (0 when none refused), and
    /// OpenAI's `x-ratelimit-*` headers for the tightest bucket of each kind (the refusing one
    /// included).
    fn take_many<'py>(
        &self,
        py: Python<'py>,
        buckets: Vec<(PyBackedStr, f64, bool)>,
        period_s: f64,
        tokens_cost: f64,
    ) -> PyResult<Taking<'py>> {
        let checks = buckets.iter().map(|(key, limit, tokens)| {
            let cost = if *tokens { tokens_cost } else { 1.0 };
            (&**key, *limit, cost)
        });
        let decisions = self.inner.take_all(checks, period_s)?;
        let taken: Vec<Taken> = decisions
            .iter()
            .zip(&buckets)
            .map(|(d, (_, limit, tokens))| Taken {
                limit: *limit,
                remaining: d.remaining,
                reset_s: d.reset_s,
                tokens: *tokens,
            })
            .collect();
        let (refused, retry_after_s) = match decisions.last() {
            Some(d) if !d.allowed => ((decisions.len() - 1) as isize, d.retry_after_s),
            _ => (-1, 0.0),
        };
        Ok((refused, retry_after_s, py_headers(py, &taken)))
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

/// OpenAI's `x-ratelimit-*` headers for the tightest bucket of each kind: `taken` are
/// `(limit, remaining, reset_s, tokens)` (the async limiters' decisions; the local table's
/// `take_many` builds them itself).
#[pyfunction]
pub fn rate_headers(
    py: Python<'_>,
    taken: Vec<(f64, f64, f64, bool)>,
) -> Vec<(Bound<'_, PyString>, String)> {
    let taken: Vec<Taken> = taken
        .into_iter()
        .map(|(limit, remaining, reset_s, tokens)| Taken {
            limit,
            remaining,
            reset_s,
            tokens,
        })
        .collect();
    py_headers(py, &taken)
}

/// OpenAI's reset format for `seconds`: `20ms`, `2s`, `6m0s`.
#[pyfunction]
pub fn reset_duration(seconds: f64) -> String {
    headers::duration(seconds)
}
