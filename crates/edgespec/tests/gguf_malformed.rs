//! The GGUF reader on files built byte by byte: every malformation gets its
//! own typed error, and no input makes it panic.

use edgespec::gguf::{
    parse, Array, GgmlType, GgufError, GgufFile, GgufWriter, TensorToWrite, Value, ValueType,
    MAX_PARSED_BYTES,
};
use proptest::prelude::*;

use edgespec_testing as common;
use std::borrow::Cow;

/// Little-endian GGUF byte builder.
#[derive(Default, Clone)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut b = Bytes::default();
        b.raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        b
    }
    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    fn string(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.string(key).u32(ValueType::U32 as u32).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.string(name).u32(dims.len() as u32);
        for d in dims {
            self.u64(*d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to the 32-byte data alignment, then appends `n` data bytes.
    fn data(&mut self, n: usize) -> &mut Self {
        while self.0.len() % 32 != 0 {
            self.0.push(0);
        }
        self.0.extend(std::iter::repeat_n(7u8, n));
        self
    }
}

/// A valid file: one u32 key and two f32 tensors of 8 elements.
fn valid() -> Bytes {
    let mut b = Bytes::header(3, 2, 1);
    b.kv_u32("test.answer", 42)
        .tensor("a", &[8], 0, 0)
        .tensor("b", &[8], 0, 32)
        .data(64);
    b
}

fn err(b: &Bytes) -> GgufError {
    parse(&b.0).expect_err("malformed file was accepted")
}

#[test]
fn valid_file_parses() {
    let layout = parse(&valid().0).unwrap();
    assert_eq!(layout.version, 3);
    assert_eq!(layout.tensors.len(), 2);
    assert_eq!(layout.tensors[1].size, 32);
    assert_eq!(
        layout.metadata[0],
        ("test.answer".to_owned(), Value::U32(42))
    );
}

#[test]
fn bad_magic() {
    let mut b = valid();
    b.0[0] = b'X';
    assert!(matches!(err(&b), GgufError::BadMagic { found } if &found == b"XGUF"));
}

#[test]
fn unsupported_versions() {
    for version in [0, 1, 4, 0x0300_0000] {
        let mut b = valid();
        b.0[4..8].copy_from_slice(&u32::to_le_bytes(version));
        assert!(matches!(err(&b), GgufError::UnsupportedVersion { version: v } if v == version));
    }
}

#[test]
fn truncation_at_every_byte_is_an_error() {
    let full = valid();
    // The last tensor ends exactly at the end, so every shorter prefix is invalid.
    for len in 0..full.0.len() {
        let cut = Bytes(full.0[..len].to_vec());
        match parse(&cut.0) {
            Err(GgufError::Truncated { .. })
            | Err(GgufError::TensorOutOfBounds { .. })
            | Err(GgufError::CountTooLarge { .. }) => {}
            other => panic!("prefix of {len} bytes gave {other:?}"),
        }
    }
}

#[test]
fn counts_that_cannot_fit() {
    let mut b = Bytes::header(3, 0, u64::MAX);
    b.raw(&[0; 16]);
    assert!(matches!(
        err(&b),
        GgufError::CountTooLarge {
            what: "metadata",
            count: u64::MAX,
            ..
        }
    ));
    let mut b = Bytes::header(3, 1 << 40, 0);
    b.raw(&[0; 64]);
    assert!(matches!(
        err(&b),
        GgufError::CountTooLarge { what: "tensor", .. }
    ));
    // An array claiming more elements than bytes left.
    let mut b = Bytes::header(3, 0, 1);
    b.string("k")
        .u32(ValueType::Array as u32)
        .u32(ValueType::U64 as u32)
        .u64(1 << 50);
    assert!(matches!(
        err(&b),
        GgufError::CountTooLarge {
            what: "array element",
            ..
        }
    ));
}

#[test]
fn claims_over_the_memory_cap_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    for (what, path) in common::sparse_oversized_files(dir.path()) {
        let e = GgufFile::open(&path).expect_err(what);
        assert!(
            matches!(
                e,
                GgufError::ParsedTooLarge {
                    cap: MAX_PARSED_BYTES,
                    ..
                }
            ),
            "{what}: {e}"
        );
    }
}

#[test]
fn real_bytes_over_the_memory_cap_are_refused() {
    // Three 24 MiB strings: each fits the string cap, together they pass
    // the parse's 64 MiB.
    let len = 24u64 << 20;
    let mut b = Bytes::header(3, 0, 1);
    b.string("k")
        .u32(ValueType::Array as u32)
        .u32(ValueType::String as u32)
        .u64(3);
    for _ in 0..3 {
        b.u64(len).raw(&vec![b'a'; len as usize]);
    }
    assert!(matches!(
        err(&b),
        GgufError::ParsedTooLarge {
            what: "string value",
            ..
        }
    ));
}

#[test]
fn string_over_cap() {
    let mut b = Bytes::header(3, 0, 1);
    b.u64(u64::MAX).raw(&[0; 16]);
    assert!(matches!(
        err(&b),
        GgufError::StringTooLong { len: u64::MAX, .. }
    ));
}

#[test]
fn invalid_utf8_key() {
    let mut b = Bytes::header(3, 0, 1);
    b.u64(2)
        .raw(&[0xff, 0xfe])
        .u32(ValueType::U8 as u32)
        .raw(&[1]);
    assert!(matches!(
        err(&b),
        GgufError::InvalidUtf8 {
            what: "metadata key",
            offset: 32
        }
    ));
}

#[test]
fn unknown_value_type() {
    let mut b = Bytes::header(3, 0, 1);
    b.string("k").u32(13).u32(0);
    assert!(matches!(
        err(&b),
        GgufError::UnknownValueType { value_type: 13, .. }
    ));
}

#[test]
fn nested_arrays_deeper_than_cap() {
    let mut b = Bytes::header(3, 0, 1);
    b.string("k");
    b.u32(ValueType::Array as u32);
    for _ in 0..20 {
        b.u32(ValueType::Array as u32).u64(1);
    }
    b.raw(&[0; 64]);
    assert!(matches!(err(&b), GgufError::NestingTooDeep { .. }));
}

#[test]
fn nested_array_reads() {
    let mut b = Bytes::header(3, 0, 1);
    b.string("k").u32(ValueType::Array as u32);
    b.u32(ValueType::Array as u32).u64(2);
    b.u32(ValueType::U32 as u32).u64(1).u32(5);
    b.u32(ValueType::U32 as u32).u64(0);
    let layout = parse(&b.0).unwrap();
    assert_eq!(
        layout.metadata[0].1,
        Value::Array(Array::Array(vec![Array::U32(vec![5]), Array::U32(vec![])]))
    );
}

#[test]
fn duplicate_key() {
    let mut b = Bytes::header(3, 0, 2);
    b.kv_u32("k", 1).kv_u32("k", 2);
    assert!(matches!(err(&b), GgufError::DuplicateKey { key } if key == "k"));
}

#[test]
fn alignment_zero_not_power_of_two_or_wrong_type() {
    for a in [0, 3, 48] {
        let mut b = Bytes::header(3, 0, 1);
        b.kv_u32("general.alignment", a);
        assert!(
            matches!(err(&b), GgufError::InvalidAlignment { alignment } if alignment == u64::from(a))
        );
    }
    let mut b = Bytes::header(3, 0, 1);
    b.string("general.alignment")
        .u32(ValueType::U64 as u32)
        .u64(32);
    assert!(matches!(
        err(&b),
        GgufError::AlignmentType {
            found: ValueType::U64
        }
    ));
}

#[test]
fn dims_count_zero_or_over_four() {
    for dims in [&[][..], &[1, 1, 1, 1, 1][..]] {
        let mut b = Bytes::header(3, 1, 0);
        b.tensor("t", dims, 0, 0).data(4);
        assert!(
            matches!(err(&b), GgufError::InvalidDimCount { n_dims, .. } if n_dims as usize == dims.len())
        );
    }
}

#[test]
fn zero_dimension() {
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("t", &[4, 0], 0, 0).data(16);
    assert!(matches!(err(&b), GgufError::ZeroDimension { dim: 1, .. }));
}

#[test]
fn element_count_overflow() {
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("t", &[1 << 32, 1 << 32], 0, 0).data(4);
    assert!(matches!(err(&b), GgufError::ElementCountOverflow { .. }));
}

#[test]
fn byte_size_overflow() {
    // 2^62 f32 elements fit in i64 elements but not in u64 bytes.
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("t", &[1 << 31, 1 << 31], 0, 0).data(4);
    assert!(matches!(err(&b), GgufError::ByteSizeOverflow { .. }));
}

#[test]
fn unknown_tensor_type() {
    for ty in [4, 31, 99] {
        let mut b = Bytes::header(3, 1, 0);
        b.tensor("t", &[32], ty, 0).data(128);
        assert!(
            matches!(err(&b), GgufError::UnknownTensorType { ggml_type, .. } if ggml_type == ty)
        );
    }
}

#[test]
fn row_not_whole_blocks() {
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("t", &[100], 12, 0).data(144);
    assert!(matches!(
        err(&b),
        GgufError::RowNotBlockAligned {
            ne0: 100,
            block_size: 256,
            ..
        }
    ));
}

#[test]
fn misaligned_offset() {
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("t", &[4], 0, 4).data(64);
    assert!(matches!(
        err(&b),
        GgufError::MisalignedTensor {
            offset: 4,
            alignment: 32,
            ..
        }
    ));
}

#[test]
fn tensor_outside_file() {
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("t", &[64], 0, 0).data(100);
    assert!(
        matches!(err(&b), GgufError::TensorOutOfBounds { end, .. } if end == b.0.len() as u64 + 156)
    );
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("t", &[1], 0, u64::MAX - 31).data(4);
    assert!(matches!(err(&b), GgufError::ByteSizeOverflow { .. }));
}

#[test]
fn overlapping_tensors() {
    let mut b = Bytes::header(3, 2, 0);
    b.tensor("a", &[16], 0, 0).tensor("b", &[8], 0, 32).data(96);
    assert!(
        matches!(err(&b), GgufError::OverlappingTensors { first, second } if first == "a" && second == "b")
    );
}

#[test]
fn duplicate_tensor_names() {
    let mut b = Bytes::header(3, 2, 0);
    b.tensor("a", &[8], 0, 0).tensor("a", &[8], 0, 32).data(64);
    assert!(matches!(err(&b), GgufError::DuplicateTensor { name } if name == "a"));
}

#[test]
fn wrong_path_is_io_error() {
    let e = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    assert!(matches!(e, GgufError::Io { ref path, .. } if path.ends_with("model.gguf")));
    assert!(e.to_string().contains("/nonexistent/model.gguf"));
}

#[test]
fn writer_round_trip_in_memory() {
    let f32_type = GgmlType::from_id(0).unwrap();
    let q4_0 = GgmlType::from_id(2).unwrap();
    let data: Vec<u8> = (0..=255u8).cycle().take(18 * 6).collect();
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("test".into()))
        .set("general.alignment", Value::U32(64))
        .set(
            "nested",
            Value::Array(Array::Array(vec![Array::String(vec!["x".into()])])),
        )
        .put_tensor(TensorToWrite {
            name: "q".into(),
            ggml_type: q4_0,
            dims: vec![64, 3],
            data: Cow::Borrowed(&data),
        })
        .put_tensor(TensorToWrite {
            name: "f".into(),
            ggml_type: f32_type,
            dims: vec![3],
            data: Cow::Owned(vec![1; 12]),
        });
    let bytes = w.to_bytes().unwrap();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert_eq!(file.layout().alignment, 64);
    assert_eq!(file.layout().data_offset % 64, 0);
    assert_eq!(file.metadata(), w.metadata());
    assert_eq!(file.tensor_data(file.tensor("q").unwrap()), &data[..]);
    assert_eq!(
        file.tensor_row(file.tensor("q").unwrap(), 2).unwrap(),
        &data[72..108]
    );
    assert!(file.tensor_row(file.tensor("q").unwrap(), 3).is_none());
    // Writing what was read gives the same bytes.
    assert_eq!(GgufWriter::from_file(&file).to_bytes().unwrap(), bytes);
}

#[test]
fn writer_rejects_wrong_sizes() {
    let mut w = GgufWriter::new();
    w.put_tensor(TensorToWrite {
        name: "t".into(),
        ggml_type: GgmlType::from_id(0).unwrap(),
        dims: vec![4],
        data: Cow::Owned(vec![0; 15]),
    });
    assert!(matches!(
        w.to_bytes(),
        Err(GgufError::TensorSizeMismatch {
            expected: 16,
            got: 15,
            ..
        })
    ));
}

#[test]
fn write_to_leaves_no_partial_file_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let mut w = GgufWriter::new();
    w.set("general.alignment", Value::U32(3));
    assert!(w.write_to(&path).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any byte flipped anywhere: an error or a valid layout, never a panic.
    #[test]
    fn corrupted_bytes_never_panic(pos in 0usize..160, byte in any::<u8>(), cut in 0usize..200) {
        let mut b = valid().0;
        let pos = pos % b.len();
        b[pos] = byte;
        b.truncate(cut.min(b.len()));
        let _ = parse(&b);
    }

    /// Random garbage after a valid magic and version.
    #[test]
    fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut b = Bytes::header(3, 0, 0).0;
        b.truncate(8);
        b.extend(body);
        let _ = parse(&b);
    }
}
