//! The circuit breakers' transitions: consecutive failures and the error rate open a breaker,
//! the sliding window forgets, cool-downs double up to their cap or follow `Retry-After`,
//! half-open probes are bounded, remote trips only lengthen; EWMAs, the retry budget, the
//! in-flight reset and bad slots. Random sequences, threads and shared files: `circuit_props.rs`.
#![allow(missing_docs, clippy::unwrap_used)]

mod circuit_support;

use _core::circuit::{Admit, Attempt, Circuits, Policy, PolicySettings, State};
use _core::error::CircuitError;
use circuit_support::{attempt, policy, run, MS, S, T0};

#[test]
fn consecutive_failures_open_it() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| s.consecutive = 3);
    let slot = table.slot("openai/gpt-4o").unwrap();
    assert_eq!(run(&table, slot, &p, false, T0), (Admit::Closed, false));
    assert_eq!(run(&table, slot, &p, false, T0), (Admit::Closed, false));
    // a success resets the run
    assert_eq!(run(&table, slot, &p, true, T0), (Admit::Closed, false));
    assert_eq!(table.view_at(slot, T0).unwrap().consecutive_failures, 0);
    assert_eq!(run(&table, slot, &p, false, T0), (Admit::Closed, false));
    assert_eq!(run(&table, slot, &p, false, T0), (Admit::Closed, false));
    assert_eq!(run(&table, slot, &p, false, T0), (Admit::Closed, true));
    let v = table.view_at(slot, T0).unwrap();
    assert_eq!(
        (v.state, v.trips_in_a_row, v.consecutive_failures),
        (State::Open, 1, 3)
    );
    assert!((v.open_remaining_s - 5.0).abs() < 1e-9);
    assert_eq!(
        (v.last_status, v.last_failure_age_s),
        (Some(503), Some(0.0))
    );
    assert_eq!(table.admit_at(slot, &p, T0 + S).unwrap(), Admit::Skip);
    assert_eq!(table.view_at(slot, T0).unwrap().in_flight, 0);
}

#[test]
fn the_error_rate_opens_it_from_min_requests() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| {
        s.consecutive = 1000;
        s.min_requests = 10;
        s.error_rate = 0.5;
    });
    let slot = table.slot("a/m").unwrap();
    // alternate: 50% failures, but fewer than 10 attempts
    for i in 0..9 {
        assert!(!run(&table, slot, &p, i % 2 == 1, T0).1, "tripped at {i}");
    }
    let v = table.view_at(slot, T0).unwrap();
    assert_eq!((v.requests, v.state), (9, State::Closed));
    assert!((v.error_rate - 5.0 / 9.0).abs() < 1e-9);
    // a success as the 10th: nothing trips on a success
    assert!(!run(&table, slot, &p, true, T0).1);
    // the 11th fails: 6 of 11 failed, over the rate
    assert!(run(&table, slot, &p, false, T0).1);
    assert_eq!(table.view_at(slot, T0).unwrap().state, State::Open);
}

#[test]
fn failures_leave_the_sliding_window() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| {
        s.consecutive = 1000;
        s.min_requests = 4;
        s.error_rate = 0.5;
        s.window_s = 10.0;
    });
    let slot = table.slot("a/m").unwrap();
    for _ in 0..3 {
        run(&table, slot, &p, false, T0);
    }
    assert_eq!(table.view_at(slot, T0 + 9 * S).unwrap().requests, 3);
    // 10 s later the three failures are out of the window: 1 failure of 1 attempt, under min_requests
    let later = T0 + 10 * S;
    assert_eq!(table.view_at(slot, later).unwrap().requests, 0);
    assert!(!run(&table, slot, &p, false, later).1);
    assert_eq!(table.view_at(slot, later).unwrap().requests, 1);
    // within the window they count: the 4th attempt trips at 4 of 4 failed
    let table = Circuits::in_memory(16).unwrap();
    for _ in 0..3 {
        run(&table, slot, &p, false, T0);
    }
    assert!(run(&table, slot, &p, false, T0 + 8 * S).1);
}

#[test]
fn cooldowns_double_up_to_the_cap_and_a_success_resets_them() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| {
        s.consecutive = 1;
        s.cooldown_s = 1.0;
        s.cooldown_max_s = 5.0;
    });
    let slot = table.slot("a/m").unwrap();
    let mut now = T0;
    assert_eq!(run(&table, slot, &p, false, now), (Admit::Closed, true));
    let mut cooldowns = Vec::new();
    for _ in 0..4 {
        let remaining = table.view_at(slot, now).unwrap().open_remaining_s;
        cooldowns.push(remaining);
        // still open 1 ms before the end
        now += (remaining * 1e9) as u64 - MS;
        assert_eq!(table.admit_at(slot, &p, now).unwrap(), Admit::Skip);
        now += MS;
        assert_eq!(table.view_at(slot, now).unwrap().state, State::HalfOpen);
        // the probe fails: open again, for longer
        assert_eq!(run(&table, slot, &p, false, now), (Admit::Probe, true));
    }
    cooldowns.push(table.view_at(slot, now).unwrap().open_remaining_s);
    assert_eq!(cooldowns, [1.0, 2.0, 4.0, 5.0, 5.0]);
    assert_eq!(table.view_at(slot, now).unwrap().trips_in_a_row, 5);
    // a successful probe closes it and forgets the trips
    now += 5 * S;
    assert_eq!(run(&table, slot, &p, true, now), (Admit::Probe, false));
    let v = table.view_at(slot, now).unwrap();
    assert_eq!(
        (v.state, v.trips_in_a_row, v.requests),
        (State::Closed, 0, 0)
    );
    assert_eq!(run(&table, slot, &p, false, now), (Admit::Closed, true));
    assert_eq!(table.view_at(slot, now).unwrap().open_remaining_s, 1.0);
}

