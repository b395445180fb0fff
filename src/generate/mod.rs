//! Target-only generation: prompt in, tokens streamed out, stopping exactly
//! where llama.cpp's own decoding would (end-of-generation token, token
//! limit, full context). The speculative loop (src/speculative) keeps these rules.

use std::time::Instant;

use crate::engine::{ChatMessage, Context, EngineError, Logits, Model, Token, Utf8Stream};
use crate::metrics::GenerationStats;
use crate::sampling::{Sampler, SamplingParams};

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// The token limit was reached.
    MaxTokens,
    /// The context window is full.
    ContextFull,
    /// The caller's callback asked to stop.
    Callback,
}

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated token ids (without the end-of-generation token).
    pub tokens: Vec<Token>,
    /// Their text.
    pub text: String,
    /// Why it stopped.
    pub stop: StopReason,
    /// Counters and timings.
    pub stats: GenerationStats,
}

/// Turns user text into prompt tokens: through the model's chat template
/// (one user message) when `chat`, else as raw text.
pub fn prompt_tokens(model: &Model, text: &str, chat: bool) -> Result<Vec<Token>, EngineError> {
    if chat {
        let formatted = model.apply_chat_template(&[ChatMessage::user(text)])?;
        model.tokenize(&formatted, true, true)
    } else {
        model.tokenize(text, true, false)
    }
}

/// Streams the text of accepted tokens to a callback and records them.
/// The callback gets (token, newly complete text) and returns false to stop.
pub struct TokenSink<'a, F: FnMut(Token, &str) -> bool> {
    model: &'a Model,
    stream: Utf8Stream,
    piece: Vec<u8>,
    tokens: Vec<Token>,
    text: String,
    on_token: F,
}

impl<'a, F: FnMut(Token, &str) -> bool> TokenSink<'a, F> {
    /// A sink for `model`'s tokens.
    pub fn new(model: &'a Model, on_token: F) -> Self {
        Self {
            model,
            stream: Utf8Stream::new(),
            piece: Vec::with_capacity(64),
            tokens: Vec::new(),
            text: String::new(),
            on_token,
        }
    }

    /// Records a token; false if the callback asked to stop.
    pub fn push(&mut self, token: Token) -> Result<bool, EngineError> {
        self.model.token_bytes(token, false, &mut self.piece)?;
        let new_text = self.stream.push(&self.piece);
        self.text.push_str(&new_text);
        self.tokens.push(token);
        Ok((self.on_token)(token, &new_text))
    }

    /// Tokens recorded so far.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Flushes the text stream; returns (tokens, text).
    pub fn finish(mut self) -> (Vec<Token>, String) {
        let tail = self.stream.finish();
        if !tail.is_empty() {
            self.text.push_str(&tail);
            (self.on_token)(-1, &tail);
        }
        (self.tokens, self.text)
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How to pick tokens.
    pub sampling: SamplingParams,
    /// Never produce end-of-generation tokens (fixed-length runs for benchmarks).
    pub ignore_eos: bool,
}

impl GenerateParams {
    /// Greedy decoding of up to `max_tokens`.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            sampling: SamplingParams::greedy(),
            ignore_eos: false,
        }
    }

    /// A sampler for these settings (EOG tokens banned under `ignore_eos`).
    pub fn sampler(&self, model: &Model) -> Sampler {
        let mut sampler = Sampler::new(self.sampling);
        if self.ignore_eos {
            sampler.ban(model.eog_tokens());
        }
        sampler
    }
}

/// A generation needs at least one prompt token (its logits give the first token).
pub fn check_prompt(prompt: &[Token]) -> Result<(), EngineError> {
    if prompt.is_empty() {
        return Err(EngineError::InvalidParam {
            name: "prompt",
            value: "0 tokens".into(),
            reason: "needs at least one token",
        });
    }
    Ok(())
}

/// Generates with the target alone. The context is cleared first.
pub fn generate_target_only(
    ctx: &mut Context,
    prompt: &[Token],
    params: &GenerateParams,
    on_token: impl FnMut(Token, &str) -> bool,
) -> Result<Generation, EngineError> {
    let max_tokens = params.max_tokens;
    check_prompt(prompt)?;
    let model = ctx.model().clone();
    let mut sampler = params.sampler(&model);
    let mut sink = TokenSink::new(&model, on_token);
    let mut stats = GenerationStats {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    ctx.clear();
    let start = Instant::now();
    ctx.decode(prompt, Logits::Last)?;
    stats.prompt_time = start.elapsed();
    let decode_start = Instant::now();

    let stop = loop {
        if sink.tokens().len() >= max_tokens {
            break StopReason::MaxTokens;
        }
        let token = sampler.sample(ctx.logits(0)?);
        if model.is_eog(token) {
            break StopReason::EndOfGeneration;
        }
        let keep_going = sink.push(token)?;
        if sink.tokens().len() == 1 {
            stats.time_to_first_token = start.elapsed();
        }
        if !keep_going {
            break StopReason::Callback;
        }
        if sink.tokens().len() >= max_tokens {
            break StopReason::MaxTokens;
        }
        if ctx.n_past() >= ctx.n_ctx() as usize {
            break StopReason::ContextFull;
        }
        ctx.decode(&[token], Logits::Last)?;
    };
    stats.decode_time = decode_start.elapsed();
    let (tokens, text) = sink.finish();
    stats.generated_tokens = tokens.len();
    Ok(Generation {
        tokens,
        text,
        stop,
        stats,
    })
}
