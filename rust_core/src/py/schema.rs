//! Structured outputs for Python: `JsonSchema`, a JSON schema compiled once (see [`crate::schema`]).
//!
//! Only bytes cross: the schema's JSON to the constructor, an answer's JSON to `errors`, and back a
//! list of `(JSON pointer, message)`. Both run with the GIL released only for inputs of at least
//! [`DETACH_MIN_SCAN_BYTES`]: a typical answer (1 KiB) checks in a few microseconds, less than
//! handing the GIL to the worker's other threads costs.

use pyo3::prelude::*;

use super::DETACH_MIN_SCAN_BYTES;
use crate::schema::{JsonSchema, Violation};

/// A compiled JSON schema (Python `JsonSchema`): build it once per distinct schema.
#[pyclass(name = "JsonSchema", module = "ferrogate._core", frozen)]
pub struct PyJsonSchema {
    inner: JsonSchema,
}

#[pymethods]
impl PyJsonSchema {
    /// Compiles `schema` (JSON bytes); raises `SchemaError` when it does not compile.
    #[new]
    fn new(py: Python<'_>, schema: &[u8]) -> PyResult<Self> {
        let inner = if schema.len() >= DETACH_MIN_SCAN_BYTES {
            py.detach(|| JsonSchema::new(schema))?
        } else {
            JsonSchema::new(schema)?
        };
        Ok(Self { inner })
    }

    /// At most `limit` violations `(JSON pointer, message)` of the answer `instance` (JSON bytes);
    /// `[]` when valid, one at `""` when it is not JSON. Raises `SchemaError` when checking it would
    /// take over its work budget (the answer is not checked).
    #[pyo3(signature = (instance, limit = 5))]
    fn errors(
        &self,
        py: Python<'_>,
        instance: &[u8],
        limit: i64,
    ) -> PyResult<Vec<(String, String)>> {
        let limit = usize::try_from(limit).unwrap_or(0); // below 1 reads as 1
        let found = if instance.len() >= DETACH_MIN_SCAN_BYTES {
            py.detach(|| self.inner.errors(instance, limit))?
        } else {
            self.inner.errors(instance, limit)?
        };
        Ok(found
            .into_iter()
            .map(|Violation { pointer, message }| (pointer, message))
            .collect())
    }
}