#[test]
fn retry_after_sets_the_cooldown_within_the_cap() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| {
        s.consecutive = 1;
        s.cooldown_s = 10.0;
        s.cooldown_max_s = 60.0;
    });
    for (retry_after, expected) in [(2.0, 2.0), (30.0, 30.0), (600.0, 60.0), (0.0, 10.0)] {
        let slot = table.slot(&format!("a/{retry_after}")).unwrap();
        table.admit_at(slot, &p, T0).unwrap();
        let a = Attempt {
            retry_after_s: retry_after,
            ..attempt(false, 429)
        };
        assert!(table.done_at(slot, &p, &a, T0).unwrap());
        assert_eq!(table.view_at(slot, T0).unwrap().open_remaining_s, expected);
    }
}

#[test]
fn half_open_lets_a_bounded_number_of_probes_through() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| {
        s.consecutive = 1;
        s.probes = 2;
    });
    let slot = table.slot("a/m").unwrap();
    run(&table, slot, &p, false, T0);
    let now = T0 + 5 * S;
    assert_eq!(table.admit_at(slot, &p, now).unwrap(), Admit::Probe);
    assert_eq!(table.admit_at(slot, &p, now).unwrap(), Admit::Probe);
    assert_eq!(table.admit_at(slot, &p, now).unwrap(), Admit::Skip);
    let v = table.view_at(slot, now).unwrap();
    assert_eq!((v.state, v.probes, v.in_flight), (State::HalfOpen, 2, 2));
    let probe = |ok| Attempt {
        probe: true,
        ..attempt(ok, if ok { 200 } else { 500 })
    };
    // one success closes it; the other probe's late failure is an ordinary failure (1 in a row: trips)
    assert!(!table.done_at(slot, &p, &probe(true), now).unwrap());
    assert_eq!(table.view_at(slot, now).unwrap().state, State::Closed);
    assert_eq!(table.admit_at(slot, &p, now).unwrap(), Admit::Closed);
    assert!(table.done_at(slot, &p, &probe(false), now).unwrap());
    assert!(!table.done_at(slot, &p, &attempt(true, 200), now).unwrap());
    let v = table.view_at(slot, now).unwrap();
    assert_eq!((v.state, v.in_flight, v.probes), (State::Open, 0, 0));
}

#[test]
fn a_probe_that_never_reports_frees_its_place_after_cooldown_max() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| {
        s.consecutive = 1;
        s.cooldown_s = 1.0;
        s.cooldown_max_s = 30.0;
    });
    let slot = table.slot("a/m").unwrap();
    run(&table, slot, &p, false, T0);
    let now = T0 + S;
    assert_eq!(table.admit_at(slot, &p, now).unwrap(), Admit::Probe); // its worker dies
    assert_eq!(table.admit_at(slot, &p, now + 29 * S).unwrap(), Admit::Skip);
    assert_eq!(
        table.admit_at(slot, &p, now + 30 * S).unwrap(),
        Admit::Probe
    );
}

#[test]
fn a_remote_trip_opens_it_and_only_lengthens_an_open_one() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| s.consecutive = 1);
    let slot = table.slot("a/m").unwrap();
    table.trip_at(slot, 20.0, T0).unwrap();
    let v = table.view_at(slot, T0).unwrap();
    assert_eq!(
        (v.state, v.open_remaining_s, v.trips_in_a_row),
        (State::Open, 20.0, 1)
    );
    table.trip_at(slot, 5.0, T0).unwrap();
    assert_eq!(table.view_at(slot, T0).unwrap().open_remaining_s, 20.0);
    table.trip_at(slot, 30.0, T0).unwrap();
    assert_eq!(table.view_at(slot, T0).unwrap().open_remaining_s, 30.0);
    assert_eq!(table.state_at(slot, T0 + 29 * S).unwrap(), State::Open);
    assert_eq!(table.state_at(slot, T0 + 30 * S).unwrap(), State::HalfOpen);
    table.trip_at(slot, f64::NAN, T0).unwrap();
    table.trip_at(slot, -1.0, T0).unwrap();
    assert_eq!(table.view_at(slot, T0).unwrap().open_remaining_s, 30.0);
    assert_eq!(table.admit_at(slot, &p, T0 + 29 * S).unwrap(), Admit::Skip);
    assert_eq!(table.admit_at(slot, &p, T0 + 30 * S).unwrap(), Admit::Probe);
}

