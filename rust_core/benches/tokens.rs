//! Token counting: `bpe-openai` (kept) against `tiktoken-rs`, both encodings, on ~4 KB of
//! mixed English, code and non-Latin text. Run: `cargo bench -p ferrogate_core --bench tokens`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::Deserialize;

#[derive(Deserialize)]
struct Row {
    text: String,
}

fn mixed_text() -> String {
    let rows: Vec<Row> =
        serde_json::from_str(include_str!("../tests/data/corpus_counts.json")).unwrap();
    let once = rows
        .into_iter()
        .map(|row| row.text)
        .collect::<Vec<_>>()
        .join("\n");
    [once.as_str(); 3].join("\n")
}

fn bench_tokens(c: &mut Criterion) {
    let text = mixed_text();
    let mut group = c.benchmark_group("count_tokens");
    group.throughput(Throughput::Bytes(text.len() as u64));
    let encoders = [
        (
            "o200k_base",
            bpe_openai::o200k_base(),
            tiktoken_rs::o200k_base_singleton(),
        ),
        (
            "cl100k_base",
            bpe_openai::cl100k_base(),
            tiktoken_rs::cl100k_base_singleton(),
        ),
    ];
    for (name, bpe, tiktoken) in encoders {
        assert_eq!(
            bpe.count(text.as_str()),
            tiktoken.encode_ordinary(&text).len()
        );
        group.bench_function(format!("bpe-openai/{name}"), |b| {
            b.iter(|| bpe.count(black_box(text.as_str())))
        });
        group.bench_function(format!("tiktoken-rs/{name}"), |b| {
            b.iter(|| tiktoken.encode_ordinary(black_box(&text)).len())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_tokens);
criterion_main!(benches);
