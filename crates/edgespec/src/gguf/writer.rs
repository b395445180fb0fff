//! Writes GGUF v3 files from metadata and tensor bytes (copied as-is).

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use super::error::{GgufError, Result};
use super::parse::{align_up, DEFAULT_ALIGNMENT, MAGIC};
use super::types::{Array, GgmlType, Value};
use super::GgufFile;
use crate::atomic_file::write_atomically;

/// A tensor to be written: description plus its raw bytes.
#[derive(Debug, Clone)]
pub struct TensorToWrite<'a> {
    /// Tensor name.
    pub name: String,
    /// ggml type of the bytes.
    pub ggml_type: GgmlType,
    /// Dimensions, ne[0] first.
    pub dims: Vec<u64>,
    /// The data, exactly as ggml lays it out.
    pub data: Cow<'a, [u8]>,
}

/// Builds a GGUF file in memory order and writes it.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter<'a> {
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorToWrite<'a>>,
}

impl<'a> GgufWriter<'a> {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer holding a copy of `source`'s metadata and (borrowed) tensors.
    pub fn from_file(source: &'a GgufFile) -> Self {
        let tensors = source
            .tensors()
            .iter()
            .map(|t| TensorToWrite {
                name: t.name.clone(),
                ggml_type: t.ggml_type,
                dims: t.dims.clone(),
                data: Cow::Borrowed(source.tensor_data(t)),
            })
            .collect();
        Self {
            metadata: source.metadata().to_vec(),
            tensors,
        }
    }

    /// Sets a metadata key, replacing an existing value in place.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_owned(), value)),
        }
        self
    }

    /// Removes a metadata key if present.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self
    }

    /// Adds a tensor, or replaces the one with the same name.
    pub fn put_tensor(&mut self, tensor: TensorToWrite<'a>) -> &mut Self {
        match self.tensors.iter_mut().find(|t| t.name == tensor.name) {
            Some(slot) => *slot = tensor,
            None => self.tensors.push(tensor),
        }
        self
    }

    /// Metadata as it will be written.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// Tensors as they will be written.
    pub fn tensors(&self) -> &[TensorToWrite<'a>] {
        &self.tensors
    }

    /// The alignment the file will use (`general.alignment` or the default).
    fn alignment(&self) -> Result<u64> {
        let alignment = match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) => u64::from(*a),
            Some((_, v)) => {
                return Err(GgufError::AlignmentType {
                    found: v.value_type(),
                })
            }
        };
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(GgufError::InvalidAlignment { alignment });
        }
        Ok(alignment)
    }

    /// Writes the file to `path` through a temporary file in the same folder
    /// (named after this process and call, so concurrent writers never
    /// share one), synced and renamed into place only once complete, the
    /// rename synced through the folder: an interrupted write never leaves
    /// a partial file under `path`.
    pub fn write_to(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io_err = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        write_atomically(
            path,
            |out| {
                self.write(out).map_err(|e| match e {
                    WriteError::Gguf(e) => e,
                    WriteError::Io(e) => io_err(e),
                })
            },
            io_err,
        )
    }

    /// Serializes the file into a byte vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write(&mut out).map_err(|e| match e {
            WriteError::Gguf(e) => e,
            WriteError::Io(e) => unreachable!("writing to a Vec cannot fail: {e}"),
        })?;
        Ok(out)
    }

    fn write(&self, out: &mut impl Write) -> std::result::Result<(), WriteError> {
        let alignment = self.alignment()?;
        // Tensor placement: each one aligned, in the order given.
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut next = 0u64;
        for t in &self.tensors {
            let expected = expected_size(t)?;
            if expected != t.data.len() as u64 {
                return Err(GgufError::TensorSizeMismatch {
                    tensor: t.name.clone(),
                    expected,
                    got: t.data.len() as u64,
                }
                .into());
            }
            offsets.push(next);
            next = align_up(next + expected, alignment).ok_or(GgufError::ByteSizeOverflow {
                tensor: t.name.clone(),
            })?;
        }

        let mut header = Vec::new();
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut header, key);
            header.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut header, value);
        }
        for (t, offset) in self.tensors.iter().zip(&offsets) {
            put_string(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ggml_type.id.to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
        }
        let data_start = align_up(header.len() as u64, alignment).unwrap_or(header.len() as u64);
        header.resize(data_start as usize, 0);
        out.write_all(&header)?;

        let mut written = 0u64;
        for (t, offset) in self.tensors.iter().zip(&offsets) {
            write_zeros(out, offset - written)?;
            out.write_all(&t.data)?;
            written = offset + t.data.len() as u64;
        }
        // Pad the last tensor too, as ggml's own writer does.
        write_zeros(out, next - written)?;
        out.flush()?;
        Ok(())
    }
}

enum WriteError {
    Gguf(GgufError),
    Io(std::io::Error),
}

impl From<GgufError> for WriteError {
    fn from(e: GgufError) -> Self {
        WriteError::Gguf(e)
    }
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

fn expected_size(t: &TensorToWrite<'_>) -> Result<u64> {
    if t.dims.is_empty() || t.dims.len() > super::parse::MAX_DIMS {
        return Err(GgufError::InvalidDimCount {
            tensor: t.name.clone(),
            n_dims: t.dims.len() as u32,
        });
    }
    if let Some(dim) = t.dims.iter().position(|&d| d == 0) {
        return Err(GgufError::ZeroDimension {
            tensor: t.name.clone(),
            dim,
        });
    }
    let Some(row) = t.ggml_type.row_bytes(t.dims[0]) else {
        return Err(GgufError::RowNotBlockAligned {
            tensor: t.name.clone(),
            ne0: t.dims[0],
            block_size: t.ggml_type.block_size,
        });
    };
    t.dims[1..]
        .iter()
        .try_fold(row, |acc, &d| acc.checked_mul(d))
        .ok_or(GgufError::ByteSizeOverflow {
            tensor: t.name.clone(),
        })
}

fn write_zeros(out: &mut impl Write, n: u64) -> std::io::Result<()> {
    const ZEROS: [u8; 64] = [0; 64];
    let mut left = n;
    while left > 0 {
        let chunk = left.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..chunk])?;
        left -= chunk as u64;
    }
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_string(out, s),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Array(array) => put_array(out, array),
    }
}

fn put_array(out: &mut Vec<u8>, array: &Array) {
    out.extend_from_slice(&(array.element_type() as u32).to_le_bytes());
    out.extend_from_slice(&(array.len() as u64).to_le_bytes());
    macro_rules! put_all {
        ($items:expr) => {
            for v in $items {
                out.extend_from_slice(&v.to_le_bytes());
            }
        };
    }
    match array {
        Array::U8(items) => out.extend_from_slice(items),
        Array::I8(items) => put_all!(items),
        Array::U16(items) => put_all!(items),
        Array::I16(items) => put_all!(items),
        Array::U32(items) => put_all!(items),
        Array::I32(items) => put_all!(items),
        Array::F32(items) => put_all!(items),
        Array::Bool(items) => out.extend(items.iter().map(|&b| u8::from(b))),
        Array::String(items) => items.iter().for_each(|s| put_string(out, s)),
        Array::Array(items) => items.iter().for_each(|a| put_array(out, a)),
        Array::U64(items) => put_all!(items),
        Array::I64(items) => put_all!(items),
        Array::F64(items) => put_all!(items),
    }
}
