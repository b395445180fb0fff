//! Fuzzes the prompt cache reader: any byte string must give caches or a
//! typed error, never a panic, and never a reservation beyond the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(caches) = edgespec::session::prompt_cache::parse(data) {
        let held: usize = caches.iter().map(|c| 4 * c.tokens.len() + c.state.len()).sum();
        assert!(held <= data.len());
    }
});
