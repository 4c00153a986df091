//! The shared-memory file behind the cross-process table: create or open it, check its layout,
//! map it, and view its slots as atomics.
//!
//! This is one of the crate's two modules with `unsafe` code (the other is `tokens/pages.rs`,
//! one `madvise`), for two operations no safe API offers: mapping a file ([`memmap2::MmapMut::map_mut`], unsafe because another process could
//! truncate the file under us), and viewing the mapped bytes as `&[AtomicU128]`. The workspace
//! lint is therefore `unsafe_code = "deny"` rather than `forbid`: `forbid` cannot be lifted by a
//! module's `#![allow(unsafe_code)]`, and this module must lift it. Every other module still
//! gets the error.
//!
//! Layout (little-endian, fixed): a 64-byte header of u64 words `magic`, `version`, `capacity`
//! (slots), `slot_bytes`, then `capacity` slots of `slot_bytes` bytes (a multiple of 16), each a
//! run of `AtomicU128` cells. A [`Layout`] names the magic, version and slot size of one kind of
//! table: [`LIMITER`] (`b"FGRLIM\0\x01"`, version 1, one 16-byte cell per slot holding
//! `key_hash << 64 | tat_ns`, 0 = empty) and the circuit breakers' table (`crate::circuit`). The file
//! is created (mode 0600) and initialised by the first process under an exclusive `flock` (the
//! others wait on it, then check the header), and never resized or rewritten afterwards: only the
//! cells change, and only atomically.
//!
//! 128-bit atomics come from `portable-atomic` (`cmpxchg16b` on x86_64, `casp`/`ldxp` on
//! aarch64, detected at run time). Where they are not lock-free its fallback is a lock inside
//! one process, useless across processes, so opening a shared table then fails with
//! [`LimitError::Unsupported`].
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;
use portable_atomic::AtomicU128;

use crate::error::LimitError;

/// Bytes before the first slot (one cache line).
pub const HEADER_BYTES: usize = 64;
/// Bytes of one atomic cell.
pub const CELL_BYTES: usize = 16;

/// One kind of table file: what its header says, and what its slots are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// First header word (8 ASCII bytes naming the kind).
    pub magic: u64,
    /// Layout version; a file of another version is refused.
    pub version: u64,
    /// Bytes per slot: a non-zero multiple of [`CELL_BYTES`].
    pub slot_bytes: usize,
    /// What the table is, for error messages (`"limiter table"`).
    pub what: &'static str,
}

impl Layout {
    /// `AtomicU128` cells per slot.
    pub const fn cells(&self) -> usize {
        self.slot_bytes / CELL_BYTES
    }
}

/// The rate limiter's table: one cell (`key_hash << 64 | tat_ns`) per slot.
pub const LIMITER: Layout = Layout {
    magic: u64::from_le_bytes(*b"FGRLIM\0\x01"),
    version: 1,
    slot_bytes: CELL_BYTES,
    what: "limiter table",
};

/// A mapped table file: `capacity` slots of atomic cells shared with every process that maps it.
pub struct SharedSlots {
    map: MmapMut,
    capacity: usize,
    layout: Layout,
    path: PathBuf,
}

impl std::fmt::Debug for SharedSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSlots")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("what", &self.layout.what)
            .finish()
    }
}

fn io_error(path: &Path, what: &str, error: &std::io::Error) -> LimitError {
    LimitError::Io {
        path: path.display().to_string(),
        message: format!("{what}: {error}"),
    }
}

