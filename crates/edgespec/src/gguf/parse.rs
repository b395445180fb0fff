//! The GGUF parser: bytes in, validated layout out. Pure, allocation-capped,
//! every offset checked, never panics on any input.

use std::mem::size_of;

use super::error::{GgufError, Result};
use super::types::{Array, GgmlType, Value, ValueType};

/// File magic, `GGUF` in file order.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest string (key, value, tensor name) accepted: 64 MiB.
pub const MAX_STRING_LEN: u64 = 64 << 20;
/// Deepest array nesting accepted.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most dimensions a ggml tensor can have.
pub const MAX_DIMS: usize = 4;
/// Most memory the parsed metadata and tensor descriptions may take: 64 MiB,
/// several times what the largest real tokenizer needs (a 262,144-token
/// vocabulary with its scores and types takes about 12 MiB). Counts are
/// charged against it before anything is reserved, so a crafted header that
/// claims a billion-item array is refused without allocating.
pub const MAX_PARSED_BYTES: u64 = 64 << 20;

/// Smallest possible tensor-info record: name length, n_dims, one dim, type, offset.
const MIN_TENSOR_INFO_LEN: u64 = 8 + 4 + 8 + 4 + 8;
/// Smallest possible key/value record: key length, value type, a one-byte value.
const MIN_KV_LEN: u64 = 8 + 4 + 1;

/// One tensor's description, validated against the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// ggml type.
    pub ggml_type: GgmlType,
    /// Dimensions, ne[0] first (ne[0] is the row length).
    pub dims: Vec<u64>,
    /// Offset of its data relative to the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        // Cannot overflow: checked during parsing.
        self.dims.iter().product()
    }

    /// Number of rows (product of every dimension but the first).
    pub fn n_rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }

    /// Bytes of one row (ne[0] elements).
    pub fn row_bytes(&self) -> u64 {
        self.size / self.n_rows()
    }
}

/// The validated structure of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufLayout {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensor descriptions in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

