//! edgespec's tools, apart from the runtime a device links: the benchmark
//! (`edgespec bench`), the HumanEval evaluation, VocabTrim calibration and
//! trimming, machine cost profiles, generation traces and the replay
//! simulator that prices draft-length policies on them, and the
//! OpenAI-compatible server (`edgespec serve`). The `edgespec`
//! command line is this crate's binary.
#![warn(missing_docs)]

pub mod bench;
pub mod cost_cache;
pub mod eval;
pub mod json_schema;
pub mod jsonl;
pub mod profile;
pub mod replay;
pub mod scratch;
pub mod serve;
pub mod trace;
pub mod vocabtrim;
