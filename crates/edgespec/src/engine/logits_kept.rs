//! How much of each logits row the reader of a pass uses
//! ([`super::Context::set_logits_kept`]): a remote target's server sends
//! only that, and every other entry reads as −∞.

/// The largest entries of a logits row that a sampler's choice depends
/// on: on a row with only them (every other entry −∞) it draws as on the
/// whole row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogitsKept {
    /// At least the `top` largest entries, ties with the last included.
    pub top: usize,
    /// And what a sampler that cuts the row by probability keeps.
    pub nucleus: Option<Nucleus>,
}

/// A cut by probability on the untempered logits, as the samplers make
/// it: the smallest set of the largest entries whose softmax mass over the
/// whole row reaches `top_p` (1: off), then the entries at least `min_p`
/// times as likely as the likeliest (0: off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nucleus {
    /// Mass the kept entries reach, in (0, 1].
    pub top_p: f32,
    /// Least probability kept, relative to the likeliest, in [0, 1].
    pub min_p: f32,
}

/// Relative slack for a reader that adds the same weights in another
/// order than [`LogitsKept::entries`] does.
const SUM_SLACK: f64 = 1e-6;

impl LogitsKept {
    /// The `n` largest entries.
    pub fn top(n: usize) -> Self {
        Self {
            top: n,
            nucleus: None,
        }
    }

    /// The same, with at least the `n` largest entries.
    pub fn with_top_at_least(self, n: usize) -> Self {
        Self {
            top: self.top.max(n),
            ..self
        }
    }

    /// How many of `row`'s largest entries (NaN aside) a reader needs.
    ///
    /// A top-p cut on a shortened row renormalises over what is left, so
    /// it would stop earlier than on the whole row. It stops at the same
    /// entry when the kept entries hold more mass than the entries before
    /// that one divided by `top_p`: the count grows until they do (with
    /// [`SUM_SLACK`] on both sides), which is the whole row only when the
    /// nucleus takes nearly all of it. A min-p cut keeps a window below
    /// the largest logit, whatever else the row holds.
    pub fn entries(&self, row: &[f32]) -> usize {
        let Some(nucleus) = self.nucleus else {
            return self.top;
        };
        let mut values: Vec<f32> = row.iter().copied().filter(|v| !v.is_nan()).collect();
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut need = self.top;
        if nucleus.min_p > 0.0 {
            let floor = max + nucleus.min_p.ln();
            need = need.max(values.iter().filter(|&&v| v >= floor).count());
        }
        if nucleus.top_p < 1.0 && !values.is_empty() {
            need = need.max(top_p_entries(&mut values, max, f64::from(nucleus.top_p)));
        }
        need
    }
}

/// The count of the largest `values` a top-p cut at `top_p` needs (see
/// [`LogitsKept::entries`]); reorders `values`.
fn top_p_entries(values: &mut [f32], max: f32, top_p: f64) -> usize {
    let weight = |v: f32| f64::from((v - max).exp());
    let total: f64 = values.iter().map(|&v| weight(v)).sum();
    let reach = top_p * total * (1.0 + SUM_SLACK);
    let n = values.len();
    let mut m = n.min(64);
    loop {
        values.select_nth_unstable_by(m - 1, |a, b| b.total_cmp(a));
        values[..m].sort_unstable_by(|a, b| b.total_cmp(a));
        let prefix = || {
            values[..m].iter().scan(0.0, |sum, &v| {
                *sum += weight(v);
                Some(*sum)
            })
        };
        // The mass before the entry where the cut stops on the whole row.
        let before = prefix()
            .zip(std::iter::once(0.0).chain(prefix()))
            .find(|&(with, _)| with >= reach)
            .map(|(_, before)| before);
        if let Some(before) = before {
            let enough = before / top_p * (1.0 + SUM_SLACK);
            if enough >= total {
                return n;
            }
            if let Some(count) = prefix().position(|sum| sum > enough) {
                return count + 1;
            }
        }
        if m == n {
            return n;
        }
        m = (m * 4).min(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows a broken model could produce end the count, never a panic:
    /// empty, all NaN, all −∞, one infinite logit.
    #[test]
    fn degenerate_rows_give_a_count_within_the_row() {
        let kept = LogitsKept {
            top: 1,
            nucleus: Some(Nucleus {
                top_p: 0.9,
                min_p: 0.05,
            }),
        };
        let rows: [Vec<f32>; 4] = [
            vec![],
            vec![f32::NAN; 100],
            vec![f32::NEG_INFINITY; 100],
            (0..100)
                .map(|i| if i == 7 { f32::INFINITY } else { 0.0 })
                .collect(),
        ];
        for row in rows {
            let n = kept.entries(&row);
            assert!(n <= row.len().max(1), "{n} of {}", row.len());
        }
        // A count alone is the count.
        assert_eq!(LogitsKept::top(5).entries(&[1.0, 2.0]), 5);
        assert_eq!(LogitsKept::top(2).with_top_at_least(3).top, 3);
    }
}
