//! The circuit breakers' table under random sequences (a proptest of the counts), threads on
//! one slot, and the shared file: two mappings see one state, a file of another layout or
//! capacity is refused.
#![allow(missing_docs, clippy::unwrap_used)]

mod circuit_support;

use std::sync::Arc;

use _core::circuit::{Admit, Attempt, Circuits, State};
use _core::error::CircuitError;
use _core::ratelimit::Limiter;
use circuit_support::{attempt, policy, run, temp_table, MS, T0};
use proptest::prelude::*;

#[test]
fn two_mappings_of_one_file_share_every_slot() {
    let path = temp_table("two");
    let a = Circuits::shared(&path, 64).unwrap();
    let b = Circuits::shared(&path, 64).unwrap();
    let p = policy(|s| s.consecutive = 2);
    let slot = a.slot("openai/gpt-4o").unwrap();
    assert_eq!(b.slot("openai/gpt-4o").unwrap(), slot);
    assert_eq!(a.admit_at(slot, &p, T0).unwrap(), Admit::Closed);
    assert_eq!(b.view_at(slot, T0).unwrap().in_flight, 1);
    assert!(!a.done_at(slot, &p, &attempt(false, 500), T0).unwrap());
    assert_eq!(run(&b, slot, &p, false, T0), (Admit::Closed, true));
    assert_eq!(a.view_at(slot, T0).unwrap().state, State::Open);
    assert_eq!(a.admit_at(slot, &p, T0).unwrap(), Admit::Skip);
    assert_eq!(a.path(), Some(path.as_path()));
    // a third mapping after the others were dropped still sees the state (the file keeps it)
    drop((a, b));
    let c = Circuits::shared(&path, 64).unwrap();
    assert_eq!(c.view_at(slot, T0).unwrap().state, State::Open);
    assert_eq!(c.occupancy(), 1);
    drop(c);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_file_of_another_layout_or_capacity_is_refused() {
    let path = temp_table("layout");
    drop(Circuits::shared(&path, 64).unwrap());
    let err = Circuits::shared(&path, 128).unwrap_err();
    assert!(
        err.to_string().contains("capacity 64 slots, asked for 128"),
        "{err}"
    );
    let limits = temp_table("limiter-file");
    drop(Limiter::shared(&limits, 64).unwrap());
    let err = Circuits::shared(&limits, 64).unwrap_err();
    assert!(matches!(err, CircuitError::Table(_)));
    assert!(
        err.to_string().contains("not a ferrogate circuit table"),
        "{err}"
    );
    // and the limiter refuses a circuit table
    assert!(Limiter::shared(&path, 64)
        .unwrap_err()
        .to_string()
        .contains("bad magic"));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&limits);
}

