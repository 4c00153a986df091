//! The guardrail scanner's throughput, single-threaded, on a 1 MB mixed corpus of English prose,
//! Python and Rust source and JSON chat requests (generated deterministically by
//! `support/scan_corpus.rs`, with a few fake secrets and PII sprinkled in): the built-in secret
//! rules only, and every built-in rule.
//! Also: one typical 2 KB chat request body through `scan_json`, and streamed redaction of the
//! corpus in 64-byte pieces. Run: `cargo bench -p ferrogate_core --bench scan`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use _core::scan::{builtin, Category, Policy, Scanner};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "support/scan_corpus.rs"]
mod scan_corpus;

use scan_corpus::{corpus, request_body};

fn scanner(categories: &[Category]) -> Arc<Scanner> {
    let rules = builtin::rules()
        .into_iter()
        .filter(|r| categories.contains(&r.category))
        .collect();
    Arc::new(Scanner::new(rules).unwrap())
}

fn bench(c: &mut Criterion) {
    let text = corpus();
    let secrets = scanner(&[Category::Secret]);
    let all = scanner(&Category::ALL);
    let mut group = c.benchmark_group("scan_1mb");
    group.throughput(Throughput::Bytes(text.len() as u64));
    for (name, scanner) in [("secret_rules", &secrets), ("all_rules", &all)] {
        let actions = vec![2u8; scanner.len()];
        group.bench_function(name, |b| {
            b.iter(|| black_box(scanner.find(black_box(&text), &actions)))
        });
    }
    let policy = Policy::new(Arc::clone(&all), vec![2; all.len()]).unwrap();
    group.bench_function("stream_all_rules_64b_pieces", |b| {
        b.iter(|| {
            let mut redactor = policy.stream();
            let mut out = String::with_capacity(text.len());
            let mut at = 0;
            while at < text.len() {
                let mut end = (at + 64).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                redactor.push(&text[at..end], &mut out);
                at = end;
            }
            redactor.finish(&mut out);
            black_box(out)
        })
    });
    group.finish();

    let body = request_body();
    let mut group = c.benchmark_group("scan_json");
    group.throughput(Throughput::Bytes(body.len() as u64));
    let secret_policy = Policy::new(Arc::clone(&secrets), vec![2; secrets.len()]).unwrap();
    group.bench_function("request_2kb_secret_rules", |b| {
        b.iter(|| black_box(secret_policy.scan_json(black_box(&body)).unwrap()))
    });
    // the default policy: secrets redacted, injection phrases logged, PII off
    let defaults: Vec<u8> = (0..all.len())
        .map(|i| match all.category(i) {
            Category::Secret => 2,
            Category::Injection => 1,
            _ => 0,
        })
        .collect();
    let default_policy = Policy::new(Arc::clone(&all), defaults).unwrap();
    group.bench_function("request_2kb_default_policy", |b| {
        b.iter(|| black_box(default_policy.scan_json(black_box(&body)).unwrap()))
    });
    group.bench_function("request_2kb_all_rules", |b| {
        b.iter(|| black_box(policy.scan_json(black_box(&body)).unwrap()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
