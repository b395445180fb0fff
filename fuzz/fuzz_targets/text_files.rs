//! Fuzzes the readers of the text files users and interrupted runs leave
//! behind: prompt sets, token-count files, bench `runs.jsonl` and eval
//! `results.jsonl`. Any text gives a value or an error, never a panic; the
//! first byte picks the reader so one corpus covers all four.
#![no_main]

use edgespec_tools::bench::{parse_prompts, RunsLine};
use edgespec_tools::eval::humaneval::Record;
use edgespec_tools::vocabtrim::TokenCounts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = parse_prompts(text);
        }
        1 => {
            if let Ok(counts) = TokenCounts::parse(text) {
                assert_eq!(counts.counts.len(), counts.vocab_size);
            }
        }
        2 => {
            let _ = edgespec_tools::jsonl::parse::<RunsLine>(text, "runs.jsonl");
        }
        _ => {
            let _ = edgespec_tools::jsonl::parse::<Record>(text, "results.jsonl");
        }
    }
});
