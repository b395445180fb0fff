//! Our own GGUF reader and writer.
//!
//! The reader maps a file with memmap2, validates every count, length and
//! offset before trusting it ([`parse`]), and hands out zero-copy tensor
//! views ([`GgufFile::tensor_data`]). The writer ([`GgufWriter`]) builds the
//! derived files edgespec needs (trimmed drafters, synthetic test models).
//! Nothing here calls llama.cpp.

mod error;
mod file;
mod parse;
mod summary;
mod types;
mod writer;

pub use error::{GgufError, Result};
pub use file::GgufFile;
pub use parse::{
    align_up, parse, GgufLayout, TensorInfo, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS,
    MAX_PARSED_BYTES, MAX_STRING_LEN,
};
pub use summary::{ModelSummary, TypeShare, OUTPUT, TOKEN_EMBD};
pub use types::{Array, GgmlType, Value, ValueType};
pub use writer::{GgufWriter, TensorToWrite};
