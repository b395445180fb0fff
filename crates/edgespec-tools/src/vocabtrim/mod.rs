//! VocabTrim tools (arXiv 2506.22694): calibration counts the ids the target
//! emits (or a corpus holds), trimming writes a drafter whose head (and
//! embedding table) keep only the K most frequent, and `-k auto` picks K by
//! measuring. Reading trimmed files is the runtime's (`edgespec::vocabtrim`).

mod calibrate;
mod choose;
mod counts;
mod trim;

pub use calibrate::{
    calibrate_generations, count_raw_text, resumable, CalibrationError, CalibrationProgress,
    RAW_TEXT_SETTINGS,
};
pub use choose::{best_k, k_candidates, measure_k, KPoint};
pub use counts::{inputs_sha256, vocab_fingerprint, CountSource, TokenCounts};
pub use trim::{select_ids, trim_drafter, Trimmer};
