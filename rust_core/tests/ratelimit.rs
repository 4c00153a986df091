//! The rate limiter: GCRA invariants (proptest), the shared file table across mappings and
//! threads, and its layout checks.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use _core::error::LimitError;
use _core::ratelimit::{Limiter, Rate, MAX_DEBT_PERIODS};
use proptest::prelude::*;

const S: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * S;

fn temp_table(name: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("ferrogate-rl-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The token-bucket bound with the rounding slack: what may be admitted in a window of `w` ns.
fn bound(limit: f64, period_ns: u64, w: u64) -> f64 {
    let interval = period_ns as f64 / limit;
    let slack = limit.ceil().min((interval / 2.0).floor());
    limit + (w as f64 + slack) / interval + 1e-9
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Cost-1 requests at arbitrary times: in every window [t_i, t_j] the admitted count is at
    /// most `limit` plus what refilled during the window.
    #[test]
    fn cost_one_never_exceeds_the_bucket_bound(
        limit in 1u32..40,
        period_ms in 1u64..120_000,
        gaps in prop::collection::vec(prop_oneof![Just(0u64), 0u64..2_000_000_000], 1..300),
    ) {
        let limiter = Limiter::in_memory(64).unwrap();
        let rate = Rate::new(f64::from(limit), period_ms as f64 / 1e3).unwrap();
        let mut now = T0;
        let mut admitted = Vec::new();
        for gap in gaps {
            now += gap % (2 * rate.period_ns());
            if limiter.check_at("k", &rate, 1.0, now).unwrap().allowed {
                admitted.push(now);
            }
        }
        for i in 0..admitted.len() {
            for j in i..admitted.len() {
                let count = (j - i + 1) as f64;
                let allowed = bound(f64::from(limit), rate.period_ns(), admitted[j] - admitted[i]);
                prop_assert!(count <= allowed, "{count} admitted in {} ns, bound {allowed}", admitted[j] - admitted[i]);
            }
        }
    }

    /// From a full bucket, a burst at one instant admits exactly `limit` cost-1 requests.
    #[test]
    fn a_burst_admits_exactly_limit(limit in 1u32..5_000, period_s in 1.0f64..3600.0) {
        let limiter = Limiter::in_memory(16).unwrap();
        let rate = Rate::new(f64::from(limit), period_s).unwrap();
        let admitted = (0..limit + 10)
            .filter(|_| limiter.check_at("burst", &rate, 1.0, T0).unwrap().allowed)
            .count();
        prop_assert_eq!(admitted, limit as usize);
    }

    /// Checks and refunds of arbitrary costs: the bucket never holds more than `limit`, and net
    /// admitted cost (admitted minus refunded) never exceeds the bucket bound.
    #[test]
    fn refunds_never_give_back_more_than_taken(
        limit in 1.0f64..1e6,
        period_s in 0.001f64..100.0,
        ops in prop::collection::vec((0u8..3, 0.0f64..2.0, 0u64..100_000_000), 1..200),
    ) {
        let limiter = Limiter::in_memory(16).unwrap();
        let rate = Rate::new(limit, period_s).unwrap();
        let mut now = T0;
        let (mut taken, mut refunded) = (0.0f64, 0.0f64);
        for (op, fraction, gap) in ops {
            now += gap;
            let cost = fraction * limit / 2.0;
            match op {
                0 | 1 => {
                    let d = limiter.check_at("k", &rate, cost, now).unwrap();
                    prop_assert!(d.remaining >= 0.0 && d.remaining <= limit);
                    if d.allowed {
                        taken += cost;
                    } else {
                        prop_assert!(d.retry_after_s > 0.0);
                    }
                }
                _ => {
                    limiter.refund_at("k", &rate, cost, now).unwrap();
                    refunded += cost.min(taken - refunded).max(0.0);
                }
            }
            let (remaining, reset) = limiter.peek_at("k", &rate, now);
            prop_assert!((0.0..=limit).contains(&remaining), "remaining {remaining}");
            prop_assert!(reset >= 0.0);
            // Rounding each increment up by < 1 ns per operation is the only slack.
            let net = taken - refunded;
            let interval = rate.period_ns() as f64 / limit;
            prop_assert!(net <= bound(limit, rate.period_ns(), now - T0) + 200.0 / interval,
                "net {net} over the bound after {} ns", now - T0);
        }
    }
}

#[test]
fn retry_after_is_when_it_fits() {
    let limiter = Limiter::in_memory(16).unwrap();
    let rate = Rate::new(100.0, 60.0).unwrap();
    for _ in 0..100 {
        assert!(limiter.check_at("k", &rate, 1.0, T0).unwrap().allowed);
    }
    let d = limiter.check_at("k", &rate, 3.0, T0).unwrap();
    assert!(!d.allowed);
    assert!((d.retry_after_s - 1.8).abs() < 1e-6, "{d:?}");
    assert!((d.reset_s - 60.0).abs() < 1e-6, "{d:?}");
    let at = T0 + (d.retry_after_s * 1e9) as u64 + 1;
    assert!(
        !limiter
            .check_at("k", &rate, 3.0, at - 10_000)
            .unwrap()
            .allowed
    );
    assert!(limiter.check_at("k", &rate, 3.0, at).unwrap().allowed);
}

#[test]
fn shared_file_is_exact_across_mappings_and_threads() {
    let path = temp_table("threads");
    let admitted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (path, admitted) = (path.clone(), Arc::clone(&admitted));
            std::thread::spawn(move || {
                // Each thread maps the file itself, as a separate worker process would.
                let limiter = Limiter::shared(&path, 1024).unwrap();
                for _ in 0..20_000 {
                    if limiter.check("hot", 500.0, 3600.0, 1.0).unwrap().allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 500);
    let reopened = Limiter::shared(&path, 1024).unwrap();
    assert!(!reopened.check("hot", 500.0, 3600.0, 1.0).unwrap().allowed);
    assert_eq!(reopened.path(), Some(path.as_path()));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn shared_file_layout_is_checked() {
    let path = temp_table("layout");
    drop(Limiter::shared(&path, 64).unwrap());
    assert!(matches!(
        Limiter::shared(&path, 128),
        Err(LimitError::Layout { .. })
    ));
    std::fs::write(
        &path,
        b"not a table, just some bytes that are long enough to hold a header!",
    )
    .unwrap();
    assert!(matches!(
        Limiter::shared(&path, 64),
        Err(LimitError::Layout { .. })
    ));
    std::fs::remove_file(&path).unwrap();
    let missing_dir = std::env::temp_dir().join("ferrogate-no-such-dir/table");
    assert!(matches!(
        Limiter::shared(&missing_dir, 64),
        Err(LimitError::Io { .. })
    ));
}

#[test]
fn eviction_keeps_the_table_bounded() {
    let limiter = Limiter::in_memory(256).unwrap();
    let rate = Rate::new(10.0, 60.0).unwrap();
    for i in 0..10_000 {
        assert!(
            limiter
                .check_at(&format!("key{i}"), &rate, 1.0, T0)
                .unwrap()
                .allowed
        );
    }
    assert_eq!(limiter.occupancy(T0).0, 256);
    assert_eq!(limiter.capacity(), 256);
}

#[test]
fn a_charged_bucket_refuses_until_it_has_refilled() {
    let limiter = Limiter::in_memory(16).unwrap();
    let rate = Rate::new(100.0, 60.0).unwrap();
    // A stream reserved 60 and used 150: the 90 beyond are charged even though only 40 are left.
    assert!(limiter.check_at("tpm", &rate, 60.0, T0).unwrap().allowed);
    limiter.charge_at("tpm", &rate, 90.0, T0).unwrap();
    let (remaining, reset) = limiter.peek_at("tpm", &rate, T0);
    assert_eq!(remaining, 0.0);
    assert!((reset - 90.0).abs() < 1e-6, "{reset}");
    // 50 units of debt (30 s) plus the next unit (0.6 s) must refill before anything fits.
    let d = limiter.check_at("tpm", &rate, 1.0, T0).unwrap();
    assert!(!d.allowed && (d.retry_after_s - 30.6).abs() < 1e-6, "{d:?}");
    let fits = T0 + 30_600_000_000;
    assert!(
        !limiter
            .check_at("tpm", &rate, 1.0, fits - 1_000)
            .unwrap()
            .allowed
    );
    assert!(limiter.check_at("tpm", &rate, 1.0, fits).unwrap().allowed);
}

proptest! {
    /// Charges of any size never put a bucket more than `MAX_DEBT_PERIODS` periods in use, and
    /// a check right after a charge that went into debt is refused.
    #[test]
    fn charges_keep_the_debt_bounded(
        limit in 1.0f64..1e5,
        period_s in 0.01f64..100.0,
        charges in prop::collection::vec((0.0f64..10.0, 0u64..1_000_000_000), 1..50),
    ) {
        let limiter = Limiter::in_memory(16).unwrap();
        let rate = Rate::new(limit, period_s).unwrap();
        let cap = (MAX_DEBT_PERIODS * rate.period_ns()) as f64 / 1e9;
        let mut now = T0;
        for (fraction, gap) in charges {
            now += gap;
            limiter.charge_at("k", &rate, fraction * limit, now).unwrap();
            let (remaining, reset) = limiter.peek_at("k", &rate, now);
            prop_assert!(reset <= cap + 1e-9, "reset {reset} beyond {cap}");
            // Beyond the period plus the rounding slack (at most ceil(limit) ns): in debt.
            if reset * 1e9 > rate.period_ns() as f64 + limit.ceil() + 1.0 {
                prop_assert_eq!(remaining, 0.0);
                prop_assert!(!limiter.check_at("k", &rate, 0.01 * limit, now).unwrap().allowed);
            }
        }
    }
}
