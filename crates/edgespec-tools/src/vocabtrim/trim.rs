//! Building trimmed drafter files.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::{vocab_fingerprint, TokenCounts};
use edgespec::engine::{Model, ModelParams, Token};
use edgespec::gguf::{Array, GgufFile, GgufWriter, TensorToWrite, Value, OUTPUT, TOKEN_EMBD};
use edgespec::vocabtrim::{
    TrimError, KEY_IDS, KEY_SOURCE_FILE, KEY_SOURCE_VOCAB, KEY_VOCAB_FINGERPRINT,
};

/// Picks the K most frequent ids, always keeping `always` (end-of-generation
/// and other special tokens). Ties (above all the many ids calibration never
/// saw) go to the more frequent id in `prior` (e.g. raw-text counts), then to
/// the lower id. Returned ascending.
pub fn select_ids(
    counts: &TokenCounts,
    prior: Option<&TokenCounts>,
    k: usize,
    always: &[Token],
) -> Result<Vec<Token>, TrimError> {
    let vocab = counts.vocab_size;
    if let Some(p) = prior {
        if p.vocab_size != vocab || p.vocab_fingerprint != counts.vocab_fingerprint {
            return Err(TrimError::CountsVocabMismatch {
                expected: counts.vocab_fingerprint.clone(),
                expected_size: vocab,
                found: p.vocab_fingerprint.clone(),
                found_size: p.vocab_size,
            });
        }
    }
    let prior_count = |t: Token| prior.map_or(0, |p| p.counts[t as usize]);
    if k == 0 {
        return Err(TrimError::ZeroK);
    }
    if k > vocab {
        return Err(TrimError::KTooLarge { k, vocab });
    }
    let mut keep: Vec<Token> = always
        .iter()
        .copied()
        .filter(|&t| (t as usize) < vocab)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    if keep.len() > k {
        return Err(TrimError::KBelowSpecials {
            k,
            specials: keep.len(),
        });
    }
    let mut order: Vec<Token> = (0..vocab as Token).collect();
    order.sort_by(|&a, &b| {
        counts.counts[b as usize]
            .cmp(&counts.counts[a as usize])
            .then(prior_count(b).cmp(&prior_count(a)))
            .then(a.cmp(&b))
    });
    for t in order {
        if keep.len() == k {
            break;
        }
        if keep.binary_search(&t).is_err() {
            let at = keep.partition_point(|&x| x < t);
            keep.insert(at, t);
        }
    }
    Ok(keep)
}

fn slice_rows<'a>(
    file: &'a GgufFile,
    name: &str,
    ids: &[Token],
) -> Result<TensorToWrite<'a>, TrimError> {
    let t = file
        .tensor(name)
        .ok_or_else(|| TrimError::Unsupported(format!("no tensor {name}")))?;
    if t.dims.len() != 2 {
        return Err(TrimError::Unsupported(format!(
            "{name} has {} dimensions, expected 2",
            t.dims.len()
        )));
    }
    let mut data = Vec::with_capacity(t.row_bytes() as usize * ids.len());
    for &id in ids {
        let row = file
            .tensor_row(t, id as u64)
            .ok_or_else(|| TrimError::Unsupported(format!("{name} has no row {id}")))?;
        data.extend_from_slice(row);
    }
    Ok(TensorToWrite {
        name: name.to_owned(),
        ggml_type: t.ggml_type,
        dims: vec![t.dims[0], ids.len() as u64],
        data: Cow::Owned(data),
    })
}

