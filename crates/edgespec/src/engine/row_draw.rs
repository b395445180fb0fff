//! Drawing a token from a logits row at a temperature, with nothing else
//! in the sampling chain: the draw the sampler makes
//! ([`crate::sampling::Sampler::sample`]) and the one a remote target's
//! server makes for it ([`super::Context::draw_next_pass`]), one function
//! so that both give the same token from the same row and uniform number,
//! bit for bit.

use super::Token;

/// What a pass's rows are drawn with on a remote target's server: each
/// output row `r` (in batch order) by [`draw_at_temperature`] with
/// `uniforms[r]`, rows past them with the last number (for a pass whose
/// last row alone is read), and `top` of its largest entries sent besides.
#[derive(Debug, Clone, PartialEq)]
pub struct RowDraws {
    /// The softmax temperature, a finite number > 0.
    pub temperature: f32,
    /// Uniform numbers in [0, 1), one per output row of the pass (at least one).
    pub uniforms: Vec<f64>,
    /// How many of each row's largest entries the reader keeps besides.
    pub top: usize,
}

impl RowDraws {
    /// Whether these draws can be made: a finite temperature > 0 and
    /// uniform numbers in [0, 1), at least one.
    pub fn is_valid(&self) -> bool {
        self.temperature.is_finite()
            && self.temperature > 0.0
            && !self.uniforms.is_empty()
            && self.uniforms.iter().all(|u| (0.0..1.0).contains(u))
    }
}

/// The token drawn from softmax(`row` / `temperature`) by the uniform
/// number `u` in [0, 1): the first id (in id order) whose cumulative
/// probability passes `u` times the total, or the last id with any
/// probability when rounding leaves the draw past the end. `scratch` holds
/// the probabilities. Probabilities are rounded to f32 and summed in f64,
/// in id order, so the draw is reproducible wherever the row is.
pub fn draw_at_temperature(row: &[f32], temperature: f32, u: f64, scratch: &mut Vec<f32>) -> Token {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / temperature;
    scratch.clear();
    scratch.extend(row.iter().map(|&l| ((l - max) * inv_t).exp()));
    let total: f64 = scratch.iter().map(|&w| f64::from(w)).sum();
    for w in scratch.iter_mut() {
        *w = (f64::from(*w) / total) as f32;
    }
    draw_by_weight(scratch, u)
}

/// The index drawn from non-negative `weights` (not necessarily summing
/// to 1) by the uniform number `u`: the first whose cumulative weight
/// passes `u` times the total, else the last non-zero one (0 if none).
pub fn draw_by_weight(weights: &[f32], u: f64) -> Token {
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let target = u * total;
    let mut cumulative = 0.0f64;
    let mut last_nonzero = 0usize;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            cumulative += f64::from(w);
            last_nonzero = i;
            if target < cumulative {
                return i as Token;
            }
        }
    }
    last_nonzero as Token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_cumulative_probabilities() {
        let mut scratch = Vec::new();
        // Probabilities at temperature 1: ln 1, ln 2, ln 1 → 1/4, 1/2, 1/4.
        let row = [0.0, std::f32::consts::LN_2, 0.0];
        assert_eq!(draw_at_temperature(&row, 1.0, 0.0, &mut scratch), 0);
        assert_eq!(draw_at_temperature(&row, 1.0, 0.24, &mut scratch), 0);
        assert_eq!(draw_at_temperature(&row, 1.0, 0.26, &mut scratch), 1);
        assert_eq!(draw_at_temperature(&row, 1.0, 0.74, &mut scratch), 1);
        assert_eq!(draw_at_temperature(&row, 1.0, 0.76, &mut scratch), 2);
        // A colder draw moves mass to the likeliest id.
        assert_eq!(draw_at_temperature(&row, 0.1, 0.01, &mut scratch), 1);
        assert_eq!(draw_at_temperature(&row, 0.1, 0.99, &mut scratch), 1);
    }

    #[test]
    fn ids_without_probability_are_never_drawn() {
        let mut scratch = Vec::new();
        let row = [f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY];
        for u in [0.0, 0.5, 0.999_999] {
            assert_eq!(draw_at_temperature(&row, 0.7, u, &mut scratch), 1);
        }
        assert_eq!(draw_by_weight(&[0.0, 0.0], 0.3), 0);
        assert_eq!(draw_by_weight(&[0.0, 2.0, 0.0], 0.999), 1);
    }

    #[test]
    fn only_temperatures_above_zero_and_uniforms_below_one_are_valid() {
        let draws = |temperature, uniforms: &[f64]| RowDraws {
            temperature,
            uniforms: uniforms.to_vec(),
            top: 1,
        };
        assert!(draws(0.8, &[0.0, 0.5]).is_valid());
        assert!(!draws(0.0, &[0.5]).is_valid());
        assert!(!draws(f32::INFINITY, &[0.5]).is_valid());
        assert!(!draws(0.8, &[1.0]).is_valid());
        assert!(!draws(0.8, &[f64::NAN]).is_valid());
        assert!(!draws(0.8, &[]).is_valid());
    }
}
