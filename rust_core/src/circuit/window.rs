//! Counting over time with rings of epoch-tagged buckets: the breaker's sliding window of attempts
//! and failures, and the retry budget's requests and retries.
//!
//! A ring of `n` buckets each `width` ns wide holds epoch `e` (`now / width`) in bucket `e % n`.
//! A write to a bucket of an older epoch resets it first, in the same compare-and-swap, so stale
//! counts never leak into a new window and nothing needs sweeping. The window's totals are the
//! sum of the buckets no older than `n - 1` epochs: the last `(n - 1) * width` ns and the current
//! bucket so far (with 10 buckets, between 90% and 100% of `window_s`).
//!
//! The retry budget uses two buckets of `retry_budget_window_s` and the sliding estimate of
//! Cloudflare's rate limiter: the previous window's counts weighted by the share of it still
//! inside a window ending now, plus the current window's.

use std::sync::atomic::Ordering::SeqCst;

use portable_atomic::AtomicU128;

use super::cells::{update, Bucket};

/// The ring position of `epoch`.
fn index(ring: &[AtomicU128], epoch: u64) -> &AtomicU128 {
    &ring[(epoch % ring.len() as u64) as usize]
}

/// Adds `a` and `b` to the bucket of `epoch`, resetting it when it held an older epoch.
pub fn record(ring: &[AtomicU128], epoch: u64, a: u64, b: u64) {
    update(index(ring, epoch), |v| {
        let (a0, b0) = Bucket::unpack(v).at(epoch);
        Some(
            Bucket {
                epoch,
                a: a0.saturating_add(a),
                b: b0.saturating_add(b),
            }
            .pack(),
        )
    });
}

/// The sums of `a` and `b` over the buckets of the last `ring.len()` epochs up to `epoch`.
pub fn total(ring: &[AtomicU128], epoch: u64) -> (u64, u64) {
    let n = ring.len() as u64;
    ring.iter().fold((0, 0), |(a, b), cell| {
        let bucket = Bucket::unpack(cell.load(SeqCst));
        if Bucket::age(epoch, bucket.epoch) < n {
            (a.saturating_add(bucket.a), b.saturating_add(bucket.b))
        } else {
            (a, b)
        }
    })
}

/// Empties every bucket (the breaker closed: the failures that opened it are forgotten).
pub fn clear(ring: &[AtomicU128]) {
    for cell in ring {
        cell.store(0, SeqCst);
    }
}

/// The retry budget: `ring` of 2 buckets `width` ns wide, `(requests, retries)` each.
pub struct Budget<'a> {
    /// The two buckets.
    pub ring: &'a [AtomicU128],
    /// The window (ns, > 0).
    pub width: u64,
}

impl Budget<'_> {
    /// Counts one request at `now`.
    pub fn request(&self, now: u64) {
        record(self.ring, Bucket::epoch_of(now, self.width), 1, 0);
    }

    /// `(requests, retries)` over the window ending at `now` (the sliding estimate).
    pub fn estimate(&self, now: u64) -> (f64, f64) {
        let epoch = Bucket::epoch_of(now, self.width);
        let current = Bucket::unpack(index(self.ring, epoch).load(SeqCst)).at(epoch);
        self.blend(now, epoch, current)
    }

    fn blend(&self, now: u64, epoch: u64, (a, b): (u64, u64)) -> (f64, f64) {
        let before = epoch.wrapping_sub(1);
        let (pa, pb) = Bucket::unpack(index(self.ring, before).load(SeqCst)).at(before);
        let weight = 1.0 - (now % self.width) as f64 / self.width as f64;
        (pa as f64 * weight + a as f64, pb as f64 * weight + b as f64)
    }

    /// Whether one more retry fits at `now`: the window's retries stay under `min` or under
    /// `share` of its requests. Counts the retry when it does.
    pub fn retry(&self, now: u64, share: f64, min: u64) -> bool {
        let epoch = Bucket::epoch_of(now, self.width);
        let (_, swapped) = update(index(self.ring, epoch), |v| {
            let (a, b) = Bucket::unpack(v).at(epoch);
            let (requests, retries) = self.blend(now, epoch, (a, b));
            let allowed = retries < min as f64 || retries < share * requests;
            allowed.then(|| {
                Bucket {
                    epoch,
                    a,
                    b: b.saturating_add(1),
                }
                .pack()
            })
        });
        swapped.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> Vec<AtomicU128> {
        (0..n).map(|_| AtomicU128::new(0)).collect()
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let r = ring(10);
        record(&r, 100, 1, 1);
        record(&r, 105, 2, 0);
        assert_eq!(total(&r, 105), (3, 1));
        assert_eq!(total(&r, 109), (3, 1));
        assert_eq!(total(&r, 110), (2, 0));
        // epoch 110 reuses epoch 100's bucket: reset, not added to
        record(&r, 110, 1, 0);
        assert_eq!(total(&r, 110), (3, 0));
        assert_eq!(total(&r, 120), (0, 0));
        clear(&r);
        assert_eq!(total(&r, 110), (0, 0));
    }

    #[test]
    fn budget_allows_min_then_a_share() {
        let r = ring(2);
        let budget = Budget {
            ring: &r,
            width: 1_000,
        };
        let now = 10_000; // the start of a window
        for _ in 0..100 {
            budget.request(now);
        }
        let allowed = (0..50).filter(|_| budget.retry(now, 0.2, 5)).count();
        assert_eq!(allowed, 20);
        // half through the next window: half of the last one's counts still weigh
        assert_eq!(budget.estimate(now + 1_500), (50.0, 10.0));
        // nothing for two windows: only the minimum
        let later = now + 5_000;
        assert_eq!((0..10).filter(|_| budget.retry(later, 0.2, 3)).count(), 3);
    }
}
