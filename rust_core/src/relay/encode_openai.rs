//! Encoder of OpenAI chat-completions streams: `data: <chat.completion.chunk>` events and
//! `data: [DONE]`.
//!
//! Every chunk starts with the same `{"id","object","created","model","choices":[` prefix, built
//! once when the answer starts; each event then writes only its `delta`.

use super::events::{Event, FinishReason, UpstreamError, Usage};
use super::json::{push_escaped, push_opt_str, push_str, push_u64};
use super::RelayConfig;

/// Encodes normalised events as an OpenAI chat stream. One per stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChatEncoder {
    /// `data: {"id":...,"model":...,"choices":[`, built at the start.
    prefix: Vec<u8>,
}

impl ChatEncoder {
    /// Writes the chunk for one event (nothing for `Usage`, written at the end).
    pub(crate) fn event(&mut self, config: &RelayConfig, event: &Event<'_>, out: &mut Vec<u8>) {
        match *event {
            Event::Start { model } => {
                self.start(config, model);
                self.delta(out, br#"{"role":"assistant","content":""}"#, None);
            }
            Event::Text(text) => self.text_delta(config, out, b"content", text),
            Event::Reasoning(text) => self.text_delta(config, out, b"reasoning_content", text),
            Event::Refusal(text) => self.text_delta(config, out, b"refusal", text),
            Event::ToolStart { call, id, name } => {
                let mut delta = Vec::with_capacity(80 + id.len() + name.len());
                delta.extend_from_slice(br#"{"tool_calls":[{"index":"#);
                push_u64(&mut delta, call as u64);
                delta.extend_from_slice(br#","id":"#);
                push_str(&mut delta, id);
                delta.extend_from_slice(br#","type":"function","function":{"name":"#);
                push_str(&mut delta, name);
                delta.extend_from_slice(br#","arguments":""}}]}"#);
                self.ensure_started(config);
                self.delta(out, &delta, None);
            }
            Event::ToolArgs { call, fragment } => {
                self.ensure_started(config);
                self.begin(out);
                out.extend_from_slice(br#"{"index":0,"delta":{"tool_calls":[{"index":"#);
                push_u64(out, call as u64);
                out.extend_from_slice(br#","function":{"arguments":"#);
                push_str(out, fragment);
                out.extend_from_slice(br#"}}]},"logprobs":null,"finish_reason":null}]}"#);
                out.extend_from_slice(b"\n\n");
            }
            Event::Finish(reason) => {
                self.ensure_started(config);
                self.delta(out, b"{}", Some(reason));
            }
            Event::Usage(_) | Event::Done | Event::Error(_) => {}
        }
    }

    /// The upstream's terminal event: the usage chunk (when the client asked for usage), then
    /// `data: [DONE]`.
    pub(crate) fn end(&mut self, config: &RelayConfig, usage: Option<&Usage>, out: &mut Vec<u8>) {
        if let Some(usage) = usage.filter(|_| config.include_usage) {
            self.ensure_started(config);
            self.usage_chunk(usage, out);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// Writes a usage-only chunk (`"choices":[]`), naming `model`.
    pub(crate) fn usage_chunk_for(
        &mut self,
        config: &RelayConfig,
        model: &str,
        usage: &Usage,
        out: &mut Vec<u8>,
    ) {
        self.start(config, model);
        self.usage_chunk(usage, out);
    }

    /// An error event: `data: {"error":{"message","type","param":null,"code"}}`.
    pub(crate) fn error(out: &mut Vec<u8>, message: &str, kind: &str, code: Option<&str>) {
        out.extend_from_slice(br#"data: {"error":{"message":"#);
        push_str(out, message);
        out.extend_from_slice(br#","type":"#);
        push_str(out, kind);
        out.extend_from_slice(br#","param":null,"code":"#);
        push_opt_str(out, code);
        out.extend_from_slice(b"}}\n\n");
    }

    /// An upstream error in the client's protocol.
    pub(crate) fn upstream_error(error: &UpstreamError<'_>, out: &mut Vec<u8>) {
        let kind = if error.kind.is_empty() {
            "api_error"
        } else {
            error.kind
        };
        Self::error(out, error.message, kind, error.code);
    }

    fn start(&mut self, config: &RelayConfig, model: &str) {
        let model = if model.is_empty() {
            &config.model
        } else {
            model
        };
        self.prefix.clear();
        self.prefix.extend_from_slice(br#"data: {"id":"chatcmpl-"#);
        push_escaped(&mut self.prefix, &config.request_id);
        self.prefix
            .extend_from_slice(br#"","object":"chat.completion.chunk","created":"#);
        push_u64(&mut self.prefix, config.created);
        self.prefix.extend_from_slice(br#","model":"#);
        push_str(&mut self.prefix, model);
        self.prefix.extend_from_slice(br#","choices":["#);
    }

    fn ensure_started(&mut self, config: &RelayConfig) {
        if self.prefix.is_empty() {
            self.start(config, "");
        }
    }

    fn begin(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
    }

    fn text_delta(&mut self, config: &RelayConfig, out: &mut Vec<u8>, key: &[u8], text: &str) {
        self.ensure_started(config);
        self.begin(out);
        out.extend_from_slice(br#"{"index":0,"delta":{""#);
        out.extend_from_slice(key);
        out.extend_from_slice(br#"":"#);
        push_str(out, text);
        out.extend_from_slice(br#"},"logprobs":null,"finish_reason":null}]}"#);
        out.extend_from_slice(b"\n\n");
    }

    fn delta(&self, out: &mut Vec<u8>, delta: &[u8], finish: Option<FinishReason>) {
        self.begin(out);
        out.extend_from_slice(br#"{"index":0,"delta":"#);
        out.extend_from_slice(delta);
        out.extend_from_slice(br#","logprobs":null,"finish_reason":"#);
        match finish {
            Some(reason) => {
                out.push(b'"');
                out.extend_from_slice(reason.openai().as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]}\n\n");
    }

    fn usage_chunk(&self, usage: &Usage, out: &mut Vec<u8>) {
        self.begin(out);
        out.extend_from_slice(br#"],"usage":{"prompt_tokens":"#);
        push_u64(out, usage.prompt_tokens);
        out.extend_from_slice(br#","completion_tokens":"#);
        push_u64(out, usage.completion_tokens);
        out.extend_from_slice(br#","total_tokens":"#);
        push_u64(out, usage.prompt_tokens + usage.completion_tokens);
        out.extend_from_slice(br#","prompt_tokens_details":{"cached_tokens":"#);
        push_u64(out, usage.cached_tokens);
        out.extend_from_slice(br#"},"completion_tokens_details":{"reasoning_tokens":"#);
        push_u64(out, usage.reasoning_tokens);
        out.extend_from_slice(b"}}}\n\n");
    }
}