#[derive(Debug, Clone)]
enum Op {
    Admit,
    Done { ok: bool, retry_after: u8 },
    Trip(u8),
    Retry,
    Wait(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Admit),
        3 => (any::<bool>(), 0u8..4).prop_map(|(ok, retry_after)| Op::Done { ok, retry_after }),
        1 => (0u8..20).prop_map(Op::Trip),
        1 => Just(Op::Retry),
        2 => (0u16..5000).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random admits, dones (of admitted attempts, oldest first), remote trips, retries and
    /// waits: in flight always equals admitted minus done (never negative), probes never exceed
    /// the bound, window failures never exceed attempts nor attempts what was done, and a
    /// closed breaker never skips.
    #[test]
    fn counts_stay_consistent(
        probes in 1u32..4,
        consecutive in 1u32..5,
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let table = Circuits::in_memory(16).unwrap();
        let p = policy(|s| {
            s.probes = probes;
            s.consecutive = consecutive;
            s.min_requests = 3;
            s.window_s = 2.0;
            s.cooldown_s = 0.5;
            s.cooldown_max_s = 4.0;
        });
        let slot = table.slot("p/m").unwrap();
        let mut now = T0;
        let mut open: std::collections::VecDeque<bool> = Default::default(); // probe flags in flight
        let mut done = 0u64;
        for op in ops {
            let before = table.view_at(slot, now).unwrap().state;
            match op {
                Op::Admit => match table.admit_at(slot, &p, now).unwrap() {
                    Admit::Closed => open.push_back(false),
                    Admit::Probe => {
                        prop_assert_eq!(before, State::HalfOpen);
                        open.push_back(true);
                    }
                    Admit::Skip => prop_assert_ne!(before, State::Closed),
                },
                Op::Done { ok, retry_after } => {
                    if let Some(probe) = open.pop_front() {
                        let a = Attempt {
                            probe,
                            retry_after_s: f64::from(retry_after),
                            ..attempt(ok, 500)
                        };
                        let tripped = table.done_at(slot, &p, &a, now).unwrap();
                        if tripped {
                            prop_assert!(!ok);
                            prop_assert_eq!(table.view_at(slot, now).unwrap().state, State::Open);
                        }
                        done += 1;
                    }
                }
                Op::Trip(s) => table.trip_at(slot, f64::from(s) / 4.0, now).unwrap(),
                Op::Retry => { table.retry_allowed_at(slot, &p, now).unwrap(); }
                Op::Wait(ms) => now += u64::from(ms) * MS,
            }
            let v = table.view_at(slot, now).unwrap();
            prop_assert_eq!(v.in_flight as usize, open.len());
            prop_assert!(v.probes <= probes);
            prop_assert!(v.requests <= done);
            prop_assert!(v.error_rate <= 1.0 && v.error_rate >= 0.0);
            prop_assert!(v.open_remaining_s <= 20.0);
        }
        while let Some(probe) = open.pop_front() {
            table.done_at(slot, &p, &Attempt { probe, ..attempt(true, 200) }, now).unwrap();
        }
        prop_assert_eq!(table.view_at(slot, now).unwrap().in_flight, 0);
    }
}

#[test]
fn threads_hammering_one_slot_lose_no_count() {
    let path = temp_table("threads");
    let table = Arc::new(Circuits::shared(&path, 64).unwrap());
    let p = Arc::new(policy(|s| {
        s.enabled = false; // every attempt admitted: the counts are exact
        s.window_s = 3600.0;
    }));
    let slot = table.slot("hot/m").unwrap();
    let threads = 4;
    let per_thread = 5_000u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            // each thread maps the file itself, as a worker process would
            let mine = Circuits::shared(&path, 64).unwrap();
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                let mut retries = 0u64;
                for i in 0..per_thread {
                    assert_eq!(mine.admit_at(slot, &p, T0).unwrap(), Admit::Closed);
                    let ok = (i + t) % 4 != 0;
                    mine.done_at(slot, &p, &attempt(ok, 200), T0).unwrap();
                    retries += u64::from(mine.retry_allowed_at(slot, &p, T0).unwrap());
                }
                retries
            })
        })
        .collect();
    let retries: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let v = table.view_at(slot, T0).unwrap();
    assert_eq!(v.in_flight, 0);
    assert_eq!(v.requests, threads * per_thread);
    assert!((v.error_rate - 0.25).abs() < 1e-9);
    // the budget (20% of the requests, all in one window) is never exceeded though four threads
    // raced for it, and what is left of it is still granted
    let total = threads * per_thread / 5;
    assert!(
        retries <= total && retries > total - 100,
        "{retries} of {total}"
    );
    let more = (0..100_000)
        .filter(|_| table.retry_allowed_at(slot, &p, T0).unwrap())
        .count();
    assert_eq!(retries + more as u64, total);
    drop(table);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn threads_racing_to_trip_trip_it_once() {
    let table = Arc::new(Circuits::in_memory(16).unwrap());
    let p = Arc::new(policy(|s| s.consecutive = 1));
    let slot = table.slot("race/m").unwrap();
    let trips: usize = (0..4)
        .map(|_| {
            let (table, p) = (Arc::clone(&table), Arc::clone(&p));
            std::thread::spawn(move || {
                (0..1000)
                    .filter(|_| {
                        table.admit_at(slot, &p, T0).unwrap() != Admit::Skip
                            && table.done_at(slot, &p, &attempt(false, 500), T0).unwrap()
                    })
                    .count()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(trips, 1);
    let v = table.view_at(slot, T0).unwrap();
    assert_eq!(
        (v.state, v.trips_in_a_row, v.in_flight),
        (State::Open, 1, 0)
    );
}
