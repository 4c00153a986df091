//! `SseParser` and `SseEvent` for Python.

use std::sync::Mutex;

use pyo3::prelude::*;

use super::{lock, DETACH_MIN_BYTES};
use crate::sse::{SseEvent, SseParser};

/// One server-sent event (Python `SseEvent`): immutable, compared by value.
#[pyclass(name = "SseEvent", module = "ferrogate._core", frozen, eq)]
#[derive(Debug, PartialEq, Eq)]
pub struct PySseEvent {
    /// The event type, `"message"` by default.
    #[pyo3(get)]
    event: String,
    /// The data lines joined by `"\n"`.
    #[pyo3(get)]
    data: String,
    /// The last event id of the stream, if any.
    #[pyo3(get)]
    id: Option<String>,
    /// The `retry` value of this event's block, if any.
    #[pyo3(get)]
    retry: Option<u64>,
}

impl From<SseEvent> for PySseEvent {
    fn from(event: SseEvent) -> Self {
        Self {
            event: event.event,
            data: event.data,
            id: event.id,
            retry: event.retry,
        }
    }
}

#[pymethods]
impl PySseEvent {
    fn __repr__(&self) -> String {
        let id = self
            .id
            .as_ref()
            .map_or_else(|| "None".to_owned(), |id| format!("{id:?}"));
        let retry = self
            .retry
            .map_or_else(|| "None".to_owned(), |retry| retry.to_string());
        format!(
            "SseEvent(event={:?}, data={:?}, id={id}, retry={retry})",
            self.event, self.data
        )
    }
}

/// The incremental SSE parser (Python `SseParser`): bytes in, complete events out.
#[pyclass(name = "SseParser", module = "ferrogate._core", frozen)]
pub struct PySseParser {
    inner: Mutex<SseParser>,
}

#[pymethods]
impl PySseParser {
    #[new]
    // The default is `DEFAULT_MAX_EVENT_BYTES`, spelled out so the text signature shows it.
    #[pyo3(signature = (max_event_bytes = 1048576))]
    fn new(max_event_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(SseParser::new(max_event_bytes)),
        }
    }

    /// The bound on one line and on the data of one event.
    #[getter]
    fn max_event_bytes(&self) -> usize {
        lock(&self.inner).max_event_bytes()
    }

    /// Feeds the next chunk; returns the events it completes. Raises `SseError` when the
    /// stream breaks the size bound (events completed before it are returned first). The GIL is
    /// released only for chunks of at least `DETACH_MIN_BYTES`.
    fn feed(&self, py: Python<'_>, data: &[u8]) -> PyResult<Vec<PySseEvent>> {
        let run = || lock(&self.inner).feed(data);
        let events = if data.len() >= DETACH_MIN_BYTES {
            py.detach(run)
        } else {
            run()
        }?;
        Ok(events.into_iter().map(PySseEvent::from).collect())
    }

    /// Ends the stream; returns a pending event, if any, and resets the parser.
    fn finish(&self, py: Python<'_>) -> PyResult<Vec<PySseEvent>> {
        let events = py.detach(|| lock(&self.inner).finish())?;
        Ok(events.into_iter().map(PySseEvent::from).collect())
    }
}
