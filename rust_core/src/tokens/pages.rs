//! Giving back the resident pages of an embedded dictionary once it is loaded.
//!
//! A tokenizer's dictionary is embedded in the binary (`include_bytes!`, read-only data mapped from the shared
//! library file) and copied into the tokenizer's own tables when it is loaded; reading it faults its pages in,
//! and they would stay resident in every worker (16 MB for o200k_base) though never read again.
//! [`release`] tells the kernel so (`madvise(MADV_DONTNEED)` on the page-aligned inside of the slice): the
//! pages are dropped, and a later read would fault them in again from the file, unchanged. That system call is
//! the module's one `unsafe` operation (no safe API takes a raw address range); it changes no byte of the data,
//! so the `&'static [u8]` the rest of the crate may hold stays valid. Elsewhere than Linux it does nothing.
#![allow(unsafe_code)]

/// Drop the resident pages wholly inside `bytes`, a slice of read-only data of this binary.
pub(crate) fn release(bytes: &'static [u8]) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions.
        let page = match usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) {
            Ok(p) if p.is_power_of_two() => p,
            _ => return,
        };
        let start = bytes.as_ptr() as usize;
        let first = (start + page - 1) & !(page - 1);
        let end = (start + bytes.len()) & !(page - 1);
        if end > first {
            // SAFETY: [first, end) lies inside `bytes`, read-only file-backed data of this binary; MADV_DONTNEED
            // on such a private mapping only discards cached copies of file pages, which are read back unchanged
            // on the next access, so no reference to them is invalidated. A failure leaves the pages resident.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = bytes;
}
