//! `StreamRelay` for Python: the respond phase's per-stream relay (parse, meter, translate, and
//! mask the answer with a `GuardPolicy`).

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::scan::PyGuardPolicy;
use super::{lock, DETACH_MIN_BYTES};
use crate::relay::{Protocol, RelayConfig, Relayed, StreamRelay};
use crate::tokens::Encoding;

/// Relays one upstream SSE stream to the client (Python `StreamRelay`).
#[pyclass(name = "StreamRelay", module = "ferrogate._core", frozen)]
pub struct PyStreamRelay {
    inner: Mutex<StreamRelay>,
}

#[pymethods]
impl PyStreamRelay {
    #[new]
    #[pyo3(signature = (
        source,
        target,
        *,
        encoding = "o200k_base",
        include_usage = false,
        request_id = "",
        model = "",
        created = 0,
        prompt_tokens = -1,
        json_tool = None,
        max_event_bytes = 1048576,
        guard = None,
    ))]
    #[pyo3(
        text_signature = "(source, target, *, encoding='o200k_base', include_usage=False, request_id='', model='', created=0, prompt_tokens=-1, json_tool=None, max_event_bytes=1048576, guard=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        source: &str,
        target: &str,
        encoding: &str,
        include_usage: bool,
        request_id: &str,
        model: &str,
        created: u64,
        prompt_tokens: i64,
        json_tool: Option<String>,
        max_event_bytes: usize,
        guard: Option<PyRef<'_, PyGuardPolicy>>,
    ) -> PyResult<Self> {
        let mut config =
            RelayConfig::new(Protocol::from_name(source)?, Protocol::from_name(target)?);
        config.encoding = Encoding::from_name(encoding)?;
        config.include_usage = include_usage;
        config.request_id = request_id.to_owned();
        config.model = model.to_owned();
        config.created = created;
        config.prompt_tokens = u64::try_from(prompt_tokens).unwrap_or(0);
        config.json_tool = json_tool;
        config.max_event_bytes = max_event_bytes;
        let relay = match guard {
            Some(guard) => StreamRelay::with_guard(config, guard.policy().clone())?,
            None => StreamRelay::new(config)?,
        };
        Ok(Self {
            inner: Mutex::new(relay),
        })
    }

    /// Feeds raw upstream bytes; returns the bytes to send the client now (the same object
    /// when the chunk passes through unchanged). The GIL is released only for chunks of at
    /// least `DETACH_MIN_BYTES`. Raises `SseError` on an oversize event.
    fn feed<'py>(
        &self,
        py: Python<'py>,
        data: Bound<'py, PyBytes>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = data.as_bytes();
        if bytes.len() >= DETACH_MIN_BYTES {
            let relayed = py.detach(|| {
                lock(&self.inner)
                    .feed(bytes)
                    .map(|relayed| relayed.bytes().map(<[u8]>::to_vec))
            })?;
            return Ok(match relayed {
                None => data,
                Some(out) => PyBytes::new(py, &out),
            });
        }
        let mut relay = lock(&self.inner);
        Ok(match relay.feed(bytes)? {
            Relayed::Unchanged => data,
            Relayed::Bytes(out) => PyBytes::new(py, out),
        })
    }

    /// Ends the stream: an unterminated last event is still processed. Returns what is left to
    /// send (no terminal event is invented).
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut relay = lock(&self.inner);
        Ok(PyBytes::new(py, relay.finish()?))
    }

    /// An error event in the client's protocol; it marks the stream done.
    #[pyo3(signature = (message, r#type = "api_error", code = None))]
    fn error_event<'py>(
        &self,
        py: Python<'py>,
        message: &str,
        r#type: &str,
        code: Option<&str>,
    ) -> Bound<'py, PyBytes> {
        PyBytes::new(py, lock(&self.inner).error_event(message, r#type, code))
    }

    /// Whether the source's terminal event (or an error) was seen.
    #[getter]
    fn done(&self) -> bool {
        lock(&self.inner).done()
    }

    /// `(prompt, completion, cached, reasoning, cache_creation)` tokens, if known.
    #[getter]
    fn usage(&self) -> Option<(u64, u64, u64, u64, u64)> {
        lock(&self.inner).usage().map(|usage| {
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens,
                usage.reasoning_tokens,
                usage.cache_creation_tokens,
            )
        })
    }

    /// Whether the relay counted the usage itself (the upstream sent none).
    #[getter]
    fn usage_counted(&self) -> bool {
        lock(&self.inner).usage_counted()
    }

    /// The upstream's response model, if it named one.
    #[getter]
    fn model(&self) -> Option<String> {
        lock(&self.inner).model().map(str::to_owned)
    }

    /// The raw JSON of an upstream error object, if one was sent.
    #[getter]
    fn error(&self) -> Option<String> {
        lock(&self.inner).error().map(str::to_owned)
    }

    /// The completion text (answer and reasoning text, tool call names and arguments).
    #[getter]
    fn completion_text(&self) -> String {
        lock(&self.inner).completion_text().to_owned()
    }

    /// Whether any content (text, reasoning, refusal or a tool call) reached the stream yet.
    #[getter]
    fn content_started(&self) -> bool {
        lock(&self.inner).content_started()
    }

    /// How many data events the source decoder could not read.
    #[getter]
    fn malformed_events(&self) -> u64 {
        lock(&self.inner).malformed_events()
    }

    /// Counts the tokens of the completion text (GIL released).
    fn count_completion_tokens(&self, py: Python<'_>) -> usize {
        py.detach(|| lock(&self.inner).count_completion_tokens())
    }

    /// Whether the relay masks the stream with a guard policy.
    #[getter]
    fn guarded(&self) -> bool {
        lock(&self.inner).guarded()
    }

    /// A guarded relay's findings so far, per rule that has any: `(rule id, category, action,
    /// count)`.
    fn guard_findings(&self) -> Vec<(String, &'static str, u8, u64)> {
        lock(&self.inner)
            .guard_findings()
            .into_iter()
            .map(|found| (found.rule, found.category.name(), found.action, found.count))
            .collect()
    }
}
