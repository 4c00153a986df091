//! One deployment's slot: which of its 20 `AtomicU128` cells holds what, and how each packs.
//!
//! | cell | holds (low bits first) |
//! |---|---|
//! | [`KEY`] | the key's 128-bit hash (0: a free slot) |
//! | [`CONTROL`] | [`Control`]: open-until (ns) 64, state 8, trips in a row 8, probes in flight 16, generation 32 |
//! | [`FLIGHT`] | [`Flight`]: in flight 32, consecutive failures 32, last status + 1 32 (0: none) |
//! | [`EWMA`] | latency EWMA (f64 bits) 64, time-to-first-token EWMA (f64 bits) 64 (0: no sample) |
//! | [`FAILURE`] | the time of the last failure (ns; 0: none) |
//! | [`CONFIG`] | the window's bucket width (ns) the buckets were counted with |
//! | [`WINDOW`].. | [`BUCKETS`] [`Bucket`]s of the sliding window: epoch 40, attempts 44, failures 44 |
//! | [`BUDGET`].. | 2 [`Bucket`]s of the retry budget: epoch 40, requests 44, retries 44 |
//!
//! Two cells are spare (zero), for a later field without a layout change.

use std::sync::atomic::Ordering::SeqCst;

use portable_atomic::AtomicU128;

use crate::ratelimit::shm::{Layout, CELL_BYTES};

/// The key's hash (0: a free slot).
pub const KEY: usize = 0;
/// The breaker's state word ([`Control`]).
pub const CONTROL: usize = 1;
/// In-flight count, consecutive failures and last status ([`Flight`]).
pub const FLIGHT: usize = 2;
/// The latency and time-to-first-token EWMAs.
pub const EWMA: usize = 3;
/// The time of the last failure.
pub const FAILURE: usize = 4;
/// The bucket width of the window (what [`crate::circuit::Circuits::view`] reads the window with).
pub const CONFIG: usize = 5;
/// The first cell of the sliding window's ring of buckets.
pub const WINDOW: usize = 6;
/// Buckets in the sliding window (each `window_s / BUCKETS` wide).
pub const BUCKETS: usize = 10;
/// The first of the retry budget's two buckets (this window and the last).
pub const BUDGET: usize = WINDOW + BUCKETS;
/// Cells per slot.
pub const CELLS: usize = 20;

/// The circuit table file's layout: `b"FGCIRC\0\x01"`, version 1, 320-byte slots.
pub const LAYOUT: Layout = Layout {
    magic: u64::from_le_bytes(*b"FGCIRC\0\x01"),
    version: 1,
    slot_bytes: CELLS * CELL_BYTES,
    what: "circuit table",
};

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests flow; failures are counted.
    Closed = 0,
    /// No request is sent until the cool-down ends.
    Open = 1,
    /// A bounded number of probes is let through.
    HalfOpen = 2,
}

impl State {
    fn from_bits(bits: u8) -> Self {
        match bits {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }

    /// `closed`, `open` or `half_open`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The state word: what changes together in one compare-and-swap on every transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// Open: the end of the cool-down. Half-open: when probes that never reported are forgotten.
    pub open_until: u64,
    /// The state.
    pub state: State,
    /// Trips since the breaker last closed (the cool-down doubles with each).
    pub trips: u8,
    /// Half-open probes in flight.
    pub probes: u16,
    /// Bumped on every change of state.
    pub generation: u32,
}

impl Control {
    /// Unpacks a cell's value (unknown state bits read as closed).
    pub fn unpack(v: u128) -> Self {
        Self {
            open_until: v as u64,
            state: State::from_bits((v >> 64) as u8),
            trips: (v >> 72) as u8,
            probes: (v >> 80) as u16,
            generation: (v >> 96) as u32,
        }
    }

    /// Packs into a cell's value.
    pub fn pack(self) -> u128 {
        u128::from(self.open_until)
            | (u128::from(self.state as u8) << 64)
            | (u128::from(self.trips) << 72)
            | (u128::from(self.probes) << 80)
            | (u128::from(self.generation) << 96)
    }

    /// This word in `state`, one generation on, no probes, open until `open_until`.
    pub fn to(self, state: State, open_until: u64) -> Self {
        Self {
            open_until,
            state,
            probes: 0,
            generation: self.generation.wrapping_add(1),
            ..self
        }
    }
}

/// In-flight attempts, failures in a row and the last attempt's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flight {
    /// Attempts admitted and not done yet (every worker's).
    pub in_flight: u32,
    /// Attempts that failed in a row.
    pub consecutive: u32,
    /// The last status plus one (0: no attempt done yet).
    pub last_status: u32,
}

