//! A GGUF file mapped into memory, with zero-copy tensor views.

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::{GgufError, Result};
use super::parse::{parse, GgufLayout, TensorInfo};
use super::types::{Array, Value};

/// Where the file bytes live.
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A validated GGUF file. Tensor data are borrowed from the mapping.
pub struct GgufFile {
    path: Option<PathBuf>,
    storage: Storage,
    layout: GgufLayout,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("len", &self.storage.len())
            .field("version", &self.layout.version)
            .field("metadata", &self.layout.metadata.len())
            .field("tensors", &self.layout.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// A cheap identity of the file's contents, for caches that must not be
    /// used with another model: its length, a checksum of its header
    /// (metadata and tensor directory) and one of 16 samples of 4 KiB
    /// spread over the tensor data. Another model, quantisation or
    /// fine-tune changes it; computing it reads about a header and 64 KiB,
    /// not the gigabytes of weights.
    pub fn fingerprint(&self) -> u64 {
        const SAMPLES: usize = 16;
        const SAMPLE: usize = 4096;
        let bytes: &[u8] = &self.storage;
        let data_offset = (self.layout.data_offset as usize).min(bytes.len());
        let header = crc32fast::hash(&bytes[..data_offset]);
        let data = &bytes[data_offset..];
        let mut sampled = crc32fast::Hasher::new();
        sampled.update(&(bytes.len() as u64).to_le_bytes());
        for i in 0..SAMPLES {
            let start = data.len().saturating_sub(SAMPLE) * i / (SAMPLES - 1);
            sampled.update(&data[start..(start + SAMPLE).min(data.len())]);
        }
        (u64::from(header) << 32) | u64::from(sampled.finalize())
    }

    /// Maps and validates the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io_err = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        // SAFETY: the mapping is read-only and private to this process. A file
        // truncated by another process while mapped would fault (SIGBUS); like
        // every mmap-based model loader (llama.cpp included) we accept that
        // model files are not modified while in use.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        let layout = parse(&map)?;
        Ok(Self {
            path: Some(path.to_owned()),
            storage: Storage::Mapped(map),
            layout,
        })
    }

    /// Validates a file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let layout = parse(&bytes)?;
        Ok(Self {
            path: None,
            storage: Storage::Owned(bytes),
            layout,
        })
    }

    /// Path the file was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Length of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.storage.len() as u64
    }

    /// The parsed layout (version, metadata, tensors, alignment).
    pub fn layout(&self) -> &GgufLayout {
        &self.layout
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.layout.metadata
    }

    /// Tensor descriptions in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.layout.tensors
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.layout
            .metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// A string value; error if missing or not a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let value = self.require(key)?;
        value
            .as_str()
            .ok_or_else(|| wrong_type(key, "string", value))
    }

    /// A non-negative integer value of any width; error if missing or not one.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let value = self.require(key)?;
        value
            .as_u64()
            .ok_or_else(|| wrong_type(key, "unsigned integer", value))
    }

    /// An array value; error if missing or not an array.
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        let value = self.require(key)?;
        value
            .as_array()
            .ok_or_else(|| wrong_type(key, "array", value))
    }

    /// `general.architecture`, the prefix of the model's own keys.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// A tensor description by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.layout.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of a tensor (zero-copy).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        // In bounds: parse() checked data_offset + offset + size <= file length.
        let start = (self.layout.data_offset + info.offset) as usize;
        &self.storage[start..start + info.size as usize]
    }

    /// The bytes of row `row` of a tensor (zero-copy), `None` past the last row.
    pub fn tensor_row(&self, info: &TensorInfo, row: u64) -> Option<&[u8]> {
        if row >= info.n_rows() {
            return None;
        }
        let row_bytes = info.row_bytes() as usize;
        let start = row as usize * row_bytes;
        Some(&self.tensor_data(info)[start..start + row_bytes])
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_owned(),
        })
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &Value) -> GgufError {
    GgufError::WrongValueType {
        key: key.to_owned(),
        expected,
        found: found.value_type().name(),
    }
}
