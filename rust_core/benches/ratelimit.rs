//! The limit phase's hot path: GCRA decisions on the shared (file-mapped) table.
//! Run: `cargo bench -p ferrogate_core --bench ratelimit`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use _core::ratelimit::Limiter;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn table_path(name: &str) -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("ferrogate-rl-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn bench_ratelimit(c: &mut Criterion) {
    let path = table_path("single");
    let shared = Limiter::shared(&path, 65536).unwrap();
    let local = Limiter::in_memory(65536).unwrap();
    let keys: Vec<String> = (0..1000).map(|i| format!("rpm:key:{i}")).collect();
    let mut group = c.benchmark_group("ratelimit_decision");
    group.throughput(Throughput::Elements(1));
    // One decision: a key among 1000 (a generous limit, so nearly all are admitted).
    let mut i = 0usize;
    group.bench_function("shared/check", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(shared.check(&keys[i], 1e9, 60.0, 1.0).unwrap())
        })
    });
    group.bench_function("shared/check_one_key_denied", |b| {
        b.iter(|| black_box(shared.check("hot", 1.0, 3600.0, 1.0).unwrap()))
    });
    group.bench_function("shared/peek", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(shared.peek(&keys[i], 1e9, 60.0).unwrap())
        })
    });
    group.bench_function("local/check", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(local.check(&keys[i], 1e9, 60.0, 1.0).unwrap())
        })
    });
    // Two threads (each with its own mapping, like two worker processes) on one key: the time
    // per decision of the pair, i.e. total throughput under CAS contention.
    let contended = Arc::new(Limiter::shared(&path, 65536).unwrap());
    group.throughput(Throughput::Elements(2));
    group.bench_function("shared/check_2_threads_one_key", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let other = {
                let limiter = Arc::clone(&contended);
                std::thread::spawn(move || {
                    for _ in 0..iters {
                        black_box(limiter.check("contended", 1e12, 60.0, 1.0).unwrap());
                    }
                })
            };
            for _ in 0..iters {
                black_box(contended.check("contended", 1e12, 60.0, 1.0).unwrap());
            }
            other.join().unwrap();
            start.elapsed()
        })
    });
    group.finish();
    drop((shared, contended));
    let _ = std::fs::remove_file(&path);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_ratelimit
}
criterion_main!(benches);
