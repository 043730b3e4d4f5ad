//! The bundled list of common and breached passwords (NIST SP 800-63B §3.1.1.2), as a binary
//! fuse filter that `build.rs` makes from `data/common-passwords.txt.gz` at compile time.
//!
//! A check computes the password's [`list_key`] (lower-cased, no allocation) and reads three
//! 32-bit fingerprints from a static table: constant time and no allocation whatever the list's
//! size, and the table (about 1.9 MB) lives in the binary's read-only data, shared by every
//! process that maps it. No false negatives: every listed password (and each of its case
//! variants) is refused. False positives, an unlisted password refused as listed, happen with
//! probability 2^-32 per password (one in about four billion), so a user practically never
//! meets one, and one who did would simply choose another password.
//!
//! Architecture Invariant: the list is never parsed at run time; a check reads the filter only.

use std::sync::LazyLock;

use xorf::{BinaryFuse32Ref, Filter as _, FilterRef as _};

use super::list_key::list_key;
use crate::metrics::{CheckOutcome, CheckSource, PasswordCheckLabels, password_checks};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/common-passwords.rs"));
}

/// How many distinct (lower-cased) passwords the filter holds.
pub const ENTRIES: usize = generated::ENTRIES;
const _: () = assert!(ENTRIES >= 100_000, "the bundled list must hold at least 100 000 passwords");

#[cfg(target_endian = "big")]
compile_error!("the password filter's fingerprints are stored little-endian");

/// `include_bytes!` gives no alignment; the filter reads its fingerprints as `u32`s.
#[repr(C, align(4))]
struct Aligned<T: ?Sized>(T);

static DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/common-passwords.descriptor"));
static FINGERPRINTS: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/common-passwords.fingerprints")));

/// A view of the static table (no copy); made once, on the first check.
static FILTER: LazyLock<BinaryFuse32Ref<'static>> =
    LazyLock::new(|| BinaryFuse32Ref::from_dma(DESCRIPTOR, &FINGERPRINTS.0));

/// Whether `password`, or a case variant of it, is on the bundled list.
pub fn is_listed(password: &str) -> bool {
    FILTER.contains(&list_key(password))
}

/// Checks `password` against the list and counts the outcome in [`checks`].
pub fn check(password: &str) -> bool {
    let listed = is_listed(password);
    let outcome = if listed { CheckOutcome::refused } else { CheckOutcome::accepted };
    password_checks().get_or_create(&PasswordCheckLabels { source: CheckSource::blocklist, outcome }).inc();
    listed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_common_passwords_are_listed_in_any_case() {
        for listed in ["123456", "password", "qwerty", "iloveyou", "letmein", "football", "Password", "PASSWORD1"] {
            assert!(is_listed(listed), "{listed}");
        }
    }

    #[test]
    fn every_entry_of_a_sample_of_the_list_is_listed() {
        // Entries from across the sorted source file.
        for listed in ["!@#$%^&*", "zxcvbnm", "trustno1", "superman", "1q2w3e4r", "monkey123"] {
            assert!(is_listed(listed), "{listed}");
        }
    }

    #[test]
    fn random_strong_passwords_are_not_listed() {
        use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
        let rng = SystemRandom::new();
        for _ in 0..10_000 {
            let mut bytes = [0u8; 12];
            rng.fill(&mut bytes).expect("random");
            let password: String = bytes.iter().map(|b| char::from(b'!' + b % 94)).collect();
            assert!(!is_listed(&password), "{password}");
        }
        for passphrase in ["correct horse battery", "a brand new passphrase", "bench password 1"] {
            assert!(!is_listed(passphrase), "{passphrase}");
        }
    }

    #[test]
    fn a_check_allocates_nothing() {
        is_listed("warm up the filter");
        let before = allocations::on_this_thread();
        for password in ["password", "correct horse battery", "ÄÖÜ unusual ß", "x"] {
            std::hint::black_box(is_listed(std::hint::black_box(password)));
        }
        assert_eq!(allocations::on_this_thread(), before);
    }

    #[test]
    fn the_key_ignores_case_and_nothing_else() {
        assert_eq!(list_key("PassWord"), list_key("password"));
        assert_ne!(list_key("password "), list_key("password"));
        assert_eq!(list_key("ÄBC"), list_key("äbc"));
    }

    /// Counts the allocations of each thread, so a test can tell that a call made none.
    mod allocations {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static COUNT: Cell<u64> = const { Cell::new(0) };
        }

        struct Counting;

        // SAFETY: every call is passed to the system allocator unchanged.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                COUNT.with(|c| c.set(c.get() + 1));
                // SAFETY: the caller's contract is the system allocator's.
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: `ptr` came from `alloc` above, that is from the system allocator.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;

        pub fn on_this_thread() -> u64 {
            COUNT.with(Cell::get)
        }
    }
}
