//! Counting the token ids a target emits, or a corpus holds.

use std::path::Path;

use rayon::prelude::*;

use super::counts::inputs_sha256;
use super::{CountSource, TokenCounts};
use edgespec::engine::Model;
use edgespec::error::GenerateError;
use edgespec::vocabtrim::TrimError;
use edgespec::Session;

/// Why a calibration over generations stopped.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// The counts file (refused, unreadable, another vocabulary).
    #[error(transparent)]
    Trim(#[from] TrimError),
    /// Generating with the session.
    #[error(transparent)]
    Generate(#[from] GenerateError),
}

/// Progress of a calibration: (prompts done, prompts total, tokens counted).
pub type CalibrationProgress<'a> = &'a mut dyn FnMut(usize, usize, u64);

/// Generates with the session on each prompt (up to `max_tokens`) and
/// counts the emitted ids.
/// Counts are saved to `out` after every prompt (atomically). An existing
/// file made from the same prompts and settings is resumed (a finished one
/// is returned as it is); any other existing file is an error unless
/// `force`, which starts over.
pub fn calibrate_generations(
    session: &mut Session,
    prompts: &[String],
    max_tokens: usize,
    chat: bool,
    out: &Path,
    force: bool,
    progress: CalibrationProgress<'_>,
) -> Result<TokenCounts, CalibrationError> {
    let model = session.model().clone();
    let inputs = inputs_sha256(
        prompts,
        &format!("generations max_tokens={max_tokens} chat={chat}"),
    );
    let mut counts = match resumable(out, CountSource::TargetGenerations, &inputs, force)? {
        Some(existing) => {
            existing.check_vocab(&model)?;
            existing
        }
        None => TokenCounts {
            inputs_sha256: Some(inputs),
            ..TokenCounts::new(&model, CountSource::TargetGenerations, prompts.len())
        },
    };
    for (i, prompt) in prompts.iter().enumerate().skip(counts.items_done) {
        let tokens = session.prompt_tokens(prompt, chat)?;
        let g = session.generate(&tokens, max_tokens, |_, _| true)?;
        for t in g.generation.tokens {
            counts.counts[t as usize] += 1;
        }
        counts.items_done = i + 1;
        counts.save(out)?;
        progress(counts.items_done, prompts.len(), counts.total());
    }
    Ok(counts)
}

/// The counts already at `out` when they were made from the same `inputs`;
/// `None` when there are none (or `force` discards them); an error for a
/// file of other inputs, or one that cannot be read, which is never
/// replaced silently.
pub fn resumable(
    out: &Path,
    source: CountSource,
    inputs: &str,
    force: bool,
) -> Result<Option<TokenCounts>, TrimError> {
    if force || !out.exists() {
        return Ok(None);
    }
    let existing = TokenCounts::load(out)?;
    if existing.source != source || existing.inputs_sha256.as_deref() != Some(inputs) {
        return Err(TrimError::BadCounts {
            path: out.to_owned(),
            reason: "it holds counts of other inputs or settings and is kept: choose another output, or --force to start over".into(),
        });
    }
    Ok(Some(existing))
}

/// The settings part of a raw-text count's inputs hash (there are none
/// besides the documents).
pub const RAW_TEXT_SETTINGS: &str = "raw text";

/// Tokenizes each line of a corpus (in parallel) and counts the ids.
pub fn count_raw_text(model: &Model, lines: &[String]) -> Result<TokenCounts, TrimError> {
    let mut counts = TokenCounts {
        inputs_sha256: Some(inputs_sha256(lines, RAW_TEXT_SETTINGS)),
        ..TokenCounts::new(model, CountSource::RawText, lines.len())
    };
    let n = counts.vocab_size;
    let partial: Vec<u64> = lines
        .par_iter()
        .map(|line| model.tokenize(line, false, false))
        .try_fold(
            || vec![0u64; n],
            |mut acc, tokens| {
                for t in tokens? {
                    acc[t as usize] += 1;
                }
                Ok::<_, edgespec::engine::EngineError>(acc)
            },
        )
        .try_reduce(
            || vec![0u64; n],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                Ok(a)
            },
        )?;
    counts.counts = partial;
    counts.items_done = lines.len();
    Ok(counts)
}
