//! Large weight buffers backed by 2 MiB pages where the kernel allows it.
//!
//! A decode step streams every weight matrix from memory once. With 4 KiB pages that is one
//! TLB miss per 4 KiB of weights; transparent huge pages cut that 512-fold, but on systems
//! whose THP mode is `madvise` (a common default) a buffer only gets them when asked, before
//! its pages are first touched. [`vec_filled`] allocates, asks (`MADV_HUGEPAGE` on the
//! 2 MiB-aligned interior), then fills. Where the call is unsupported or refused the buffer is
//! an ordinary `Vec`; nothing else changes. `STARPILLAR_HUGEPAGES=0` skips the request.

/// Bytes per huge page on x86-64 and aarch64 Linux.
const HUGE: usize = 2 << 20;

/// Buffers smaller than this are left alone (not worth a page of their own).
const MIN_BYTES: usize = 4 * HUGE;

/// A `Vec` of `n` copies of `fill`, with `MADV_HUGEPAGE` requested on its memory before it is
/// written (when the buffer is at least a few huge pages long).
pub fn vec_filled<T: Clone>(n: usize, fill: T) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise(
        v.as_ptr() as usize,
        n.saturating_mul(std::mem::size_of::<T>()),
    );
    v.resize(n, fill);
    v
}

/// `v`'s contents in a buffer advised like [`vec_filled`]'s (a copy; `v` is dropped).
pub fn rehome<T: Clone>(v: Vec<T>) -> Vec<T> {
    let bytes = std::mem::size_of_val(v.as_slice());
    if bytes < MIN_BYTES || !enabled() {
        return v;
    }
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    advise(out.as_ptr() as usize, bytes);
    out.extend_from_slice(&v);
    out
}

fn enabled() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("STARPILLAR_HUGEPAGES").is_none_or(|v| v != "0"))
}

/// Ask for huge pages on the 2 MiB-aligned part of `[addr, addr + bytes)`.
fn advise(addr: usize, bytes: usize) {
    if bytes < MIN_BYTES || !enabled() {
        return;
    }
    let start = addr.next_multiple_of(HUGE);
    let end = (addr + bytes) / HUGE * HUGE;
    if end <= start {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: the range lies inside a live allocation of ours; MADV_HUGEPAGE only changes how
    // the kernel backs those pages, never their contents, and failure is harmless.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_what_was_asked() {
        let v = vec_filled(5 * HUGE / 4 + 3, 7u32);
        assert_eq!(v.len(), 5 * HUGE / 4 + 3);
        assert!(v.iter().all(|x| *x == 7));
        let w: Vec<u16> = (0..3 * HUGE as u32).map(|i| i as u16).collect();
        let r = rehome(w.clone());
        assert_eq!(r, w);
        assert_eq!(vec_filled(3, 1u8), vec![1, 1, 1]);
    }
}
