//! Fuzzes the prompt cache reader: any byte string must give caches or a
//! typed error, never a panic, and never a reservation beyond the input.
//! Each input is tried as it is and sealed (behind a valid header, length
//! and checksum), so the fuzzer reaches the fields the checksum guards.
#![no_main]

use edgespec::session::prompt_cache::{parse, FORMAT, MAGIC};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    if let Ok(caches) = parse(bytes) {
        let held: usize = caches
            .iter()
            .map(|c| 4 * c.tokens.len() + c.state.len())
            .sum();
        assert!(held <= bytes.len());
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut payload = (data.len() as u64).to_le_bytes().to_vec();
    payload.extend_from_slice(data);
    let mut sealed = MAGIC.to_vec();
    sealed.extend_from_slice(&FORMAT.to_le_bytes());
    sealed.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    sealed.extend_from_slice(&payload);
    check(&sealed);
});
