//! Circuit breakers for the *route* and *forward* phases: per deployment key, a breaker
//! (closed, open, half-open), attempts in flight, latency EWMAs and a retry budget, in a
//! bounded table that every worker process of an instance shares.
//!
//! - [`policy`]: [`Policy`], a model group's settings (`CircuitSettings`, the retry budget
//!   fields of `RetrySettings`, `latency_alpha`) checked once, in nanoseconds.
//! - [`table`]: [`Circuits`], the fixed-capacity table (process memory, or a file under
//!   `/dev/shm` mapped by every worker) and how a key finds its slot.
//! - [`breaker`]: the transitions and bookkeeping: [`Circuits::admit`], [`Circuits::done`],
//!   [`Circuits::retry_allowed`], [`Circuits::trip`].
//! - [`view`]: [`Circuits::view`], a deployment's health ([`View`]), and the in-flight reset.
//! - [`window`]: rings of epoch-tagged time buckets (the sliding window, the retry budget).
//! - [`cells`]: the slot's cells and how each packs into 128 bits.
//!
//! Every field is an `AtomicU128` cell updated lock-free by compare-and-swap (the mapping code
//! is the rate limiter's, [`crate::ratelimit`]'s `shm`), so the workers of an instance see one
//! state exactly, at once. Time is the wall clock in ns since the Unix epoch, which every
//! process shares; the `_at` methods take it as an argument (tests), the others read it.
//!
//! Example:
//! ```
//! use _core::circuit::{Admit, Attempt, Circuits, Policy, PolicySettings};
//! let table = Circuits::in_memory(64).unwrap();
//! let policy = Policy::new(PolicySettings { consecutive: 2, ..PolicySettings::default() }).unwrap();
//! let slot = table.slot("openai/gpt-4o").unwrap();
//! let failed = Attempt { ok: false, latency_s: 0.1, ttft_s: -1.0, retry_after_s: 0.0, probe: false, status: 500 };
//! let now = 1_700_000_000_000_000_000;
//! assert_eq!(table.admit_at(slot, &policy, now).unwrap(), Admit::Closed);
//! assert!(!table.done_at(slot, &policy, &failed, now).unwrap());
//! assert_eq!(table.admit_at(slot, &policy, now).unwrap(), Admit::Closed);
//! assert!(table.done_at(slot, &policy, &failed, now).unwrap()); // the second in a row trips it
//! assert_eq!(table.admit_at(slot, &policy, now).unwrap(), Admit::Skip);
//! ```

pub mod breaker;
pub mod cells;
pub mod policy;
pub mod table;
pub mod view;
pub mod window;

pub use breaker::{Admit, Attempt};
pub use cells::State;
pub use policy::{Policy, PolicySettings};
pub use table::{key_id, Circuits, MAX_CAPACITY};
pub use view::View;
