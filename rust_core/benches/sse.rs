//! The respond phase's hot path: SSE parsing plus chat metering of an OpenAI stream, per chunk.
//! Run: `cargo bench -p ferrogate_core --bench sse`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use _core::sse::{ChatStreamMeter, SseParser};
use _core::tokens::Encoding;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const CHUNKS: usize = 200;

fn openai_stream() -> String {
    let mut stream = String::new();
    for i in 0..CHUNKS {
        stream.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732540000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i} \\u00e9\\n\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    stream.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732540000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":400,\"total_tokens\":419,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\ndata: [DONE]\n\n");
    stream
}

fn bench_sse(c: &mut Criterion) {
    let stream = openai_stream();
    // Network-like chunks: one read per event, cut at an odd size.
    let chunks: Vec<&[u8]> = stream.as_bytes().chunks(251).collect();
    let mut group = c.benchmark_group("sse_stream_202_events");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("parser", |b| {
        b.iter(|| {
            let mut parser = SseParser::default();
            let mut n = 0;
            for chunk in &chunks {
                parser.feed_with(black_box(chunk), |_| n += 1).unwrap();
            }
            n
        })
    });
    group.bench_function("chat_meter", |b| {
        b.iter(|| {
            let mut meter = ChatStreamMeter::new(Encoding::O200kBase);
            for chunk in &chunks {
                meter.feed(black_box(chunk)).unwrap();
            }
            meter.usage()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_sse);
criterion_main!(benches);
