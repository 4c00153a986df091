//! Token counting functions for Python (GIL released while counting).

use pyo3::prelude::*;

use crate::tokens::{self as core_tokens, Encoding};

/// Counts the tokens of `text` in `encoding` (`o200k_base` or `cl100k_base`).
#[pyfunction]
#[pyo3(signature = (text, encoding = "o200k_base"))]
pub fn count_tokens(py: Python<'_>, text: &str, encoding: &str) -> PyResult<usize> {
    let encoding = Encoding::from_name(encoding)?;
    Ok(py.detach(|| encoding.count(text)))
}

/// Counts the prompt tokens of an OpenAI chat request body, with the per-message overhead.
#[pyfunction]
#[pyo3(signature = (body, encoding = "o200k_base"))]
pub fn count_chat_prompt(py: Python<'_>, body: &[u8], encoding: &str) -> PyResult<usize> {
    Ok(py.detach(|| core_tokens::count_chat_prompt(body, encoding))?)
}

/// The encoding name for `model` (`o200k_base` as an estimate for unknown models).
#[pyfunction]
pub fn encoding_for_model(model: &str) -> &'static str {
    core_tokens::encoding_for_model(model)
}

/// `(encoding, is_estimate)` for `model`: `is_estimate` is true for unknown models.
#[pyfunction]
pub fn model_encoding(model: &str) -> (&'static str, bool) {
    let found = core_tokens::model_encoding(model);
    (found.encoding.name(), found.estimate)
}
