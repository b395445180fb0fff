//! Target-only generation: prompt in, tokens streamed out, stopping exactly
//! where llama.cpp's own decoding would (end-of-generation token, token
//! limit, full context, a stop string). Every engine emits through the one
//! [`Emitter`], so every engine keeps these rules.

pub mod stop;

pub use stop::StopStrings;

use std::borrow::Cow;
use std::time::Instant;

use crate::engine::{
    ChatMessage, EngineError, Grammar, Logits, Model, Sequence, Token, Utf8Stream,
};
use crate::metrics::GenerationStats;
use crate::sampling::{History, Sampler, SamplingParams};

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
    /// The output reached a stop string (left out of it).
    StopString,
    /// The grammar allows no further token (it is complete and
    /// end-of-generation tokens are banned, or no token continues it).
    Grammar,
}

/// What the streaming callback is handed with each piece of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// A generated token, with the text it completed (empty while a
    /// character is incomplete or text could begin a stop string).
    Token(Token),
    /// The end of the stream: text that was held back until then.
    End,
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

/// The one emitter of every engine: streams each accepted token and its
/// newly complete text to the caller (who returns false to stop) and
/// applies the stop rules they share — an end-of-generation token ends
/// generation unemitted, the token limit ends it after the token that
/// reaches it.
pub struct Emitter<'a, F: FnMut(Piece, &str) -> bool> {
    model: &'a Model,
    /// Text that could begin a stop string is held back from `on_token`.
    stops: StopStrings,
    stream: Utf8Stream,
    piece: Vec<u8>,
    tokens: Vec<Token>,
    text: String,
    max_tokens: usize,
    first_token_at: Option<Instant>,
    on_token: F,
}

impl<'a, F: FnMut(Piece, &str) -> bool> Emitter<'a, F> {
    /// An emitter of up to `params.max_tokens` of `model`'s tokens, ending
    /// at the first of `params.stops`.
    pub fn new(model: &'a Model, params: &GenerateParams, on_token: F) -> Self {
        let max_tokens = params.max_tokens;
        Self {
            model,
            stops: StopStrings::new(params.stops.iter().cloned()),
            stream: Utf8Stream::new(),
            piece: Vec::with_capacity(64),
            tokens: Vec::new(),
            text: String::new(),
            max_tokens,
            first_token_at: None,
            on_token,
        }
    }

    /// Emits `token` and says whether generation stops here. An
    /// end-of-generation token stops it without being emitted; any other
    /// stop comes after the token was emitted.
    pub fn emit(&mut self, token: Token) -> Result<Option<StopReason>, EngineError> {
        if self.model.is_eog(token) {
            return Ok(Some(StopReason::EndOfGeneration));
        }
        self.model.token_bytes(token, false, &mut self.piece)?;
        let new_text = self.stream.push(&self.piece);
        self.tokens.push(token);
        self.first_token_at.get_or_insert_with(Instant::now);
        let (released, stopped) = self.release(&new_text);
        if !(self.on_token)(Piece::Token(token), &released) {
            return Ok(Some(StopReason::Callback));
        }
        if stopped {
            return Ok(Some(StopReason::StopString));
        }
        Ok(self.is_full().then_some(StopReason::MaxTokens))
    }