#[test]
fn a_disabled_policy_counts_but_never_trips() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| {
        s.enabled = false;
        s.consecutive = 1;
    });
    let slot = table.slot("a/m").unwrap();
    for _ in 0..20 {
        assert_eq!(run(&table, slot, &p, false, T0), (Admit::Closed, false));
    }
    let v = table.view_at(slot, T0).unwrap();
    assert_eq!(
        (v.state, v.requests, v.consecutive_failures),
        (State::Closed, 20, 20)
    );
    assert_eq!(v.error_rate, 1.0);
}

#[test]
fn a_disabled_policy_still_holds_back_for_a_retry_after() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| s.enabled = false);
    let slot = table.slot("a/m").unwrap();
    table.trip_at(slot, 2.0, T0).unwrap(); // a provider's Retry-After: 2
    assert_eq!(table.admit_at(slot, &p, T0 + S).unwrap(), Admit::Skip);
    assert_eq!(table.view_at(slot, T0 + S).unwrap().in_flight, 0);
    assert_eq!(
        run(&table, slot, &p, true, T0 + 2 * S),
        (Admit::Closed, false)
    );
}

#[test]
fn ewmas_start_with_a_success_and_failures_only_raise_them() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| {
        s.latency_alpha = 0.5;
        s.consecutive = 1000;
        s.min_requests = 1000;
    });
    let slot = table.slot("a/m").unwrap();
    let with = |ok, latency_s, ttft_s| Attempt {
        latency_s,
        ttft_s,
        ..attempt(ok, if ok { 200 } else { 0 })
    };
    let ewmas = || {
        let v = table.view_at(slot, T0).unwrap();
        (v.latency_ewma_s, v.ttft_ewma_s)
    };
    assert_eq!(ewmas(), (None, None));
    for (a, expected) in [
        (with(false, 0.001, -1.0), (None, None)), // a refused connection starts nothing
        (with(true, 1.0, -1.0), (Some(1.0), None)),
        (with(true, 3.0, 0.4), (Some(2.0), Some(0.4))),
        (with(false, 0.01, -1.0), (Some(2.0), Some(0.4))), // a fast failure lowers nothing
        (with(false, 4.0, -1.0), (Some(3.0), Some(0.4))),  // a timeout raises it
        (with(true, 0.0, 0.2), (Some(1.5), Some(0.30000000000000004))),
    ] {
        table.admit_at(slot, &p, T0).unwrap();
        table.done_at(slot, &p, &a, T0).unwrap();
        assert_eq!(ewmas(), expected, "after {a:?}");
    }
}

#[test]
fn the_retry_budget_allows_a_share_of_requests_or_the_minimum() {
    let table = Circuits::in_memory(16).unwrap();
    let p = policy(|s| {
        s.retry_budget_pct = 10.0;
        s.retry_budget_min = 3;
        s.retry_budget_window_s = 10.0;
    });
    let slot = table.slot("a/m").unwrap();
    let retries = |now| {
        (0..100)
            .filter(|_| table.retry_allowed_at(slot, &p, now).unwrap())
            .count()
    };
    assert_eq!(retries(T0), 3);
    for _ in 0..100 {
        run(&table, slot, &p, true, T0 + S);
    }
    assert_eq!(retries(T0 + S), 7); // 10% of 100, 3 already taken
                                    // two windows later only the minimum again
    assert_eq!(retries(T0 + 25 * S), 3);
    let none = policy(|s| {
        s.retry_budget_pct = 0.0;
        s.retry_budget_min = 0;
    });
    assert!(!table.retry_allowed_at(slot, &none, T0 + 60 * S).unwrap());
}

#[test]
fn in_flight_counts_left_by_a_dead_worker_can_be_cleared() {
    let table = Circuits::in_memory(16).unwrap();
    let p = Policy::new(PolicySettings::default()).unwrap();
    let slot = table.slot("a/m").unwrap();
    for _ in 0..3 {
        table.admit_at(slot, &p, T0).unwrap(); // two of them by a worker that dies
    }
    table.clear_in_flight();
    assert_eq!(table.view_at(slot, T0).unwrap().in_flight, 0);
    // the live worker's attempt ends on 0, and later counts are right
    table.done_at(slot, &p, &attempt(true, 200), T0).unwrap();
    table.admit_at(slot, &p, T0).unwrap();
    let v = table.view_at(slot, T0).unwrap();
    assert_eq!((v.in_flight, v.requests), (1, 1));
}

#[test]
fn bad_slots_are_errors_not_panics() {
    let table = Circuits::in_memory(4).unwrap();
    let p = Policy::new(PolicySettings::default()).unwrap();
    assert!(matches!(
        table.admit_at(4, &p, T0),
        Err(CircuitError::BadSlot { slot: 4, .. })
    ));
    assert!(table.view(usize::MAX).is_err());
    assert!(table.done_at(9, &p, &attempt(true, 200), T0).is_err());
}