/// Writes the trimmed drafter: `tokenizer.ggml.model = "none"`,
/// `<arch>.vocab_size = K`, `token_embd.weight` (and `output.weight` when
/// the head is untied) cut to the kept rows, row bytes copied as they are
/// (any quant type), and the kept ids plus the source's identity in the
/// metadata. Tokenizer arrays are dropped: the trimmed model never tokenizes.
pub fn trim_drafter(
    drafter: &GgufFile,
    source_path: &Path,
    fingerprint: &str,
    ids: &[Token],
    out: &Path,
) -> Result<(), TrimError> {
    let arch = drafter.architecture()?.to_owned();
    let vocab_rows = drafter
        .tensor(TOKEN_EMBD)
        .map(|t| t.n_rows())
        .ok_or_else(|| TrimError::Unsupported(format!("no tensor {TOKEN_EMBD}")))?;
    if let Some(&bad) = ids.iter().find(|&&t| t < 0 || t as u64 >= vocab_rows) {
        return Err(TrimError::BadTrimmedFile(format!(
            "id {bad} outside the drafter's {vocab_rows} rows"
        )));
    }
    let mut w = GgufWriter::from_file(drafter);
    let tokenizer_keys: Vec<String> = drafter
        .metadata()
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| k.starts_with("tokenizer."))
        .collect();
    for k in &tokenizer_keys {
        w.remove(k);
    }
    let k = ids.len() as u32;
    w.set("tokenizer.ggml.model", Value::String("none".into()))
        .set(&format!("{arch}.vocab_size"), Value::U32(k))
        .set(
            KEY_IDS,
            Value::Array(Array::U32(ids.iter().map(|&t| t as u32).collect())),
        )
        .set(KEY_SOURCE_VOCAB, Value::U64(vocab_rows))
        .set(
            KEY_SOURCE_FILE,
            Value::String(source_path.to_string_lossy().into_owned()),
        )
        .set(KEY_VOCAB_FINGERPRINT, Value::String(fingerprint.to_owned()));
    let name = drafter
        .get("general.name")
        .and_then(|v| v.as_str())
        .unwrap_or("drafter");
    w.set(
        "general.name",
        Value::String(format!("{name} (VocabTrim K={k})")),
    );
    w.put_tensor(slice_rows(drafter, TOKEN_EMBD, ids)?);
    if drafter.tensor(OUTPUT).is_some() {
        w.put_tensor(slice_rows(drafter, OUTPUT, ids)?);
    }
    w.write_to(out)?;
    Ok(())
}

/// A drafter and its calibration counts, ready to write trimmed drafters
/// for any K (the special tokens always kept).
pub struct Trimmer {
    counts: TokenCounts,
    prior: Option<TokenCounts>,
    file: GgufFile,
    source: PathBuf,
    fingerprint: String,
    specials: Vec<Token>,
}

impl Trimmer {
    /// Opens the drafter (vocabulary only) and checks the counts (and the
    /// tie-breaking `prior` counts, see [`select_ids`]) are for its vocabulary.
    pub fn new(
        drafter: &Path,
        counts: TokenCounts,
        prior: Option<TokenCounts>,
    ) -> Result<Self, TrimError> {
        let vocab = Model::load(
            drafter,
            &ModelParams {
                vocab_only: true,
                ..ModelParams::default()
            },
        )?;
        counts.check_vocab(&vocab)?;
        if let Some(p) = &prior {
            p.check_vocab(&vocab)?;
        }
        let specials = (0..vocab.n_vocab())
            .filter(|&t| vocab.is_eog(t) || vocab.is_control(t))
            .collect();
        Ok(Self {
            counts,
            prior,
            file: GgufFile::open(drafter)?,
            source: std::fs::canonicalize(drafter).unwrap_or_else(|_| drafter.to_owned()),
            fingerprint: vocab_fingerprint(&vocab),
            specials,
        })
    }

    /// The calibration counts.
    pub fn counts(&self) -> &TokenCounts {
        &self.counts
    }

    /// The source drafter file.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// Special ids that every trimmed drafter keeps.
    pub fn specials(&self) -> &[Token] {
        &self.specials
    }

    /// Writes the drafter trimmed to the `k` most used ids to `out`; returns the kept ids.
    pub fn write(&self, k: usize, out: &Path) -> Result<Vec<Token>, TrimError> {
        let ids = select_ids(&self.counts, self.prior.as_ref(), k, &self.specials)?;
        trim_drafter(&self.file, &self.source, &self.fingerprint, &ids, out)?;
        Ok(ids)
    }
}
