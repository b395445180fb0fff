//! What `edgespec inspect` reports: a model's shape and the bytes one decode
//! step reads, computed from the GGUF alone (no llama.cpp).

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::Result;
use super::GgufFile;

/// Name of the token-embedding table in llama.cpp's tensor naming.
pub const TOKEN_EMBD: &str = "token_embd.weight";
/// Name of the untied LM head.
pub const OUTPUT: &str = "output.weight";

/// Bytes and tensor count of one ggml type.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TypeShare {
    /// Tensors of this type.
    pub tensors: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// A model's shape and memory traffic per token.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelSummary {
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// GGUF version.
    pub gguf_version: u32,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Total parameters (elements of every tensor).
    pub parameters: u64,
    /// Vocabulary size: `<arch>.vocab_size`, else the tokenizer's token count,
    /// else the embedding table's row count.
    pub vocab_size: Option<u64>,
    /// Rows of the LM head (may exceed the token list: Qwen pads its head).
    pub head_rows: Option<u64>,
    /// `<arch>.context_length`.
    pub context_length: Option<u64>,
    /// `<arch>.embedding_length`.
    pub embedding_length: Option<u64>,
    /// `<arch>.block_count`.
    pub block_count: Option<u64>,
    /// True when there is no `output.weight` and the embedding doubles as head.
    pub tied_head: bool,
    /// Bytes and tensors per ggml type.
    pub types: BTreeMap<String, TypeShare>,
    /// Bytes one decode step reads: every tensor but the token embedding
    /// (one row per token, negligible); a tied embedding counts once, as head.
    pub bytes_per_token: u64,
    /// Bytes of the LM head.
    pub head_bytes: u64,
    /// `head_bytes / bytes_per_token`.
    pub head_share: f64,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Number of metadata keys.
    pub metadata_count: usize,
}

impl ModelSummary {
    /// Computes the summary of a validated file.
    pub fn of(file: &GgufFile) -> Result<Self> {
        let arch = file.architecture()?.to_owned();
        let arch_u64 = |suffix: &str| {
            file.get(&format!("{arch}.{suffix}"))
                .and_then(|v| v.as_u64())
        };

        let mut types: BTreeMap<String, TypeShare> = BTreeMap::new();
        let mut parameters = 0u64;
        let mut all_bytes = 0u64;
        for t in file.tensors() {
            let share = types
                .entry(t.ggml_type.name.to_owned())
                .or_insert(TypeShare {
                    tensors: 0,
                    bytes: 0,
                });
            share.tensors += 1;
            share.bytes += t.size;
            parameters = parameters.saturating_add(t.n_elements());
            all_bytes = all_bytes.saturating_add(t.size);
        }

        let embd = file.tensor(TOKEN_EMBD);
        let output = file.tensor(OUTPUT);
        let tied_head = output.is_none() && embd.is_some();
        let head = output.or(embd);
        let head_bytes = head.map_or(0, |t| t.size);
        let embd_bytes = embd.map_or(0, |t| t.size);
        let bytes_per_token = if tied_head {
            all_bytes
        } else {
            all_bytes - embd_bytes
        };
        let token_count = file
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .map(|a| a.len() as u64);
        Ok(Self {
            name: file
                .get("general.name")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            gguf_version: file.layout().version,
            file_bytes: file.file_len(),
            parameters,
            vocab_size: arch_u64("vocab_size")
                .or(token_count)
                .or(embd.and_then(|t| t.dims.get(1).copied())),
            head_rows: head.and_then(|t| t.dims.get(1).copied()),
            context_length: arch_u64("context_length"),
            embedding_length: arch_u64("embedding_length"),
            block_count: arch_u64("block_count"),
            tied_head,
            types,
            bytes_per_token,
            head_bytes,
            head_share: if bytes_per_token == 0 {
                0.0
            } else {
                head_bytes as f64 / bytes_per_token as f64
            },
            tensor_count: file.tensors().len(),
            metadata_count: file.metadata().len(),
            architecture: arch,
        })
    }
}
