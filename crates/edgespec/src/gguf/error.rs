//! Typed errors of the GGUF reader and writer.

use std::path::PathBuf;

use super::types::ValueType;

/// Everything that can go wrong reading, validating or writing a GGUF file.
///
/// Variants carry the offending values so callers (and tests) can match on
/// them instead of parsing messages.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, mapped, created or written.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The bytes found instead.
        found: [u8; 4],
    },
    /// Only GGUF versions 2 and 3 are read.
    #[error("unsupported GGUF version {version} (edgespec reads versions 2 and 3)")]
    UnsupportedVersion {
        /// Version field found in the header.
        version: u32,
    },
    /// The file ends before a field that must be there.
    #[error("truncated file: {what} at byte {offset} needs {needed} bytes, file has {file_len}")]
    Truncated {
        /// Which field was being read.
        what: &'static str,
        /// Offset of the field.
        offset: u64,
        /// Bytes the field needs.
        needed: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// A count cannot possibly fit in the rest of the file.
    #[error("{what} count {count} cannot fit in the file (at most {max})")]
    CountTooLarge {
        /// What is being counted.
        what: &'static str,
        /// Count found.
        count: u64,
        /// Largest count the remaining bytes allow.
        max: u64,
    },
    /// The parsed header would take more memory than the reader allows.
    #[error("{what} would need {needed} bytes of memory, over the cap of {cap} bytes for a file's parsed metadata and tensor descriptions")]
    ParsedTooLarge {
        /// What was being read.
        what: &'static str,
        /// Bytes it would need.
        needed: u64,
        /// The cap ([`crate::gguf::MAX_PARSED_BYTES`]).
        cap: u64,
    },
    /// A string is longer than the reader accepts.
    #[error("string at byte {offset} has length {len}, over the cap of {max}")]
    StringTooLong {
        /// Offset of the length field.
        offset: u64,
        /// Length found.
        len: u64,
        /// Cap.
        max: u64,
    },
    /// A string (key, value or tensor name) is not UTF-8.
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string.
        what: &'static str,
        /// Offset of its first byte.
        offset: u64,
    },
    /// A metadata value type id outside the GGUF specification.
    #[error("unknown metadata value type {value_type} at byte {offset}")]
    UnknownValueType {
        /// Offset of the type field.
        offset: u64,
        /// Type id found.
        value_type: u32,
    },
    /// Arrays nested deeper than the reader accepts.
    #[error("metadata arrays nested {depth} deep at byte {offset} (at most {max})")]
    NestingTooDeep {
        /// Offset of the array.
        offset: u64,
        /// Depth reached.
        depth: usize,
        /// Cap.
        max: usize,
    },
    /// The same metadata key appears twice.
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// `general.alignment` is not a u32.
    #[error("general.alignment has type {found:?}, expected u32")]
    AlignmentType {
        /// Type found.
        found: ValueType,
    },
    /// `general.alignment` is zero or not a power of two.
    #[error("invalid alignment {alignment}: must be a non-zero power of two")]
    InvalidAlignment {
        /// Alignment found.
        alignment: u64,
    },
    /// A tensor with 0 or more than 4 dimensions.
    #[error("tensor {tensor:?} has {n_dims} dimensions (1 to 4 allowed)")]
    InvalidDimCount {
        /// Tensor name.
        tensor: String,
        /// Dimension count found.
        n_dims: u32,
    },
    /// A tensor with a dimension of size 0.
    #[error("tensor {tensor:?} has size 0 in dimension {dim}")]
    ZeroDimension {
        /// Tensor name.
        tensor: String,
        /// Index of the zero dimension.
        dim: usize,
    },
    /// The element count overflows.
    #[error("tensor {tensor:?}: element count of dims {dims:?} overflows")]
    ElementCountOverflow {
        /// Tensor name.
        tensor: String,
        /// Its dimensions.
        dims: Vec<u64>,
    },
    /// A ggml type id this reader does not know.
    #[error("tensor {tensor:?} has unknown ggml type {ggml_type}")]
    UnknownTensorType {
        /// Tensor name.
        tensor: String,
        /// Type id found.
        ggml_type: u32,
    },
    /// The first dimension is not a whole number of quantization blocks.
    #[error(
        "tensor {tensor:?}: row length {ne0} is not a multiple of the block size {block_size}"
    )]
    RowNotBlockAligned {
        /// Tensor name.
        tensor: String,
        /// First dimension.
        ne0: u64,
        /// Block size of its type.
        block_size: u64,
    },
    /// The byte size or end offset overflows.
    #[error("tensor {tensor:?}: byte size or end offset overflows")]
    ByteSizeOverflow {
        /// Tensor name.
        tensor: String,
    },
    /// A tensor offset not aligned to the file alignment.
    #[error("tensor {tensor:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// Tensor name.
        tensor: String,
        /// Offset (relative to the data section).
        offset: u64,
        /// File alignment.
        alignment: u64,
    },
    /// Tensor data reaching past the end of the file.
    #[error("tensor {tensor:?}: data ends at byte {end}, past the end of the file ({file_len})")]
    TensorOutOfBounds {
        /// Tensor name.
        tensor: String,
        /// Absolute end offset.
        end: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// Two tensors whose data overlap.
    #[error("tensors {first:?} and {second:?} overlap")]
    OverlappingTensors {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// The same tensor name appears twice.
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// A required metadata key is absent.
    #[error("metadata key {key:?} is missing")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata key holds a value of another type.
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongValueType {
        /// The key.
        key: String,
        /// What the caller needed.
        expected: &'static str,
        /// What the file holds.
        found: &'static str,
    },
    /// A tensor the caller asked for is absent.
    #[error("tensor {name:?} not found")]
    MissingTensor {
        /// The name.
        name: String,
    },
    /// Writer: tensor bytes whose length does not match type and dims.
    #[error("tensor {tensor:?}: {got} bytes given, type and dims need {expected}")]
    TensorSizeMismatch {
        /// Tensor name.
        tensor: String,
        /// Bytes expected.
        expected: u64,
        /// Bytes given.
        got: u64,
    },
}

/// Result alias of the GGUF module.
pub type Result<T> = std::result::Result<T, GgufError>;
