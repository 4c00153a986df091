//! [`Limiter`]: a fixed-capacity table of GCRA buckets keyed by string, in process memory or in
//! a shared file mapped by every worker process, updated lock-free with 128-bit CAS.
//!
//! **Slots.** Each slot is one `AtomicU128` holding `key_hash << 64 | tat_ns`; `0` is an empty
//! slot. Key and TAT change together in one compare-and-swap, so a decision can never land on a
//! slot that was meanwhile given to another key: the CAS fails and the decision is retried.
//! Keys are hashed with XXH3-64 and a fixed seed (stable across processes and runs; 0 is mapped
//! to 1). Two keys with the same 64-bit hash would share a bucket (odds ~n²/2⁶⁵).
//!
//! **Probing.** The table is split into groups of [`GROUP`] slots (256 bytes); a key lives in the
//! group its hash selects and nowhere else, so a lookup reads at most 16 slots.
//!
//! **Eviction.** A key not in its group is claimed with its first decision, in one CAS, on
//! the group's first empty slot, else on the slot with the **smallest TAT**: a slot whose TAT is
//! in the past is idle (its bucket is full, so forgetting it changes nothing), and the smallest
//! TAT is idle whenever any slot of the group is, so a key whose bucket is in use is evicted
//! only when all 16 are in use; it is then the one closest to full, and its key starts over
//! with a full bucket if it comes back (the documented cost of bounded memory).
//!
//! **Concurrent first use.** Two processes claiming slots for the same new key at once choose
//! the same victim unless the group changed between their scans; if they still end up in two
//! slots, whichever claimed last sees both and folds the later slot's use into the first one
//! (lookups always use the first), so no admitted cost is lost.

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{SystemTime, UNIX_EPOCH};

use portable_atomic::AtomicU128;

use super::gcra::{Decision, Rate};
use super::shm::SharedSlots;
use crate::error::LimitError;

/// Slots per group: the bound on probing.
pub const GROUP: usize = 16;
/// The largest capacity accepted (4 GiB of slots).
pub const MAX_CAPACITY: usize = 1 << 28;
/// The fixed seed of the key hash (changing it is a table layout change).
const SEED: u64 = 0x6665_7272_6f67_6174; // "ferrogat"

/// The stable 64-bit hash of a key as stored in the table (never 0).
pub fn key_hash(key: &str) -> u64 {
    match xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), SEED) {
        0 => 1,
        h => h,
    }
}

/// Wall-clock nanoseconds since the Unix epoch: the clock every process (and Redis `TIME`)
/// shares. A step backwards makes limits stricter for its length; a step forwards refills.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn pack(key: u64, tat: u64) -> u128 {
    (u128::from(key) << 64) | u128::from(tat)
}

fn key_of(slot: u128) -> u64 {
    (slot >> 64) as u64
}

fn tat_of(slot: u128) -> u64 {
    slot as u64
}

#[derive(Debug)]
enum Storage {
    Local(Box<[AtomicU128]>),
    Shared(SharedSlots),
}

/// A rate limiter: GCRA buckets for any number of string keys in a bounded table.
///
/// Each call passes its own `limit` and `period_s`, so one table serves requests per minute
/// (cost 1) and tokens per minute (cost = tokens) for keys, users, teams and deployments; the
/// caller makes keys distinct (e.g. `"rpm:key:<id>"`). All methods take `&self` and are safe to
/// call from many threads and, for a shared table, many processes.
#[derive(Debug)]
pub struct Limiter {
    storage: Storage,
}

impl Limiter {
    /// A table in this process's memory (tests, single-process use). `capacity` is rounded up to
    /// a multiple of [`GROUP`].
    pub fn in_memory(capacity: usize) -> Result<Self, LimitError> {
        let capacity = rounded_capacity(capacity)?;
        let slots = (0..capacity).map(|_| AtomicU128::new(0)).collect();
        Ok(Self {
            storage: Storage::Local(slots),
        })
    }

