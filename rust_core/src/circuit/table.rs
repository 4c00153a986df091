//! [`Circuits`]: the fixed-capacity table of per-deployment slots, in process memory or in a
//! shared file every worker process maps, and how a deployment key finds its slot.
//!
//! **Slots.** A key's slot is found by linear probing from the position its 128-bit XXH3 hash
//! selects (a fixed seed: stable across processes and runs); a free slot (hash 0) on the way is
//! claimed with one compare-and-swap of its key cell, so two processes claiming the same new key
//! at once end up in the same slot. Slots are never given back: callers keep slot numbers (the
//! Python router looks each deployment key up once per configuration), so a slot reused for
//! another key would mix two deployments' health. The table therefore holds at most `capacity`
//! distinct keys over the life of its file (deployments: few; 4096 by default), and
//! [`Circuits::slot`] fails with [`CircuitError::Full`] beyond that.

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;

use portable_atomic::AtomicU128;

use super::cells::{CELLS, KEY, LAYOUT};
use crate::error::CircuitError;
use crate::ratelimit::shm::SharedSlots;

/// The largest capacity accepted (320 MiB of slots).
pub const MAX_CAPACITY: usize = 1 << 20;
/// The fixed seed of the key hash (changing it is a layout change).
const SEED: u64 = 0x6369_7263_7569_7473; // "circuits"

/// The stable 128-bit hash of a deployment key as stored in its slot (never 0).
pub fn key_id(key: &str) -> u128 {
    match xxhash_rust::xxh3::xxh3_128_with_seed(key.as_bytes(), SEED) {
        0 => 1,
        h => h,
    }
}

#[derive(Debug)]
enum Storage {
    Local(Box<[AtomicU128]>),
    Shared(SharedSlots),
}

/// The circuit breakers, in-flight counts, latency EWMAs and retry budgets of up to `capacity`
/// deployments (see [`crate::circuit`]). All methods take `&self` and are safe to call from many
/// threads and, for a shared table, many processes.
#[derive(Debug)]
pub struct Circuits {
    storage: Storage,
    capacity: usize,
}

impl Circuits {
    /// A table in this process's memory (tests, a single worker).
    pub fn in_memory(capacity: usize) -> Result<Self, CircuitError> {
        check_capacity(capacity)?;
        let cells = (0..capacity * CELLS).map(|_| AtomicU128::new(0)).collect();
        Ok(Self {
            storage: Storage::Local(cells),
            capacity,
        })
    }

    /// The table in the shared file at `path` (created by the first process, e.g. under
    /// `/dev/shm`); every process that opens the same file with the same capacity shares it.
    pub fn shared(path: &Path, capacity: usize) -> Result<Self, CircuitError> {
        check_capacity(capacity)?;
        Ok(Self {
            storage: Storage::Shared(SharedSlots::open_layout(path, capacity, LAYOUT)?),
            capacity,
        })
    }

    fn all_cells(&self) -> &[AtomicU128] {
        match &self.storage {
            Storage::Local(cells) => cells,
            Storage::Shared(shared) => shared.slots(),
        }
    }

    /// The cells of `slot`, or [`CircuitError::BadSlot`].
    pub(crate) fn cells(&self, slot: usize) -> Result<&[AtomicU128], CircuitError> {
        let start = slot.saturating_mul(CELLS);
        self.all_cells()
            .get(start..start.saturating_add(CELLS))
            .ok_or(CircuitError::BadSlot {
                slot,
                capacity: self.capacity,
            })
    }

    /// The number of slots (the most deployment keys the table holds).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The shared file's path (`None` for an in-memory table).
    pub fn path(&self) -> Option<&Path> {
        match &self.storage {
            Storage::Local(_) => None,
            Storage::Shared(shared) => Some(shared.path()),
        }
    }

    /// Slots holding a key.
    pub fn occupancy(&self) -> usize {
        self.all_cells()
            .chunks_exact(CELLS)
            .filter(|slot| slot[KEY].load(SeqCst) != 0)
            .count()
    }

    /// The slot of deployment key `key` (the same in every process mapping the file), claimed on
    /// first use. Called once per key and configuration, not per request.
    pub fn slot(&self, key: &str) -> Result<usize, CircuitError> {
        let id = key_id(key);
        let cells = self.all_cells();
        // Lemire's multiply-shift of the hash's low half: a start position without a division.
        let start = ((u128::from(id as u64) * self.capacity as u128) >> 64) as usize;
        for i in 0..self.capacity {
            let slot = (start + i) % self.capacity;
            let cell = &cells[slot * CELLS + KEY];
            match cell.load(SeqCst) {
                v if v == id => return Ok(slot),
                0 => match cell.compare_exchange(0, id, SeqCst, SeqCst) {
                    Ok(_) => return Ok(slot),
                    Err(current) if current == id => return Ok(slot),
                    Err(_) => {}
                },
                _ => {}
            }
        }
        Err(CircuitError::Full(self.capacity))
    }
}

fn check_capacity(capacity: usize) -> Result<(), CircuitError> {
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(CircuitError::InvalidCapacity(capacity));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_get_distinct_stable_slots_until_full() {
        let table = Circuits::in_memory(4).unwrap();
        let slots: Vec<usize> = ["a/x", "b/x", "c/x", "d/x"]
            .iter()
            .map(|k| table.slot(k).unwrap())
            .collect();
        let mut sorted = slots.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3]);
        assert_eq!(table.slot("c/x").unwrap(), slots[2]);
        assert_eq!(table.slot("e/x"), Err(CircuitError::Full(4)));
        assert_eq!(table.occupancy(), 4);
    }

    #[test]
    fn bad_slots_and_capacities_are_refused() {
        let table = Circuits::in_memory(2).unwrap();
        assert!(table.cells(1).is_ok());
        assert_eq!(
            table.cells(2).unwrap_err(),
            CircuitError::BadSlot {
                slot: 2,
                capacity: 2
            }
        );
        assert!(table.cells(usize::MAX).is_err());
        assert!(Circuits::in_memory(0).is_err());
        assert!(Circuits::in_memory(MAX_CAPACITY + 1).is_err());
    }

    #[test]
    fn hash_is_pinned() {
        // Every process sharing a file must agree on it (a change needs a new layout version).
        assert_eq!(key_id("openai/gpt-4o"), key_id("openai/gpt-4o"));
        assert_ne!(key_id("openai/gpt-4o"), key_id("azure/gpt-4o"));
        assert_eq!(
            key_id("openai/gpt-4o"),
            0xee6c_69a1_f738_0f7e_a869_a37d_b955_36b1
        );
    }
}
