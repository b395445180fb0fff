//! Choosing K from measurements (`edgespec trim -k auto`).

use serde::Serialize;

use edgespec::engine::Token;
use edgespec::error::GenerateError;
use edgespec::{Session, SessionConfig};

/// What one candidate K measured on held-out prompts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KPoint {
    /// Rows kept.
    pub k: usize,
    /// Acceptance rate of drafted tokens.
    pub alpha: f64,
    /// Drafter milliseconds per drafted token.
    pub drafter_ms: f64,
    /// End-to-end decode tokens per second with this drafter.
    pub tok_s: f64,
    /// Memory-bound speed-up.
    pub mbsu: f64,
}

/// Measures one candidate: `config` (a session drafting with the drafter
/// trimmed to `k`) generates up to `max_tokens` from each of `prompts`;
/// acceptance and decode speed over all of them, drafter time and MBSU as
/// the mean over prompts.
pub fn measure_k(
    k: usize,
    config: SessionConfig,
    prompts: &[Vec<Token>],
    max_tokens: usize,
) -> Result<KPoint, GenerateError> {
    let mut session = Session::new(config)?;
    let (mut decoded, mut secs, mut drafted, mut accepted, mut mbsu, mut c_ms) =
        (0usize, 0f64, 0usize, 0usize, 0f64, 0f64);
    for prompt in prompts {
        let r = session.generate(prompt, max_tokens, |_, _| true)?;
        let n = r.generation.stats.generated_tokens;
        decoded += n.saturating_sub(1);
        secs += r.generation.stats.decode_time.as_secs_f64();
        let spec = r.speculation.unwrap_or_default();
        drafted += spec.drafted;
        accepted += spec.accepted;
        mbsu += spec.mbsu(n);
        if spec.drafted > 0 {
            c_ms += spec.draft_time.as_secs_f64() * 1e3 / spec.drafted as f64;
        }
    }
    let n = prompts.len().max(1) as f64;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(KPoint {
        k,
        alpha: ratio(accepted as f64, drafted as f64),
        drafter_ms: c_ms / n,
        tok_s: ratio(decoded as f64, secs),
        mbsu: mbsu / n,
    })
}

/// The candidates to try: `requested` below the vocabulary size, ascending,
/// de-duplicated, at least one (the vocabulary itself when none fits).
pub fn k_candidates(requested: &[usize], vocab: usize) -> Vec<usize> {
    let mut ks: Vec<usize> = requested
        .iter()
        .copied()
        .filter(|&k| k > 0 && k < vocab)
        .collect();
    ks.sort_unstable();
    ks.dedup();
    if ks.is_empty() {
        ks.push(vocab);
    }
    ks
}

/// The K with the best measured speed; among equally fast (within 1%) the
/// smaller K (fewer bytes, less memory). None for no points.
pub fn best_k(points: &[KPoint]) -> Option<KPoint> {
    let fastest = points
        .iter()
        .map(|p| p.tok_s)
        .fold(f64::NEG_INFINITY, f64::max);
    points
        .iter()
        .filter(|p| p.tok_s >= 0.99 * fastest)
        .min_by_key(|p| p.k)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(k: usize, tok_s: f64) -> KPoint {
        KPoint {
            k,
            alpha: 0.9,
            drafter_ms: 10.0,
            tok_s,
            mbsu: 1.0,
        }
    }

    #[test]
    fn candidates_fit_the_vocabulary() {
        assert_eq!(
            k_candidates(&[8192, 4096, 8192, 200_000], 151_936),
            vec![4096, 8192]
        );
        assert_eq!(k_candidates(&[4096], 300), vec![300]);
    }

    #[test]
    fn best_is_fastest_preferring_small_k_on_ties() {
        let pts = [
            point(4096, 30.0),
            point(8192, 33.0),
            point(16384, 33.2),
            point(32768, 31.0),
        ];
        assert_eq!(best_k(&pts).unwrap().k, 8192);
        assert_eq!(best_k(&[]), None);
    }
}
