//! The one place where Rust errors become Python exceptions.
//!
//! Hierarchy (all in `ferrogate._core`):
//! `CoreError(Exception)` > `UnknownEncodingError`, `SseError`, `InvalidBodyError`,
//! `LimiterError`, `InvalidRateError`, `SchemaError` (a JSON schema that does not compile, or an answer
//! too costly to check), `RoutePolicyError` (routing rules that do not load); `RuleError(ValueError)` for a guardrail rule that does not
//! compile (a request body `scan_json` cannot read is an `InvalidBodyError`, bad action bytes a
//! `ValueError`). A stream relay that cannot be set up (an unknown protocol,
//! a pair it does not translate) is a bad argument: `ValueError`.

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

use crate::error as core_error;

pyo3::create_exception!(
    ferrogate._core,
    CoreError,
    PyException,
    "Base class of every error raised by ferrogate._core."
);
pyo3::create_exception!(
    ferrogate._core,
    UnknownEncodingError,
    CoreError,
    "The encoding name is not a bundled one (o200k_base, cl100k_base)."
);
pyo3::create_exception!(
    ferrogate._core,
    SseError,
    CoreError,
    "An SSE stream broke the parser's bounds (a line or an event over max_event_bytes)."
);
pyo3::create_exception!(
    ferrogate._core,
    InvalidBodyError,
    CoreError,
    "A chat request body is not JSON with a messages array of message objects."
);
pyo3::create_exception!(
    ferrogate._core,
    LimiterError,
    CoreError,
    "The rate limiter's table could not be opened: a file error, a file of another layout or capacity, a bad capacity, or a CPU without 128-bit atomics."
);
pyo3::create_exception!(
    ferrogate._core,
    RuleError,
    PyValueError,
    "A guardrail rule that does not compile; the message names the rule's id and index."
);
pyo3::create_exception!(
    ferrogate._core,
    InvalidRateError,
    CoreError,
    "A rate limit, period or cost that is not a usable number (limit and period must be positive and finite, cost finite and >= 0)."
);

pyo3::create_exception!(
    ferrogate._core,
    CircuitError,
    CoreError,
    "The circuit breakers' table: a bad policy setting, a full table, a slot out of range, or a table file that cannot be opened (another layout or capacity)."
);

pyo3::create_exception!(
    ferrogate._core,
    SchemaError,
    CoreError,
    "A JSON schema that does not compile (not JSON, over the size limit, not a schema of its draft, an unresolvable or remote $ref, a pattern that needs backtracking), or an answer that checking would take over its work budget."
);

pyo3::create_exception!(
    ferrogate._core,
    RoutePolicyError,
    CoreError,
    "Routing rules that do not parse or validate, or a bad @id/@priority: one line per problem, \"<source>:<line>:<col>: <what>\"."
);

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CoreError", py.get_type::<CoreError>())?;
    m.add(
        "UnknownEncodingError",
        py.get_type::<UnknownEncodingError>(),
    )?;
    m.add("SseError", py.get_type::<SseError>())?;
    m.add("InvalidBodyError", py.get_type::<InvalidBodyError>())?;
    m.add("LimiterError", py.get_type::<LimiterError>())?;
    m.add("InvalidRateError", py.get_type::<InvalidRateError>())?;
    m.add("RuleError", py.get_type::<RuleError>())?;
    m.add("RoutePolicyError", py.get_type::<RoutePolicyError>())?;
    m.add("SchemaError", py.get_type::<SchemaError>())?;
    m.add("CircuitError", py.get_type::<CircuitError>())?;
    Ok(())
}

impl From<core_error::SseError> for PyErr {
    fn from(error: core_error::SseError) -> Self {
        SseError::new_err(error.to_string())
    }
}

impl From<core_error::RuleError> for PyErr {
    fn from(error: core_error::RuleError) -> Self {
        RuleError::new_err(error.to_string())
    }
}

impl From<core_error::ScanError> for PyErr {
    fn from(error: core_error::ScanError) -> Self {
        let message = error.to_string();
        match error {
            core_error::ScanError::InvalidActions(_) => PyValueError::new_err(message),
            core_error::ScanError::InvalidJson(_) => InvalidBodyError::new_err(message),
        }
    }
}

impl From<core_error::TokenError> for PyErr {
    fn from(error: core_error::TokenError) -> Self {
        let message = error.to_string();
        match error {
            core_error::TokenError::UnknownEncoding(_) => UnknownEncodingError::new_err(message),
            core_error::TokenError::InvalidBody(_) => InvalidBodyError::new_err(message),
        }
    }
}

impl From<core_error::LimitError> for PyErr {
    fn from(error: core_error::LimitError) -> Self {
        let message = error.to_string();
        match error {
            core_error::LimitError::InvalidRate(_) => InvalidRateError::new_err(message),
            core_error::LimitError::InvalidCapacity(_)
            | core_error::LimitError::Io { .. }
            | core_error::LimitError::Layout { .. }
            | core_error::LimitError::Unsupported(_) => LimiterError::new_err(message),
        }
    }
}

impl From<core_error::RelayError> for PyErr {
    /// A relay that cannot be set up is a bad argument: `ValueError` naming the protocol or pair.
    fn from(error: core_error::RelayError) -> Self {
        PyValueError::new_err(error.to_string())
    }
}

impl From<core_error::CircuitError> for PyErr {
    fn from(error: core_error::CircuitError) -> Self {
        CircuitError::new_err(error.to_string())
    }
}

impl From<core_error::SchemaError> for PyErr {
    fn from(error: core_error::SchemaError) -> Self {
        SchemaError::new_err(error.to_string())
    }
}

impl From<core_error::RoutePolicyError> for PyErr {
    /// Bad rules (and facts Cedar refuses) are a `RoutePolicyError`; an unregistered deployment id
    /// is a bad argument: `ValueError`.
    fn from(error: core_error::RoutePolicyError) -> Self {
        let message = error.to_string();
        match error {
            core_error::RoutePolicyError::UnknownDeployment(_) => PyValueError::new_err(message),
            core_error::RoutePolicyError::Rules { .. } | core_error::RoutePolicyError::Facts(_) => {
                RoutePolicyError::new_err(message)
            }
        }
    }
}