    /// The table in the shared file at `path` (created by the first process, e.g. under
    /// `/dev/shm`); every process that opens the same file shares the buckets exactly.
    pub fn shared(path: &Path, capacity: usize) -> Result<Self, LimitError> {
        let capacity = rounded_capacity(capacity)?;
        Ok(Self {
            storage: Storage::Shared(SharedSlots::open(path, capacity)?),
        })
    }

    fn slots(&self) -> &[AtomicU128] {
        match &self.storage {
            Storage::Local(slots) => slots,
            Storage::Shared(shared) => shared.slots(),
        }
    }

    /// The number of slots (the most keys held at once).
    pub fn capacity(&self) -> usize {
        self.slots().len()
    }

    /// The shared file's path (`None` for an in-memory table).
    pub fn path(&self) -> Option<&Path> {
        match &self.storage {
            Storage::Local(_) => None,
            Storage::Shared(shared) => Some(shared.path()),
        }
    }

    /// `(slots holding a key, slots whose bucket is in use at now)`.
    pub fn occupancy(&self, now: u64) -> (usize, usize) {
        self.slots().iter().fold((0, 0), |(held, busy), slot| {
            let v = slot.load(SeqCst);
            (
                held + usize::from(key_of(v) != 0),
                busy + usize::from(key_of(v) != 0 && tat_of(v) > now),
            )
        })
    }

    /// Decides a request of `cost` units for `key` against `limit` per `period_s`, consuming
    /// the cost when admitted. Runs in the limit phase; returns the [`Decision`].
    pub fn check(
        &self,
        key: &str,
        limit: f64,
        period_s: f64,
        cost: f64,
    ) -> Result<Decision, LimitError> {
        self.check_at(key, &Rate::new(limit, period_s)?, cost, now_ns())
    }

    /// [`Limiter::check`] at an explicit time `now` (ns since the epoch).
    pub fn check_at(
        &self,
        key: &str,
        rate: &Rate,
        cost: f64,
        now: u64,
    ) -> Result<Decision, LimitError> {
        let cost_ns = rate.cost_ns(cost)?;
        Ok(self.update(key_hash(key), now, true, |tat| {
            rate.check(tat, now, cost_ns)
        }))
    }