fn header(capacity: usize, layout: &Layout) -> [u8; HEADER_BYTES] {
    let mut bytes = [0u8; HEADER_BYTES];
    let words = [
        layout.magic,
        layout.version,
        capacity as u64,
        layout.slot_bytes as u64,
    ];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

impl SharedSlots {
    /// Opens the limiter's table file at `path` ([`LIMITER`]): see [`SharedSlots::open_layout`].
    pub fn open(path: &Path, capacity: usize) -> Result<Self, LimitError> {
        Self::open_layout(path, capacity, LIMITER)
    }

    /// Opens the table file of `layout` at `path`, creating and initialising it (zeroed slots)
    /// if it does not exist or is empty. An existing file must have this layout's magic and
    /// version and exactly `capacity` slots, else [`LimitError::Layout`] (delete it, or pass its
    /// capacity).
    pub fn open_layout(path: &Path, capacity: usize, layout: Layout) -> Result<Self, LimitError> {
        if layout.slot_bytes == 0 || !layout.slot_bytes.is_multiple_of(CELL_BYTES) {
            return Err(LimitError::Layout {
                path: path.display().to_string(),
                message: format!("{}-byte slots are not 16-byte cells", layout.slot_bytes),
            });
        }
        let Some(bytes) = capacity
            .checked_mul(layout.slot_bytes)
            .and_then(|b| b.checked_add(HEADER_BYTES))
        else {
            return Err(LimitError::InvalidCapacity(capacity));
        };
        if !AtomicU128::is_lock_free() {
            return Err(LimitError::Unsupported(
                "no lock-free 128-bit compare-and-swap (cmpxchg16b)".to_owned(),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_error(path, "open", &e))?;
        file.lock().map_err(|e| io_error(path, "lock", &e))?;
        let prepared = Self::prepare(&file, path, capacity, &layout);
        file.unlock().map_err(|e| io_error(path, "unlock", &e))?;
        prepared?;
        // SAFETY: the file is a table file of the checked size; it is never truncated or
        // resized by ferrogate after creation (a process outside it doing so would make reads
        // fault, which is the documented contract of a shared table file). The mapped bytes are
        // only ever accessed as atomics (`slots`), never through `&[u8]`.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io_error(path, "mmap", &e))?;
        if map.len() != bytes {
            return Err(LimitError::Layout {
                path: path.display().to_string(),
                message: format!("mapped {} bytes", map.len()),
            });
        }
        Ok(Self {
            map,
            capacity,
            layout,
            path: path.to_owned(),
        })
    }

    /// Under the file lock: initialise an empty file, or check an existing one's header.
    fn prepare(
        file: &File,
        path: &Path,
        capacity: usize,
        layout: &Layout,
    ) -> Result<(), LimitError> {
        let expected_len = (HEADER_BYTES + capacity * layout.slot_bytes) as u64;
        let len = file
            .metadata()
            .map_err(|e| io_error(path, "stat", &e))?
            .len();
        if len == 0 {
            file.set_len(expected_len)
                .map_err(|e| io_error(path, "resize", &e))?;
            return file
                .write_all_at(&header(capacity, layout), 0)
                .map_err(|e| io_error(path, "write header", &e));
        }
        let fault = |message: String| LimitError::Layout {
            path: path.display().to_string(),
            message,
        };
        let mut found = [0u8; HEADER_BYTES];
        file.read_exact_at(&mut found, 0)
            .map_err(|_| fault(format!("{len} bytes, no complete header")))?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&found[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        if word(0) != layout.magic {
            return Err(fault(format!(
                "not a ferrogate {} (bad magic)",
                layout.what
            )));
        }
        if word(1) != layout.version || word(3) != layout.slot_bytes as u64 {
            return Err(fault(format!(
                "version {} with {}-byte slots, expected version {} with {}-byte slots",
                word(1),
                word(3),
                layout.version,
                layout.slot_bytes
            )));
        }
        if word(2) != capacity as u64 {
            return Err(fault(format!(
                "capacity {} slots, asked for {capacity}",
                word(2)
            )));
        }
        if len != expected_len {
            return Err(fault(format!("{len} bytes, expected {expected_len}")));
        }
        Ok(())
    }

    /// The cells of every slot in order (`capacity * layout.cells()` of them), as atomics shared
    /// with every process that maps the file.
    pub fn slots(&self) -> &[AtomicU128] {
        let first = self
            .map
            .as_ptr()
            .wrapping_add(HEADER_BYTES)
            .cast::<AtomicU128>();
        // SAFETY: `open_layout` checked that the mapping holds `HEADER_BYTES + capacity *
        // slot_bytes` bytes, `slot_bytes` a multiple of 16; the mapping is page-aligned, so `first` is 16-byte aligned as `AtomicU128`
        // requires (it has the size and alignment of `u128`); any bit pattern is a valid u128;
        // every access (here and in other processes) is atomic, and the mapping lives as long
        // as `self`, which the returned slice borrows.
        unsafe { std::slice::from_raw_parts(first, self.capacity * self.layout.cells()) }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
