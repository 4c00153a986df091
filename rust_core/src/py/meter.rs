//! `ChatStreamMeter` for Python: the respond phase's meter of an OpenAI chat stream.

use std::sync::Mutex;

use pyo3::prelude::*;

use super::{lock, DETACH_MIN_BYTES};
use crate::sse::ChatStreamMeter;
use crate::tokens::Encoding;

/// Meters one OpenAI chat-completions SSE stream (Python `ChatStreamMeter`).
#[pyclass(name = "ChatStreamMeter", module = "ferrogate._core", frozen)]
pub struct PyChatStreamMeter {
    inner: Mutex<ChatStreamMeter>,
}

#[pymethods]
impl PyChatStreamMeter {
    #[new]
    #[pyo3(signature = (encoding = "o200k_base"))]
    fn new(encoding: &str) -> PyResult<Self> {
        Ok(Self {
            inner: Mutex::new(ChatStreamMeter::new(Encoding::from_name(encoding)?)),
        })
    }

    /// Feeds raw upstream bytes; returns whether `data: [DONE]` has been seen, so the
    /// respond phase needs no second call per chunk. The GIL is released only for chunks of
    /// at least `DETACH_MIN_BYTES`: a typical chunk (one event, a few hundred bytes) meters in
    /// under a microsecond, less than releasing and re-taking the GIL costs.
    /// Raises `SseError` on an oversize event.
    fn feed(&self, py: Python<'_>, data: &[u8]) -> PyResult<bool> {
        let run = || {
            let mut meter = lock(&self.inner);
            meter.feed(data).map(|()| meter.done())
        };
        Ok(if data.len() >= DETACH_MIN_BYTES {
            py.detach(run)?
        } else {
            run()?
        })
    }

    /// Ends the stream: an unterminated final event is still metered.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.detach(|| lock(&self.inner).finish())?)
    }

    /// `(prompt, completion, cached, reasoning)` tokens from the upstream's usage, if sent.
    #[getter]
    fn usage(&self) -> Option<(u64, u64, u64, u64)> {
        lock(&self.inner).usage().map(|usage| {
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens,
                usage.reasoning_tokens,
            )
        })
    }

    /// The response model, if the upstream named one.
    #[getter]
    fn model(&self) -> Option<String> {
        lock(&self.inner).model().map(str::to_owned)
    }

    /// Whether `data: [DONE]` has been seen.
    #[getter]
    fn done(&self) -> bool {
        lock(&self.inner).done()
    }

    /// The raw JSON of an upstream `error` value, if one was sent.
    #[getter]
    fn error(&self) -> Option<String> {
        lock(&self.inner).error().map(str::to_owned)
    }

    /// The accumulated completion text (content, reasoning, tool call names and arguments).
    #[getter]
    fn completion_text(&self) -> String {
        lock(&self.inner).completion_text().to_owned()
    }

    /// The encoding used to count completion tokens.
    #[getter]
    fn encoding(&self) -> &'static str {
        lock(&self.inner).encoding().name()
    }

    /// How many data events were neither `[DONE]` nor a readable JSON object.
    #[getter]
    fn malformed_events(&self) -> u64 {
        lock(&self.inner).malformed_events()
    }

    /// Counts the tokens of the completion text (GIL released): the fallback when no usage
    /// arrived.
    fn count_completion_tokens(&self, py: Python<'_>) -> usize {
        py.detach(|| lock(&self.inner).count_completion_tokens())
    }
}
