//! Token-embedding rows read from a GGUF through our mmap reader and
//! dequantized with ggml's own type traits (half for f16): the input side of
//! a drafter whose own embedding table was trimmed.

use half::f16;
use llama_cpp_sys_2 as sys;

use super::{EngineError, Token};
use crate::gguf::{GgufFile, TensorInfo, TOKEN_EMBD};

/// Converts one row of a ggml type to f32.
#[derive(Clone, Copy)]
enum RowDecoder {
    F32,
    F16,
    /// ggml's `to_float` for the type.
    Ggml(unsafe extern "C" fn(*const std::ffi::c_void, *mut f32, i64)),
}

/// The full token-embedding table of a model file.
pub struct EmbeddingTable {
    file: GgufFile,
    tensor: TensorInfo,
    decoder: RowDecoder,
    scale: f32,
}

impl std::fmt::Debug for EmbeddingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingTable")
            .field("type", &self.tensor.ggml_type.name)
            .field("dims", &self.tensor.dims)
            .field("scale", &self.scale)
            .finish()
    }
}

/// The factor an architecture's graph applies to token embeddings only when
/// it embeds token ids itself (so it must be applied on the host when the
/// input is given as embeddings): Gemma models scale by sqrt(n_embd).
pub fn input_embedding_scale(architecture: &str, n_embd: u64) -> f32 {
    if architecture.starts_with("gemma") {
        (n_embd as f32).sqrt()
    } else {
        1.0
    }
}

impl EmbeddingTable {
    /// Opens `token_embd.weight` of `file`.
    pub fn new(file: GgufFile) -> Result<Self, EngineError> {
        let tensor = file.tensor(TOKEN_EMBD).cloned().ok_or_else(|| {
            crate::gguf::GgufError::MissingTensor {
                name: TOKEN_EMBD.into(),
            }
        })?;
        let decoder = match tensor.ggml_type.id {
            0 => RowDecoder::F32,
            1 => RowDecoder::F16,
            id => {
                // SAFETY: ggml_get_type_traits indexes a static table; the id
                // came from our type table, which only holds ids ggml knows.
                let traits = unsafe { sys::ggml_get_type_traits(id as sys::ggml_type).as_ref() };
                match traits.and_then(|t| t.to_float) {
                    Some(f) => RowDecoder::Ggml(f),
                    None => {
                        return Err(EngineError::InvalidParam {
                            name: "token_embd.weight type",
                            value: tensor.ggml_type.name.into(),
                            reason: "ggml cannot dequantize this type",
                        })
                    }
                }
            }
        };
        let arch = file.architecture()?.to_owned();
        let scale = input_embedding_scale(&arch, tensor.dims[0]);
        Ok(Self {
            file,
            tensor,
            decoder,
            scale,
        })
    }

    /// Embedding width.
    pub fn n_embd(&self) -> usize {
        self.tensor.dims[0] as usize
    }

    /// Rows (vocabulary size of the source file).
    pub fn n_rows(&self) -> u64 {
        self.tensor.n_rows()
    }

    /// Writes the (scaled) embedding of `token` into `out` (n_embd floats).
    pub fn row_into(&self, token: Token, out: &mut [f32]) -> Result<(), EngineError> {
        let n = self.n_embd();
        let bytes = u64::try_from(token)
            .ok()
            .and_then(|t| self.file.tensor_row(&self.tensor, t))
            .ok_or(EngineError::TokenOutOfRange {
                token,
                n_vocab: self.n_rows() as i32,
            })?;
        let out = &mut out[..n];
        match self.decoder {
            RowDecoder::F32 => {
                for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                }
            }
            RowDecoder::F16 => {
                for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_le_bytes([chunk[0], chunk[1]]).to_f32();
                }
            }
            // SAFETY: bytes is exactly one row of n elements of this type
            // (checked by the GGUF reader) and out has room for n floats.
            RowDecoder::Ggml(to_float) => unsafe {
                to_float(bytes.as_ptr().cast(), out.as_mut_ptr(), n as i64)
            },
        }
        if self.scale != 1.0 {
            out.iter_mut().for_each(|x| *x *= self.scale);
        }
        Ok(())
    }
}
