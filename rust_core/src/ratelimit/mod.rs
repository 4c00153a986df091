//! Rate limiting for the *limit* phase: cost-weighted GCRA buckets keyed by string, in a
//! bounded table that every worker process of an instance can share.
//!
//! - [`gcra`]: the arithmetic ([`Rate`], [`Decision`]): one theoretical arrival time per key,
//!   `limit` units per period with a burst of `limit`; checks, refunds, peeks and charges (a
//!   forced take that may leave the bucket in bounded debt).
//! - [`table`]: the [`Limiter`], a fixed-capacity table of `key_hash -> TAT` slots updated with
//!   128-bit compare-and-swap; in process memory or in a shared file.
//! - [`headers`]: OpenAI's `x-ratelimit-*` headers from a request's decisions.
//! - `shm`: the shared file's layout and mapping (the crate's only `unsafe` code).
//!
//! Why not the `governor` crate: its GCRA keeps each key's state in process memory (a
//! `DashMap` of `AtomicU64` nanoseconds relative to a per-process clock start), its costs are
//! whole cells (`NonZeroU32`), and it has no refund or peek. Its arithmetic is the same one
//! used here; the parts this module adds (a shared, bounded, cross-process table; float costs;
//! refunds) are what it does not do.
//!
//! Example:
//! ```
//! use _core::ratelimit::Limiter;
//! let limiter = Limiter::in_memory(1024).unwrap();
//! let d = limiter.check("rpm:key:1", 2.0, 60.0, 1.0).unwrap();
//! assert!(d.allowed && d.remaining >= 1.0);
//! assert!(limiter.check("rpm:key:1", 2.0, 60.0, 1.0).unwrap().allowed);
//! assert!(!limiter.check("rpm:key:1", 2.0, 60.0, 1.0).unwrap().allowed);
//! ```

pub mod gcra;
pub mod headers;
pub(crate) mod shm;
pub mod table;

pub use gcra::{Decision, Rate, MAX_DEBT_PERIODS};
pub use table::{key_hash, now_ns, Limiter, GROUP};
