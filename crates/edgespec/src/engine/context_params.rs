//! How a context is made: its window, batch, threads, flash attention,
//! KV cache types and whether a lone position is padded; each setting
//! checked before anything reaches llama.cpp.

use llama_cpp_sys_2 as sys;

use super::EngineError;

/// Flash attention (llama.cpp's `-fa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashAttention {
    /// llama.cpp's choice: on where the backend supports it.
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// What the KV cache stores keys or values as (llama.cpp's `-ctk`, `-ctv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheType {
    /// Half precision (llama.cpp's default).
    #[default]
    F16,
    /// 8-bit blocks: half the memory of f16.
    Q8_0,
    /// 4-bit blocks: a quarter of the memory of f16.
    Q4_0,
}

impl CacheType {
    /// llama.cpp's name for it (`-ctk`, `-ctv`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }

    /// Values per quantized block: a head's keys or values are stored in
    /// whole blocks.
    pub(super) fn block(self) -> i32 {
        match self {
            Self::F16 => 1,
            Self::Q8_0 | Self::Q4_0 => 32,
        }
    }

    pub(super) fn ggml(self) -> sys::ggml_type {
        match self {
            Self::F16 => sys::GGML_TYPE_F16,
            Self::Q8_0 => sys::GGML_TYPE_Q8_0,
            Self::Q4_0 => sys::GGML_TYPE_Q4_0,
        }
    }
}

impl std::str::FromStr for CacheType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::F16, Self::Q8_0, Self::Q4_0]
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown cache type {s:?}: use f16, q8_0 or q4_0"))
    }
}

impl FlashAttention {
    /// llama.cpp's name for it (`-fa`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

impl std::str::FromStr for FlashAttention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Auto, Self::On, Self::Off]
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown flash attention setting {s:?}: use auto, on or off"))
    }
}

/// How to create a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextParams {
    /// Context window in tokens.
    pub n_ctx: u32,
    /// Most tokens one decode call takes (longer inputs are split).
    pub n_batch: u32,
    /// Threads for single-token decoding.
    pub n_threads: i32,
    /// Threads for batches (prompt, verification).
    pub n_threads_batch: i32,
    /// Flash attention.
    pub flash_attn: FlashAttention,
    /// What the KV cache stores keys as.
    pub type_k: CacheType,
    /// What the KV cache stores values as (a quantized type needs flash
    /// attention).
    pub type_v: CacheType,
    /// Never compute a lone position: pad it to a batch of two (the pad's
    /// cell dropped again). ggml computes a single row with other kernels
    /// than a few (flash attention splits the cache over threads for one
    /// query), so with this a position's logits are the same whether
    /// plain decoding or a short verification computes them: exact mode
    /// ([`crate::speculative::PolicyConfig::exact`]) sets it on the target.
    /// Costs the second row of every single-token pass.
    pub pad_single: bool,
}

impl Default for ContextParams {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
        Self {
            n_ctx: 4096,
            n_batch: 512,
            n_threads: threads,
            n_threads_batch: threads,
            flash_attn: FlashAttention::Auto,
            type_k: CacheType::F16,
            type_v: CacheType::F16,
            pad_single: false,
        }
    }
}

/// Largest context window edgespec accepts, in tokens.
pub const MAX_CONTEXT: u32 = 1 << 20;

impl ContextParams {
    /// Checks every field before anything reaches llama.cpp.
    pub fn validate(&self) -> Result<(), EngineError> {
        let invalid = |name, value: String, reason| {
            Err(EngineError::InvalidParam {
                name,
                value,
                reason,
            })
        };
        if self.n_ctx == 0 || self.n_ctx > MAX_CONTEXT {
            return invalid("n_ctx", self.n_ctx.to_string(), "must be in 1..=1048576");
        }
        if self.n_batch < 1 + u32::from(self.pad_single) {
            return invalid(
                "n_batch",
                self.n_batch.to_string(),
                "must be at least 1 (2 when a lone position is padded)",
            );
        }
        if self.type_v != CacheType::F16 && self.flash_attn == FlashAttention::Off {
            return invalid(
                "type_v",
                self.type_v.name().to_owned(),
                "a quantized value cache needs flash attention (not off)",
            );
        }
        if self.n_threads < 1 || self.n_threads > 1024 {
            return invalid(
                "n_threads",
                self.n_threads.to_string(),
                "must be in 1..=1024",
            );
        }
        if self.n_threads_batch < 1 || self.n_threads_batch > 1024 {
            return invalid(
                "n_threads_batch",
                self.n_threads_batch.to_string(),
                "must be in 1..=1024",
            );
        }
        Ok(())
    }
}
