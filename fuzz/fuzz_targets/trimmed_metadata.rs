//! Fuzzes the reader of a trimmed drafter's metadata: any GGUF header gives
//! the trim's description, "not trimmed" or a typed error, never a panic,
//! and a description it accepts holds ids in range, in strictly rising order.
#![no_main]

use edgespec::gguf::GgufFile;
use edgespec::vocabtrim::TrimInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    if let Ok(Some(info)) = TrimInfo::from_gguf(&file) {
        assert!(info.ids.windows(2).all(|w| w[0] < w[1]));
        assert!(info.ids.iter().all(|&id| (id as u64) < info.source_vocab));
    }
});