    /// Takes `checks` (`(key, limit, cost)` each, per `period_s`) all or none, in order, at one
    /// instant: the limit phase's chain of buckets. Returns each decision up to and including the
    /// first refusal; on a refusal, or an invalid limit or cost, what the earlier checks took is
    /// given back.
    pub fn take_all<'k>(
        &self,
        checks: impl IntoIterator<Item = (&'k str, f64, f64)>,
        period_s: f64,
    ) -> Result<Vec<Decision>, LimitError> {
        let now = now_ns();
        let mut taken: Vec<(&'k str, Rate, f64)> = Vec::new();
        let mut decisions = Vec::new();
        for (key, limit, cost) in checks {
            let decided = Rate::new(limit, period_s)
                .and_then(|rate| Ok((self.check_at(key, &rate, cost, now)?, rate)));
            let refused = match &decided {
                Ok((d, _)) => !d.allowed,
                Err(_) => true,
            };
            if refused {
                for (done, rate, cost) in &taken {
                    self.refund_at(done, rate, *cost, now)?;
                }
            }
            let (d, rate) = decided?;
            decisions.push(d);
            if !d.allowed {
                break;
            }
            taken.push((key, rate, cost));
        }
        Ok(decisions)
    }

    /// Gives `cost` units back to `key` (settling a reservation with the real usage, in the
    /// account phase). The bucket never becomes more than full; an unknown key is a no-op.
    pub fn refund(
        &self,
        key: &str,
        limit: f64,
        period_s: f64,
        cost: f64,
    ) -> Result<(), LimitError> {
        self.refund_at(key, &Rate::new(limit, period_s)?, cost, now_ns())
    }

    /// [`Limiter::refund`] at an explicit time `now`.
    pub fn refund_at(&self, key: &str, rate: &Rate, cost: f64, now: u64) -> Result<(), LimitError> {
        self.settle_at(key, rate, cost, now, false)
    }

    /// Consumes `cost` units of `key` whether or not they fit (the account phase charging what
    /// a request used beyond its reservation): the bucket may go into debt, up to
    /// [`MAX_DEBT_PERIODS`](super::gcra::MAX_DEBT_PERIODS) periods ahead (see [`Rate::charge`]).
    pub fn charge(
        &self,
        key: &str,
        limit: f64,
        period_s: f64,
        cost: f64,
    ) -> Result<(), LimitError> {
        self.charge_at(key, &Rate::new(limit, period_s)?, cost, now_ns())
    }

    /// [`Limiter::charge`] at an explicit time `now`.
    pub fn charge_at(&self, key: &str, rate: &Rate, cost: f64, now: u64) -> Result<(), LimitError> {
        self.settle_at(key, rate, cost, now, true)
    }

    /// Refunds (`charge == false`) or charges `cost` units of `key` at `now`; charging creates the
    /// bucket of an unknown key (it may go into debt), refunding one is a no-op.
    fn settle_at(
        &self,
        key: &str,
        rate: &Rate,
        cost: f64,
        now: u64,
        charge: bool,
    ) -> Result<(), LimitError> {
        let cost_ns = rate.cost_ns(cost)?;
        self.update(key_hash(key), now, charge, |tat| {
            let new = if charge {
                rate.charge(tat, now, cost_ns)
            } else {
                rate.refund(tat, now, cost_ns)
            };
            (new, ())
        });
        Ok(())
    }

    /// `(remaining, reset_s)` of `key` without consuming (for response headers).
    pub fn peek(&self, key: &str, limit: f64, period_s: f64) -> Result<(f64, f64), LimitError> {
        Ok(self.peek_at(key, &Rate::new(limit, period_s)?, now_ns()))
    }

    /// [`Limiter::peek`] at an explicit time `now`.
    pub fn peek_at(&self, key: &str, rate: &Rate, now: u64) -> (f64, f64) {
        self.update(key_hash(key), now, false, |tat| (None, rate.peek(tat, now)))
    }

    fn group(&self, h: u64) -> &[AtomicU128] {
        let slots = self.slots();
        let groups = slots.len() / GROUP;
        // Lemire's multiply-shift: uniform over the groups without a division.
        let g = ((u128::from(h) * groups as u128) >> 64) as usize;
        &slots[g * GROUP..(g + 1) * GROUP]
    }

    /// Runs `op` on the TAT of `h` (0 when absent: a full bucket) and stores the TAT it returns
    /// with one CAS, retrying on contention. Absent keys are claimed (on the first empty slot,
    /// else the smallest TAT) only when `create` and `op` returned a TAT to store.
    fn update<R>(&self, h: u64, now: u64, create: bool, op: impl Fn(u64) -> (Option<u64>, R)) -> R {
        let group = self.group(h);
        loop {
            let mut found = None;
            let mut victim: Option<(usize, u128)> = None;
            for (i, slot) in group.iter().enumerate() {
                let v = slot.load(SeqCst);
                if key_of(v) == h {
                    found = Some((i, v));
                    break;
                }
                match victim {
                    Some((_, 0)) => {}
                    Some((_, w)) if v != 0 && tat_of(v) >= tat_of(w) => {}
                    _ => victim = Some((i, v)),
                }
            }
            if let Some((i, v)) = found {
                let (new, result) = op(tat_of(v));
                let Some(tat) = new else { return result };
                if group[i]
                    .compare_exchange(v, pack(h, tat), SeqCst, SeqCst)
                    .is_ok()
                {
                    return result;
                }
                continue;
            }
            let (new, result) = op(0);
            let (Some(tat), true, Some((j, w))) = (new, create, victim) else {
                return result;
            };
            if group[j]
                .compare_exchange(w, pack(h, tat), SeqCst, SeqCst)
                .is_ok()
            {
                merge_duplicates(group, h, now);
                return result;
            }
        }
    }
}

/// After a claim: if `h` holds more than one slot of `group` (two processes claimed at once),
/// frees every slot but the first and adds its bucket use to the first.
fn merge_duplicates(group: &[AtomicU128], h: u64, now: u64) {
    let mut first = None;
    for (i, slot) in group.iter().enumerate() {
        let mut v = slot.load(SeqCst);
        if key_of(v) != h {
            continue;
        }
        let Some(first) = first else {
            first = Some(i);
            continue;
        };
        while key_of(v) == h {
            match slot.compare_exchange(v, 0, SeqCst, SeqCst) {
                Ok(_) => {
                    add_use(&group[first], h, tat_of(v).saturating_sub(now), now);
                    break;
                }
                Err(current) => v = current,
            }
        }
    }
}

/// Adds `used_ns` of bucket use to the slot of `h` (if it still holds `h`).
fn add_use(slot: &AtomicU128, h: u64, used_ns: u64, now: u64) {
    if used_ns == 0 {
        return;
    }
    let mut v = slot.load(SeqCst);
    while key_of(v) == h {
        let tat = tat_of(v).max(now).saturating_add(used_ns);
        match slot.compare_exchange(v, pack(h, tat), SeqCst, SeqCst) {
            Ok(_) => return,
            Err(current) => v = current,
        }
    }
}

fn rounded_capacity(capacity: usize) -> Result<usize, LimitError> {
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(LimitError::InvalidCapacity(capacity));
    }
    Ok(capacity.div_ceil(GROUP) * GROUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn keys_are_independent() {
        let limiter = Limiter::in_memory(64).unwrap();
        let rate = Rate::new(2.0, 60.0).unwrap();
        for key in ["a", "b"] {
            assert!(limiter.check_at(key, &rate, 1.0, S).unwrap().allowed);
            assert!(limiter.check_at(key, &rate, 1.0, S).unwrap().allowed);
            assert!(!limiter.check_at(key, &rate, 1.0, S).unwrap().allowed);
        }
        assert_eq!(limiter.occupancy(S), (2, 2));
    }

    #[test]
    fn take_all_is_all_or_none() {
        let limiter = Limiter::in_memory(64).unwrap();
        let full = |key: &str| limiter.peek(key, 10.0, 60.0).unwrap().0;
        // the second bucket refuses: the first gets its unit back
        let d = limiter
            .take_all([("a", 10.0, 1.0), ("b", 5.0, 6.0)], 60.0)
            .unwrap();
        assert_eq!((d.len(), d[0].allowed, d[1].allowed), (2, true, false));
        assert!(full("a") > 9.99);
        // an invalid limit on the second bucket: an error, and the first is given back too
        assert!(limiter
            .take_all([("a", 10.0, 1.0), ("c", -1.0, 1.0)], 60.0)
            .is_err());
        assert!(full("a") > 9.99);
        // all fit: every bucket is taken
        let d = limiter
            .take_all([("a", 10.0, 1.0), ("b", 5.0, 2.0)], 60.0)
            .unwrap();
        assert!(d.iter().all(|d| d.allowed));
        assert!(full("a") < 9.01);
    }

    #[test]
    fn capacity_is_rounded_and_bounded() {
        assert_eq!(Limiter::in_memory(1).unwrap().capacity(), GROUP);
        assert_eq!(Limiter::in_memory(17).unwrap().capacity(), 2 * GROUP);
        assert!(Limiter::in_memory(0).is_err());
        assert!(Limiter::in_memory(MAX_CAPACITY + 1).is_err());
    }

    #[test]
    fn idle_slots_are_evicted_before_busy_ones() {
        // One group: 15 busy keys for a minute, one idle after 1 ms.
        let limiter = Limiter::in_memory(GROUP).unwrap();
        let slow = Rate::new(10.0, 60.0).unwrap();
        let fast = Rate::new(1000.0, 1.0).unwrap();
        for i in 0..15 {
            assert!(
                limiter
                    .check_at(&format!("busy{i}"), &slow, 5.0, S)
                    .unwrap()
                    .allowed
            );
        }
        assert!(limiter.check_at("idle", &fast, 1.0, S).unwrap().allowed);
        assert_eq!(limiter.occupancy(S), (16, 16));
        let later = S + S / 100;
        assert!(limiter.check_at("new", &slow, 5.0, later).unwrap().allowed);
        // Every busy key kept its state: 5 more fit, the sixth does not.
        for i in 0..15 {
            let key = format!("busy{i}");
            assert!(limiter.check_at(&key, &slow, 5.0, later).unwrap().allowed);
            assert!(!limiter.check_at(&key, &slow, 1.0, later).unwrap().allowed);
        }
        // Full of busy keys: a newcomer evicts the one closest to full, memory stays bounded.
        assert!(
            limiter
                .check_at("newer", &slow, 1.0, later)
                .unwrap()
                .allowed
        );
        assert_eq!(limiter.occupancy(later).0, GROUP);
    }

    #[test]
    fn refund_and_peek_do_not_claim() {
        let limiter = Limiter::in_memory(16).unwrap();
        let rate = Rate::new(10.0, 1.0).unwrap();
        limiter.refund_at("x", &rate, 3.0, S).unwrap();
        assert_eq!(limiter.peek_at("x", &rate, S), (10.0, 0.0));
        assert_eq!(limiter.occupancy(S), (0, 0));
        assert!(limiter.check_at("x", &rate, 10.0, S).unwrap().allowed);
        limiter.refund_at("x", &rate, 4.0, S).unwrap();
        let (remaining, reset) = limiter.peek_at("x", &rate, S);
        assert!((remaining - 4.0).abs() < 1e-6 && (reset - 0.6).abs() < 1e-6);
    }

    #[test]
    fn charge_claims_a_slot_and_puts_the_bucket_in_debt() {
        let limiter = Limiter::in_memory(16).unwrap();
        let rate = Rate::new(10.0, 1.0).unwrap();
        limiter.charge_at("x", &rate, 12.0, S).unwrap();
        assert_eq!(limiter.occupancy(S), (1, 1));
        assert_eq!(limiter.peek_at("x", &rate, S), (0.0, 1.2));
        assert!(!limiter.check_at("x", &rate, 1.0, S).unwrap().allowed);
        // Refilled past the debt (0.2 s) plus one interval (0.1 s): one unit fits.
        let later = S + 3 * S / 10;
        assert!(limiter.check_at("x", &rate, 1.0, later).unwrap().allowed);
        assert!(!limiter.check_at("x", &rate, 1.0, later).unwrap().allowed);
    }

    #[test]
    fn duplicates_are_merged_into_the_first_slot() {
        let limiter = Limiter::in_memory(16).unwrap();
        let h = key_hash("k");
        let group = limiter.group(h);
        group[3].store(pack(h, S + 100), SeqCst);
        group[7].store(pack(h, S + 50), SeqCst);
        merge_duplicates(group, h, S);
        assert_eq!(group[3].load(SeqCst), pack(h, S + 150));
        assert_eq!(group[7].load(SeqCst), 0);
    }

    #[test]
    fn hash_is_stable() {
        // A changed hash would silently split buckets between builds sharing one file.
        assert_eq!(key_hash(""), key_hash(""));
        assert_ne!(key_hash("a"), key_hash("b"));
        assert_ne!(key_hash("a"), 0);
        // Pinned: every process sharing a file must agree on it (a change needs a new VERSION).
        assert_eq!(key_hash("rpm:key:1"), 0x97ce_4309_38cb_b93b);
    }
}