/// Parses and validates a whole GGUF file held in `bytes`.
pub fn parse(bytes: &[u8]) -> Result<GgufLayout> {
    let mut cur = Cursor {
        bytes,
        pos: 0,
        budget: MAX_PARSED_BYTES,
    };
    let magic = cur.array::<4>("magic")?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = cur.u32("version")?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let n_tensors = cur.u64("tensor count")?;
    let n_kv = cur.u64("metadata count")?;
    cur.check_count("metadata", n_kv, MIN_KV_LEN)?;
    cur.charge(
        "metadata",
        n_kv,
        size_of::<(String, Value)>() + size_of::<&str>(),
    )?;

    let mut metadata = Vec::with_capacity(n_kv as usize);
    for _ in 0..n_kv {
        let key = cur.string("metadata key")?;
        let value_type = cur.value_type()?;
        let value = cur.value(value_type)?;
        metadata.push((key, value));
    }
    if let Some(key) = first_duplicate(metadata.iter().map(|(k, _)| k.as_str())) {
        return Err(GgufError::DuplicateKey { key });
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
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

    cur.check_count("tensor", n_tensors, MIN_TENSOR_INFO_LEN)?;
    cur.charge(
        "tensor",
        n_tensors,
        size_of::<TensorInfo>() + MAX_DIMS * size_of::<u64>() + 2 * size_of::<&TensorInfo>(),
    )?;
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        tensors.push(cur.tensor_info(alignment)?);
    }
    if let Some(name) = first_duplicate(tensors.iter().map(|t| t.name.as_str())) {
        return Err(GgufError::DuplicateTensor { name });
    }

    let file_len = bytes.len() as u64;
    let data_offset =
        align_up(cur.pos as u64, alignment).ok_or(GgufError::InvalidAlignment { alignment })?;
    check_tensor_placement(&tensors, data_offset, file_len)?;

    Ok(GgufLayout {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

/// Rounds `value` up to a multiple of `alignment` (a power of two).
pub fn align_up(value: u64, alignment: u64) -> Option<u64> {
    Some(value.checked_add(alignment - 1)? & !(alignment - 1))
}

/// The first name (in sorted order) that occurs twice.
fn first_duplicate<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut sorted: Vec<&str> = names.collect();
    sorted.sort_unstable();
    sorted
        .windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| pair[0].to_owned())
}

/// Every tensor lies inside the file and no two overlap.
fn check_tensor_placement(tensors: &[TensorInfo], data_offset: u64, file_len: u64) -> Result<()> {
    for t in tensors {
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|start| start.checked_add(t.size))
            .ok_or_else(|| GgufError::ByteSizeOverflow {
                tensor: t.name.clone(),
            })?;
        if end > file_len {
            return Err(GgufError::TensorOutOfBounds {
                tensor: t.name.clone(),
                end,
                file_len,
            });
        }
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        // Sums cannot overflow: bounded by file_len above.
        if pair[0].offset + pair[0].size > pair[1].offset {
            return Err(GgufError::OverlappingTensors {
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
    }
    Ok(())
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Bytes of memory the parse may still allocate (see [`MAX_PARSED_BYTES`]).
    budget: u64,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what,
                offset: self.pos as u64,
                needed: n,
                file_len: self.bytes.len() as u64,
            });
        }
        // In bounds: n <= remaining, which fits in usize.
        let slice = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Rejects a count whose records (each at least `min_len` bytes) cannot
    /// fit in the rest of the file, before anything is allocated for them.
    fn check_count(&self, what: &'static str, count: u64, min_len: u64) -> Result<()> {
        let max = self.remaining() / min_len;
        if count > max {
            return Err(GgufError::CountTooLarge { what, count, max });
        }
        Ok(())
    }

    /// Takes `count` items of `item_bytes` each from the memory budget, or
    /// refuses before anything is allocated for them.
    fn charge(&mut self, what: &'static str, count: u64, item_bytes: usize) -> Result<()> {
        let needed = count.saturating_mul(item_bytes as u64);
        if needed > self.budget {
            return Err(GgufError::ParsedTooLarge {
                what,
                needed,
                cap: MAX_PARSED_BYTES,
            });
        }
        self.budget -= needed;
        Ok(())
    }

    fn string(&mut self, what: &'static str) -> Result<String> {
        let len_offset = self.pos as u64;
        let len = self.u64(what)?;
        if len > MAX_STRING_LEN {
            return Err(GgufError::StringTooLong {
                offset: len_offset,
                len,
                max: MAX_STRING_LEN,
            });
        }
        let start = self.pos as u64;
        let raw = self.take(len, what)?;
        self.charge(what, len, 1)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| GgufError::InvalidUtf8 {
                what,
                offset: start,
            })
    }

    fn value_type(&mut self) -> Result<ValueType> {
        let offset = self.pos as u64;
        let id = self.u32("value type")?;
        ValueType::from_u32(id).ok_or(GgufError::UnknownValueType {
            offset,
            value_type: id,
        })
    }

    fn value(&mut self, ty: ValueType) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>("u8 value")?[0]),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array("i8 value")?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array("u16 value")?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array("i16 value")?)),
            ValueType::U32 => Value::U32(self.u32("u32 value")?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array("i32 value")?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array("f32 value")?)),
            ValueType::Bool => Value::Bool(self.array::<1>("bool value")?[0] != 0),
            ValueType::String => Value::String(self.string("string value")?),
            ValueType::U64 => Value::U64(self.u64("u64 value")?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array("i64 value")?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array("f64 value")?)),
            ValueType::Array => {
                let element_offset = self.pos as u64;
                let element_type = self.value_type()?;
                let count = self.u64("array length")?;
                self.check_count("array element", count, element_type.min_encoded_len())?;
                Value::Array(self.array_items(element_type, count, element_offset, 1)?)
            }
        })
    }

    /// `count` items of `element_type`, stored packed; `depth` is the
    /// nesting level of the items (1 for the items of a top-level array).
    fn array_items(
        &mut self,
        element_type: ValueType,
        count: u64,
        offset: u64,
        depth: usize,
    ) -> Result<Array> {
        /// Reads `count` fixed-size items into a vector reserved after
        /// charging the budget.
        macro_rules! packed {
            ($variant:ident, $t:ty) => {{
                self.charge("array", count, size_of::<$t>())?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(<$t>::from_le_bytes(self.array("array item")?));
                }
                Array::$variant(items)
            }};
        }
        Ok(match element_type {
            ValueType::U8 => packed!(U8, u8),
            ValueType::I8 => packed!(I8, i8),
            ValueType::U16 => packed!(U16, u16),
            ValueType::I16 => packed!(I16, i16),
            ValueType::U32 => packed!(U32, u32),
            ValueType::I32 => packed!(I32, i32),
            ValueType::F32 => packed!(F32, f32),
            ValueType::U64 => packed!(U64, u64),
            ValueType::I64 => packed!(I64, i64),
            ValueType::F64 => packed!(F64, f64),
            ValueType::Bool => {
                self.charge("array", count, size_of::<bool>())?;
                let raw = self.take(count, "array item")?;
                Array::Bool(raw.iter().map(|&b| b != 0).collect())
            }
            ValueType::String => {
                self.charge("array", count, size_of::<String>())?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.string("string value")?);
                }
                Array::String(items)
            }
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        offset,
                        depth: depth + 1,
                        max: MAX_ARRAY_DEPTH,
                    });
                }
                self.charge("array", count, size_of::<Array>())?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let element_type = self.value_type()?;
                    let count = self.u64("array length")?;
                    self.check_count("array element", count, element_type.min_encoded_len())?;
                    items.push(self.array_items(element_type, count, offset, depth + 1)?);
                }
                Array::Array(items)
            }
        })
    }

    fn tensor_info(&mut self, alignment: u64) -> Result<TensorInfo> {
        let name = self.string("tensor name")?;
        let n_dims = self.u32("tensor dimension count")?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(GgufError::InvalidDimCount {
                tensor: name,
                n_dims,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64("tensor dimension")?);
        }
        let type_id = self.u32("tensor type")?;
        let offset = self.u64("tensor offset")?;

        if let Some(dim) = dims.iter().position(|&d| d == 0) {
            return Err(GgufError::ZeroDimension { tensor: name, dim });
        }
        // ggml stores element counts as int64_t.
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64);
        if n_elements.is_none() {
            return Err(GgufError::ElementCountOverflow { tensor: name, dims });
        }
        let Some(ggml_type) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownTensorType {
                tensor: name,
                ggml_type: type_id,
            });
        };
        if dims[0] % ggml_type.block_size != 0 {
            return Err(GgufError::RowNotBlockAligned {
                tensor: name,
                ne0: dims[0],
                block_size: ggml_type.block_size,
            });
        }
        let size = ggml_type
            .row_bytes(dims[0])
            .and_then(|row| dims[1..].iter().try_fold(row, |acc, &d| acc.checked_mul(d)));
        let Some(size) = size else {
            return Err(GgufError::ByteSizeOverflow { tensor: name });
        };
        if offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: name,
                offset,
                alignment,
            });
        }
        Ok(TensorInfo {
            name,
            ggml_type,
            dims,
            offset,
            size,
        })
    }
}
