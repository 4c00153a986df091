//! Token counting functions for Python (the GIL released while counting texts of at least
//! `DETACH_MIN_TEXT_BYTES`; a short prompt counts in about a microsecond, less than a release costs).

use pyo3::prelude::*;

use super::DETACH_MIN_TEXT_BYTES;
use crate::tokens::{self as core_tokens, Encoding};

/// Counts the tokens of `text` in `encoding` (`o200k_base` or `cl100k_base`).
#[pyfunction]
#[pyo3(signature = (text, encoding = "o200k_base"))]
pub fn count_tokens(py: Python<'_>, text: &str, encoding: &str) -> PyResult<usize> {
    let encoding = Encoding::from_name(encoding)?;
    let run = || encoding.count(text);
    Ok(if text.len() >= DETACH_MIN_TEXT_BYTES {
        py.detach(run)
    } else {
        run()
    })
}

/// Counts the prompt tokens of an OpenAI chat request body, with the per-message overhead.
#[pyfunction]
#[pyo3(signature = (body, encoding = "o200k_base"))]
pub fn count_chat_prompt(py: Python<'_>, body: &[u8], encoding: &str) -> PyResult<usize> {
    let run = || core_tokens::count_chat_prompt(body, encoding);
    Ok(if body.len() >= DETACH_MIN_TEXT_BYTES {
        py.detach(run)
    } else {
        run()
    }?)
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