impl Flight {
    /// Unpacks a cell's value.
    pub fn unpack(v: u128) -> Self {
        Self {
            in_flight: v as u32,
            consecutive: (v >> 32) as u32,
            last_status: (v >> 64) as u32,
        }
    }

    /// Packs into a cell's value.
    pub fn pack(self) -> u128 {
        u128::from(self.in_flight)
            | (u128::from(self.consecutive) << 32)
            | (u128::from(self.last_status) << 64)
    }
}

/// Bits of a bucket's epoch (the bucket number since the Unix epoch, wrapped).
pub const EPOCH_BITS: u32 = 40;
/// Bits of each of a bucket's two counts (they saturate).
pub const COUNT_BITS: u32 = 44;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// One time bucket: two counts and the epoch they belong to (a bucket of another epoch is stale:
/// it counts zero and is reset by the next write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bucket {
    /// The bucket's epoch, wrapped to [`EPOCH_BITS`].
    pub epoch: u64,
    /// Attempts (the window) or requests (the retry budget).
    pub a: u64,
    /// Failures (the window) or retries (the retry budget).
    pub b: u64,
}

impl Bucket {
    /// The epoch number of time `now` for buckets `width` ns wide (`width > 0`), wrapped.
    pub fn epoch_of(now: u64, width: u64) -> u64 {
        (now / width.max(1)) & EPOCH_MASK
    }

    /// How many epochs `older` lies before `newer` (wrapping).
    pub fn age(newer: u64, older: u64) -> u64 {
        newer.wrapping_sub(older) & EPOCH_MASK
    }

    /// Unpacks a cell's value.
    pub fn unpack(v: u128) -> Self {
        Self {
            epoch: (v as u64) & EPOCH_MASK,
            a: ((v >> EPOCH_BITS) as u64) & COUNT_MAX,
            b: ((v >> (EPOCH_BITS + COUNT_BITS)) as u64) & COUNT_MAX,
        }
    }

    /// Packs into a cell's value (counts saturate at 2^44 - 1).
    pub fn pack(self) -> u128 {
        u128::from(self.epoch & EPOCH_MASK)
            | (u128::from(self.a.min(COUNT_MAX)) << EPOCH_BITS)
            | (u128::from(self.b.min(COUNT_MAX)) << (EPOCH_BITS + COUNT_BITS))
    }

    /// Its counts if it belongs to `epoch`, else zeros.
    pub fn at(self, epoch: u64) -> (u64, u64) {
        if self.epoch == epoch & EPOCH_MASK {
            (self.a, self.b)
        } else {
            (0, 0)
        }
    }
}

/// Replaces `cell`'s value with `f(value)` by compare-and-swap, retrying on contention, until
/// `f` returns `None` (no change wanted) or the swap succeeds. Returns `(old, new)` of the swap,
/// or `(value, None)`.
pub fn update(cell: &AtomicU128, f: impl Fn(u128) -> Option<u128>) -> (u128, Option<u128>) {
    let mut v = cell.load(SeqCst);
    loop {
        let Some(new) = f(v) else { return (v, None) };
        match cell.compare_exchange_weak(v, new, SeqCst, SeqCst) {
            Ok(_) => return (v, Some(new)),
            Err(current) => v = current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        let c = Control {
            open_until: u64::MAX - 3,
            state: State::HalfOpen,
            trips: 200,
            probes: 999,
            generation: u32::MAX,
        };
        assert_eq!(Control::unpack(c.pack()), c);
        let f = Flight {
            in_flight: 7,
            consecutive: u32::MAX,
            last_status: 504,
        };
        assert_eq!(Flight::unpack(f.pack()), f);
        let b = Bucket {
            epoch: 123_456_789,
            a: 3,
            b: COUNT_MAX,
        };
        assert_eq!(Bucket::unpack(b.pack()), b);
        let saturated = Bucket { a: u64::MAX, ..b };
        assert_eq!(Bucket::unpack(saturated.pack()).a, COUNT_MAX);
    }

    #[test]
    fn epochs_wrap_and_age() {
        assert_eq!(Bucket::epoch_of(10_000, 1_000), 10);
        assert_eq!(Bucket::age(2, EPOCH_MASK), 3);
        let b = Bucket {
            epoch: 5,
            a: 1,
            b: 2,
        };
        assert_eq!((b.at(5), b.at(6)), ((1, 2), (0, 0)));
    }

    #[test]
    fn a_zeroed_slot_is_closed_and_empty() {
        let c = Control::unpack(0);
        assert_eq!((c.state, c.trips, c.probes), (State::Closed, 0, 0));
        assert_eq!(Flight::unpack(0), Flight::default());
        assert_eq!(CELLS * CELL_BYTES, LAYOUT.slot_bytes);
        const { assert!(BUDGET + 2 <= CELLS) };
    }
}
