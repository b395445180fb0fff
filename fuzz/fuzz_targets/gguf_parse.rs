//! Fuzzes the GGUF parser: any byte string must give a layout or a typed
//! error, never a panic, and a layout must only describe bytes in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(layout) = edgespec::gguf::parse(data) {
        for t in &layout.tensors {
            let end = layout.data_offset + t.offset + t.size;
            assert!(end <= data.len() as u64);
        }
    }
});
