//! Counting the token ids a target emits, or a corpus holds.

use std::path::Path;

use rayon::prelude::*;

use super::{CountSource, TokenCounts};
use edgespec::engine::Model;
use edgespec::session::Session;
use edgespec::vocabtrim::TrimError;

/// Progress of a calibration: (prompts done, prompts total, tokens counted).
pub type CalibrationProgress<'a> = &'a mut dyn FnMut(usize, usize, u64);

/// Generates with the session on each prompt (up to `max_tokens`) and
/// counts the emitted ids.
/// Counts are saved to `out` after every prompt (atomically), and an
/// existing file for the same vocabulary and prompt count is resumed.
pub fn calibrate_generations(
    session: &mut Session,
    prompts: &[String],
    max_tokens: usize,
    chat: bool,
    out: &Path,
    progress: CalibrationProgress<'_>,
) -> Result<TokenCounts, TrimError> {
    let model = session.model().clone();
    let mut counts = match TokenCounts::load(out) {
        Ok(existing)
            if existing.source == CountSource::TargetGenerations
                && existing.items_total == prompts.len() =>
        {
            existing.check_vocab(&model)?;
            existing
        }
        _ => TokenCounts::new(&model, CountSource::TargetGenerations, prompts.len()),
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

/// Tokenizes each line of a corpus (in parallel) and counts the ids.
pub fn count_raw_text(model: &Model, lines: &[String]) -> Result<TokenCounts, TrimError> {
    let mut counts = TokenCounts::new(model, CountSource::RawText, lines.len());
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
