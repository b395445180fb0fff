//! ead-spec's draft length, chosen per round from measured costs: inside a
//! large-model region, drafting g tokens pays when the tokens a round is
//! expected to yield per millisecond beat single large-model steps.
//!
//! A round that drafts g tokens at per-token acceptance α yields
//! 1 + α + … + α^g tokens and costs one large pass over g + 1 positions
//! plus g + 1 small-model steps (g drafts, then the step over the token the
//! large model settles on). g = 0 is plain EAD in a large region: one large
//! step and one small step per token (the small model scores every position).

use crate::spec::CostModel;

/// Expected tokens per ms of a round drafting `g` tokens.
pub fn round_rate(g: usize, alpha: f64, small_ms: f64, large: &CostModel) -> f64 {
    let alpha = alpha.clamp(0.0, 1.0);
    let tokens: f64 = (0..=g).map(|i| alpha.powi(i as i32)).sum();
    let ms = large.verify_ms(g + 1) + (g + 1) as f64 * small_ms.max(0.0);
    if ms <= 0.0 {
        f64::INFINITY
    } else {
        tokens / ms
    }
}

/// The draft length in 0..=`max` with the best expected rate (the shortest
/// of equals); `max` while nothing was measured yet.
pub fn best_draft_length(
    max: usize,
    alpha: Option<f64>,
    small_ms: Option<f64>,
    large: &CostModel,
) -> usize {
    let (Some(alpha), Some(small_ms)) = (alpha, small_ms) else {
        return max;
    };
    let mut best = (0, round_rate(0, alpha, small_ms, large));
    for g in 1..=max {
        let rate = round_rate(g, alpha, small_ms, large);
        if rate > best.1 {
            best = (g, rate);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU-like large model: a pass over b positions costs far more than
    /// one (compute-bound), 30 ms for one.
    fn cpu() -> CostModel {
        let mut c = CostModel::default();
        for (b, ms) in [(1, 30.0), (2, 40.0), (3, 55.0), (4, 70.0), (5, 85.0)] {
            c.observe_verify(b, ms);
        }
        c
    }

    /// A GPU-like large model: a pass over a few positions costs about one.
    fn gpu() -> CostModel {
        let mut c = CostModel::default();
        for b in 1..=5 {
            c.observe_verify(b, 10.0 + 0.2 * b as f64);
        }
        c
    }

    #[test]
    fn drafts_where_acceptance_and_costs_make_it_pay() {
        // Low acceptance on a CPU: plain EAD steps.
        assert_eq!(best_draft_length(4, Some(0.4), Some(18.0), &cpu()), 0);
        // High acceptance on a CPU: short drafts.
        let g = best_draft_length(4, Some(0.95), Some(18.0), &cpu());
        assert!((1..4).contains(&g), "{g}");
        // Cheap batches: the longest draft.
        assert_eq!(best_draft_length(4, Some(0.8), Some(2.0), &gpu()), 4);
        // Nothing accepted: never draft.
        assert_eq!(best_draft_length(4, Some(0.0), Some(2.0), &gpu()), 0);
    }

    #[test]
    fn unmeasured_uses_the_requested_length_and_zero_stays_zero() {
        assert_eq!(best_draft_length(4, None, Some(1.0), &cpu()), 4);
        assert_eq!(best_draft_length(4, Some(0.9), None, &cpu()), 4);
        assert_eq!(best_draft_length(0, Some(1.0), Some(0.0), &gpu()), 0);
    }

    #[test]
    fn the_rate_counts_tokens_and_costs() {
        let c = cpu();
        // g = 2 at α = 0.5: 1.75 tokens over 55 + 3·5 ms.
        assert!((round_rate(2, 0.5, 5.0, &c) - 1.75 / 70.0).abs() < 1e-12);
        assert!((round_rate(0, 0.5, 5.0, &c) - 1.0 / 35.0).abs() < 1e-12);
    }
}