    /// Adds `text` to the output and returns what of it may be streamed
    /// now (all of it without stop strings) and whether a stop string
    /// ended the output there (which is then cut before it).
    fn release<'t>(&mut self, text: &'t str) -> (Cow<'t, str>, bool) {
        self.text.push_str(text);
        if self.stops.is_empty() {
            return (Cow::Borrowed(text), false);
        }
        let release = self.stops.push(text);
        if release.stopped {
            self.text.truncate(self.stops.released());
        }
        (Cow::Owned(release.text), release.stopped)
    }

    /// Tokens emitted so far.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Tokens the limit still allows.
    pub fn remaining(&self) -> usize {
        self.max_tokens.saturating_sub(self.tokens.len())
    }

    /// True once the token limit is reached.
    pub fn is_full(&self) -> bool {
        self.tokens.len() >= self.max_tokens
    }

    /// Flushes the text stream and completes `stats` (tokens generated,
    /// time from `start` to the first token) into the generation's result.
    pub fn finish(
        mut self,
        mut stop: StopReason,
        start: Instant,
        mut stats: GenerationStats,
    ) -> Generation {
        let tail = self.stream.finish();
        if stop != StopReason::StopString {
            let (released, stopped) = self.release(&tail);
            let mut rest = released.into_owned();
            if stopped {
                stop = StopReason::StopString;
            } else {
                // With what no stop string turned out to begin.
                rest += &self.stops.finish();
            }
            if !rest.is_empty() {
                (self.on_token)(Piece::End, &rest);
            }
        }
        stats.generated_tokens = self.tokens.len();
        stats.ended_by_end_token = stop == StopReason::EndOfGeneration;
        if let Some(at) = self.first_token_at {
            stats.time_to_first_token = at.duration_since(start);
        }
        Generation {
            tokens: self.tokens,
            text: self.text,
            stop,
            stats,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How to pick tokens.
    pub sampling: SamplingParams,
    /// Never produce end-of-generation tokens (fixed-length runs for benchmarks).
    pub ignore_eos: bool,
    /// Keep what the caches hold in common with the prompt and read only
    /// the rest (a conversation's next turn); false starts from empty caches.
    pub reuse_prefix: bool,
    /// Produce only what this grammar allows (its state at the start of
    /// the output; see [`Sampler::constrain`]).
    pub grammar: Option<Grammar>,
    /// End the output at the first of these strings, left out of it
    /// ([`StopStrings`]).
    pub stops: Vec<String>,
}

impl GenerateParams {
    /// Greedy decoding of up to `max_tokens`.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            sampling: SamplingParams::greedy(),
            ignore_eos: false,
            reuse_prefix: false,
            grammar: None,
            stops: Vec::new(),
        }
    }

    /// A sampler for these settings (EOG tokens banned under `ignore_eos`).
    pub fn sampler(&self, model: &Model) -> Sampler {
        let mut sampler = Sampler::new(self.sampling);
        if self.ignore_eos {
            sampler.ban(model.eog_tokens());
        }
        if let Some(grammar) = &self.grammar {
            sampler.constrain(grammar.clone());
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

/// Reads `prompt` into `target` with the logits of its last position: after
/// the prefix the cache shares with it when `reuse_prefix`, else from an
/// empty cache. Returns the tokens read. A prompt read: the context's stop
/// check may interrupt it ([`EngineError::Interrupted`], the cache as
/// before the read) and it reports its progress.
pub fn read_prompt(
    target: &mut Sequence,
    prompt: &[Token],
    reuse_prefix: bool,
) -> Result<usize, EngineError> {
    let from = if reuse_prefix {
        target.prepare_catch_up(prompt)?
    } else {
        target.clear();
        0
    };
    let was = target.context_mut().set_reading(true);
    let read = target.decode(&prompt[from..], Logits::Last);
    target.context_mut().set_reading(was);
    read?;
    Ok(prompt.len() - from)
}

/// Generates with the target alone, reading the prompt as
/// [`GenerateParams::reuse_prefix`] says.
pub fn generate_target_only(
    target: &mut Sequence,
    prompt: &[Token],
    params: &GenerateParams,
    on_token: impl FnMut(Piece, &str) -> bool,
) -> Result<Generation, EngineError> {
    check_prompt(prompt)?;
    let model = target.context().model().clone();
    let mut sampler = params.sampler(&model);
    let kept = target
        .context_mut()
        .set_logits_kept(sampler.logits_needed());
    let generation = target_only(target, prompt, params, &mut sampler, on_token);
    target.context_mut().set_logits_kept(kept);
    generation
}

/// [`generate_target_only`] with its sampler.
fn target_only(
    target: &mut Sequence,
    prompt: &[Token],
    params: &GenerateParams,
    sampler: &mut Sampler,
    on_token: impl FnMut(Piece, &str) -> bool,
) -> Result<Generation, EngineError> {
    let model = target.context().model().clone();
    let n_ctx = target.context().n_ctx() as usize;
    let mut emitter = Emitter::new(&model, params, on_token);
    let mut stats = GenerationStats {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    // What penalties look back on: the prompt and the output (bounded by
    // the context, not by the token limit).
    let mut history = Vec::with_capacity(prompt.len() + params.max_tokens.min(n_ctx) + 1);
    history.extend_from_slice(prompt);
    let start = Instant::now();
    // The prompt's last row, as every later one, may be drawn on a
    // remote target's server.
    sampler.draw_remotely(target.context_mut(), &[0], 1);
    stats.prompt_tokens_cached = prompt.len() - read_prompt(target, prompt, params.reuse_prefix)?;
    stats.prompt_time = start.elapsed();
    let decode_start = Instant::now();

    let stop = loop {
        if emitter.is_full() {
            break StopReason::MaxTokens;
        }
        let token = sampler.sample_row(target.context(), 0, History::new(&history))?;
        if sampler.dead_end() {
            break StopReason::Grammar;
        }
        history.push(token);
        if let Some(stop) = emitter.emit(token)? {
            break stop;
        }
        if target.len() >= n_ctx {
            break StopReason::ContextFull;
        }
        sampler.draw_remotely(target.context_mut(), &[0], 1);
        target.decode(&[token], Logits::Last)?;
    };
    stats.decode_time = decode_start.elapsed();
    Ok(emitter.finish(stop, start, stats))
}
