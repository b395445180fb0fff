//! Tiny random-weight llama-architecture models, written with our GGUF
//! writer. llama.cpp loads them like any model, so tests that need a model
//! run in milliseconds and without downloads, and a GPU machine can build
//! one where no model can be carried.

use std::borrow::Cow;
use std::path::Path;

use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::gguf::{Array, GgmlType, GgufError, GgufWriter, TensorToWrite, Value};

/// Shape of a synthetic model.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// Whole-word tokens besides the 3 specials and 256 byte tokens.
    pub n_words: usize,
    /// Embedding width.
    pub n_embd: u64,
    /// Transformer blocks.
    pub n_layer: u32,
    /// Attention heads.
    pub n_head: u64,
    /// Key/value heads (grouped-query attention when fewer than n_head).
    pub n_head_kv: u64,
    /// Feed-forward width.
    pub n_ff: u64,
    /// Trained context length.
    pub n_ctx: u32,
    /// Share the embedding as LM head (no output.weight).
    pub tied_head: bool,
    /// Store matrices as f16 instead of f32.
    pub f16_weights: bool,
    /// Weight RNG seed.
    pub seed: u64,
    /// Standard deviation scale of the weights; larger gives peakier logits.
    pub weight_scale: f32,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            n_words: 61,
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 128,
            n_ctx: 512,
            tied_head: false,
            f16_weights: false,
            seed: 1,
            weight_scale: 1.0,
        }
    }
}

/// The chat template every synthetic model carries (ChatML).
const CHATML: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n";

/// Id of the beginning-of-sequence token in every synthetic model.
pub const BOS: i32 = 1;
/// Id of the end-of-sequence token in every synthetic model.
pub const EOS: i32 = 2;

impl SyntheticSpec {
    /// Vocabulary size: 3 specials, 256 byte tokens, the words.
    pub fn n_vocab(&self) -> usize {
        3 + 256 + self.n_words
    }

    /// Writes the model to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut w = GgufWriter::new();
        self.metadata(&mut w);
        let v = self.n_vocab() as u64;
        let (e, ff) = (self.n_embd, self.n_ff);
        let kv = e / self.n_head * self.n_head_kv;
        let mut put = |name: String, dims: Vec<u64>, norm: bool, rng: &mut ChaCha8Rng| {
            let n: u64 = dims.iter().product();
            let fan_in = dims[0] as f32;
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    if norm {
                        1.0
                    } else {
                        (rng.random::<f32>() * 2.0 - 1.0) * self.weight_scale * 1.7 / fan_in.sqrt()
                    }
                })
                .collect();
            let (ggml_type, data) = if self.f16_weights && !norm {
                (
                    GgmlType::from_id(1),
                    values
                        .iter()
                        .flat_map(|x| f16::from_f32(*x).to_le_bytes())
                        .collect(),
                )
            } else {
                (
                    GgmlType::from_id(0),
                    values
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect::<Vec<u8>>(),
                )
            };
            w.put_tensor(TensorToWrite {
                name,
                ggml_type: ggml_type.expect("f32 and f16 are in the type table"),
                dims,
                data: Cow::Owned(data),
            });
        };
        put("token_embd.weight".into(), vec![e, v], false, &mut rng);
        put("output_norm.weight".into(), vec![e], true, &mut rng);
        if !self.tied_head {
            put("output.weight".into(), vec![e, v], false, &mut rng);
        }
        for i in 0..self.n_layer {
            put(format!("blk.{i}.attn_norm.weight"), vec![e], true, &mut rng);
            put(
                format!("blk.{i}.attn_q.weight"),
                vec![e, e],
                false,
                &mut rng,
            );
            put(
                format!("blk.{i}.attn_k.weight"),
                vec![e, kv],
                false,
                &mut rng,
            );
            put(
                format!("blk.{i}.attn_v.weight"),
                vec![e, kv],
                false,
                &mut rng,
            );
            put(
                format!("blk.{i}.attn_output.weight"),
                vec![e, e],
                false,
                &mut rng,
            );
            put(format!("blk.{i}.ffn_norm.weight"), vec![e], true, &mut rng);
            put(
                format!("blk.{i}.ffn_gate.weight"),
                vec![e, ff],
                false,
                &mut rng,
            );
            put(
                format!("blk.{i}.ffn_up.weight"),
                vec![e, ff],
                false,
                &mut rng,
            );
            put(
                format!("blk.{i}.ffn_down.weight"),
                vec![ff, e],
                false,
                &mut rng,
            );
        }
        w.write_to(path)
    }

    fn metadata(&self, w: &mut GgufWriter<'_>) {
        let s = |x: &str| Value::String(x.to_owned());
        w.set("general.architecture", s("llama"))
            .set("general.name", s("edgespec synthetic"))
            .set("llama.context_length", Value::U32(self.n_ctx))
            .set("llama.embedding_length", Value::U32(self.n_embd as u32))
            .set("llama.block_count", Value::U32(self.n_layer))
            .set("llama.feed_forward_length", Value::U32(self.n_ff as u32))
            .set("llama.attention.head_count", Value::U32(self.n_head as u32))
            .set(
                "llama.attention.head_count_kv",
                Value::U32(self.n_head_kv as u32),
            )
            .set("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
            .set(
                "llama.rope.dimension_count",
                Value::U32((self.n_embd / self.n_head) as u32),
            )
            .set("llama.vocab_size", Value::U32(self.n_vocab() as u32))
            .set("tokenizer.ggml.model", s("llama"));
        // SentencePiece vocabulary: specials, byte fallback, then words.
        let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(str::to_owned).into();
        let mut types = vec![2, 3, 3];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
        }
        for i in 0..self.n_words {
            tokens.push(format!("\u{2581}{}", word(i)));
            types.push(1);
        }
        let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
        w.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))
            .set("tokenizer.ggml.scores", Value::Array(Array::F32(scores)))
            .set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)))
            .set("tokenizer.ggml.unknown_token_id", Value::U32(0))
            .set("tokenizer.ggml.bos_token_id", Value::U32(BOS as u32))
            .set("tokenizer.ggml.eos_token_id", Value::U32(EOS as u32))
            .set("tokenizer.ggml.add_bos_token", Value::Bool(true))
            // ChatML, which llama.cpp's built-in template engine recognises.
            .set("tokenizer.chat_template", s(CHATML));
    }
}

/// The i-th word of the synthetic vocabulary: distinct lower-case strings.
fn word(i: usize) -> String {
    const SYLLABLES: [&str; 8] = ["ka", "lo", "mi", "ne", "su", "ta", "ro", "vi"];
    let mut out = String::new();
    let mut n = i + 1;
    while n > 0 {
        out.push_str(SYLLABLES[n % 8]);
        n /= 8;
    }
    out
}
