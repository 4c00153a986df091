//! The route and forward phases' circuit calls on the shared (file-mapped) table: admit + done
//! of one attempt, view (the strategies' and the admin API's read), the retry budget.
//! Run: `cargo bench -p ferrogate_core --bench circuit`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use _core::circuit::{Attempt, Circuits, Policy, PolicySettings};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn table_path(name: &str) -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!(
        "ferrogate-circuit-bench-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

const OK: Attempt = Attempt {
    ok: true,
    latency_s: 0.25,
    ttft_s: 0.05,
    retry_after_s: 0.0,
    probe: false,
    status: 200,
};

fn admit_done(table: &Circuits, slot: usize, policy: &Policy) {
    black_box(table.admit(slot, policy).unwrap());
    black_box(table.done(slot, policy, &OK).unwrap());
}

fn bench_circuit(c: &mut Criterion) {
    let path = table_path("single");
    let shared = Circuits::shared(&path, 4096).unwrap();
    let local = Circuits::in_memory(4096).unwrap();
    let policy = Policy::new(PolicySettings::default()).unwrap();
    // ten deployments, as in a model group of ten
    let slots: Vec<usize> = (0..10)
        .map(|i| shared.slot(&format!("upstream{i}/model")).unwrap())
        .collect();
    let mut group = c.benchmark_group("circuit");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("shared/admit+done", |b| {
        b.iter(|| {
            i = (i + 1) % slots.len();
            admit_done(&shared, slots[i], &policy)
        })
    });
    group.bench_function("shared/view", |b| {
        b.iter(|| {
            i = (i + 1) % slots.len();
            black_box(shared.view(slots[i]).unwrap())
        })
    });
    group.bench_function("shared/view_10_deployments", |b| {
        b.iter(|| {
            for &slot in &slots {
                black_box(shared.view(slot).unwrap());
            }
        })
    });
    group.bench_function("shared/retry_allowed", |b| {
        b.iter(|| black_box(shared.retry_allowed(slots[0], &policy).unwrap()))
    });
    group.bench_function("shared/slot_lookup", |b| {
        b.iter(|| black_box(shared.slot("upstream7/model").unwrap()))
    });
    let local_slot = local.slot("upstream0/model").unwrap();
    group.bench_function("local/admit+done", |b| {
        b.iter(|| admit_done(&local, local_slot, &policy))
    });
    // Two threads (each with its own mapping, like two worker processes) on one deployment: the
    // time per admit+done of the pair, i.e. total throughput under CAS contention.
    let contended = Arc::new(Circuits::shared(&path, 4096).unwrap());
    let policy = Arc::new(policy);
    group.throughput(Throughput::Elements(2));
    group.bench_function("shared/admit+done_2_threads_one_slot", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let other = {
                let (table, policy) = (Arc::clone(&contended), Arc::clone(&policy));
                let slot = slots[0];
                std::thread::spawn(move || {
                    for _ in 0..iters {
                        admit_done(&table, slot, &policy);
                    }
                })
            };
            for _ in 0..iters {
                admit_done(&contended, slots[0], &policy);
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
    targets = bench_circuit
}
criterion_main!(benches);
