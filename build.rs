//! Builds the filter of the bundled list of common and breached passwords
//! (`data/common-passwords.txt.gz`) at compile time, so the binary carries it and a check is
//! a constant number of memory reads: no list is parsed at start-up or per call.
//!
//! Writes to `OUT_DIR`:
//! - `common-passwords.descriptor`: the binary fuse filter's descriptor (seed and geometry);
//! - `common-passwords.fingerprints`: its 32-bit fingerprints, little-endian;
//! - `common-passwords.rs`: `ENTRIES`, the number of distinct keys in the filter.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;

use xorf::{BinaryFuse32, DmaSerializable as _};

#[path = "src/passwords/list_key.rs"]
mod list_key;

const LIST: &str = "data/common-passwords.txt.gz";

fn main() {
    println!("cargo::rerun-if-changed={LIST}");
    println!("cargo::rerun-if-changed=src/passwords/list_key.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let file = std::fs::File::open(LIST).unwrap_or_else(|e| panic!("{LIST}: {e}"));
    let mut keys = Vec::with_capacity(450_000);
    for line in BufReader::new(flate2::read::GzDecoder::new(file)).lines() {
        let line = line.unwrap_or_else(|e| panic!("{LIST}: {e}"));
        let password = line.strip_suffix('\r').unwrap_or(&line);
        if !password.is_empty() {
            keys.push(list_key::list_key(password));
        }
    }
    // Case variants share a key; the filter needs each key once.
    keys.sort_unstable();
    keys.dedup();
    assert!(keys.len() >= 100_000, "{LIST} holds only {} distinct passwords", keys.len());
    let filter = BinaryFuse32::try_from(&keys).unwrap_or_else(|e| panic!("building the password filter: {e}"));
    let mut descriptor = vec![0u8; BinaryFuse32::DESCRIPTOR_LEN];
    filter.dma_copy_descriptor_to(&mut descriptor);
    let fingerprints: Vec<u8> = filter.fingerprints.iter().flat_map(|f| f.to_le_bytes()).collect();
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(out.join(name), bytes).unwrap_or_else(|e| panic!("writing {name}: {e}"));
    };
    write("common-passwords.descriptor", &descriptor);
    write("common-passwords.fingerprints", &fingerprints);
    write("common-passwords.rs", format!("pub const ENTRIES: usize = {};\n", keys.len()).as_bytes());
}
