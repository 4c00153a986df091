//! Shared by the circuit tests: times, a policy built from the defaults, attempts, and one
//! admitted-and-ended attempt.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use _core::circuit::{Admit, Attempt, Circuits, Policy, PolicySettings};

pub const S: u64 = 1_000_000_000;
pub const MS: u64 = 1_000_000;
pub const T0: u64 = 1_700_000_000 * S;

pub fn temp_table(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "ferrogate-circuit-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

pub fn policy(f: impl FnOnce(&mut PolicySettings)) -> Policy {
    let mut settings = PolicySettings::default();
    f(&mut settings);
    Policy::new(settings).unwrap()
}

pub fn attempt(ok: bool, status: u16) -> Attempt {
    Attempt {
        ok,
        latency_s: 0.05,
        ttft_s: -1.0,
        retry_after_s: 0.0,
        probe: false,
        status,
    }
}

/// Admits and ends one attempt at `now`; what admit said and whether done tripped.
pub fn run(table: &Circuits, slot: usize, p: &Policy, ok: bool, now: u64) -> (Admit, bool) {
    let admit = table.admit_at(slot, p, now).unwrap();
    if admit == Admit::Skip {
        return (admit, false);
    }
    let a = Attempt {
        probe: admit == Admit::Probe,
        ..attempt(ok, if ok { 200 } else { 503 })
    };
    (admit, table.done_at(slot, p, &a, now).unwrap())
}
