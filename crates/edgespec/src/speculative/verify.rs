//! Verification of a draft against the target's distributions, as pure
//! functions (Leviathan et al. 2023, "Fast Inference from Transformers via
//! Speculative Decoding"; Chen et al. 2023, "Accelerating Large Language
//! Model Decoding with Speculative Sampling").

use crate::draft::MAX_DRAFT;
use crate::engine::Token;

/// Outcome of verifying one draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Leading draft tokens accepted.
    pub accepted: usize,
    /// The target's own token after them: the correction at the first
    /// rejected position, or the bonus token when every draft token passed.
    pub next: Token,
}

/// Outcome of verifying a draft tree: the accepted path and the target's
/// own token after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeVerdict {
    /// The accepted nodes, from the first drafted token down.
    pub path: heapless::Vec<usize, MAX_DRAFT>,
    /// The target's own token after the path.
    pub next: Token,
}

/// Verification of a draft tree by drawing the target's own token: from
/// the committed text, `target_choice(row, path)` gives the target's token
/// after `path` (row 0: the committed text's last token, row i + 1: node
/// i); the walk moves to the child holding that token and stops where none
/// does. `parents` as [`crate::draft::Draft::parents`]. One draw per
/// emitted token, as plain decoding: with greedy choices the output is
/// target-only's, and with sampled ones it follows the target's
/// distribution whatever the tree holds (a chain is the one-leaf case).
pub fn verify_tree<E>(
    tokens: &[Token],
    parents: &[usize],
    mut target_choice: impl FnMut(usize, &[usize]) -> Result<Token, E>,
) -> Result<TreeVerdict, E> {
    let mut path = heapless::Vec::new();
    let mut row = 0;
    loop {
        let choice = target_choice(row, &path)?;
        let child = (row..tokens.len()).find(|&i| parents[i] == row && tokens[i] == choice);
        match child {
            Some(node) if path.push(node).is_ok() => row = node + 1,
            _ => return Ok(TreeVerdict { path, next: choice }),
        }
    }
}

/// The nodes 0, 1, …, `accepted` − 1: the accepted path of a chain.
pub fn chain_path(accepted: usize) -> &'static [usize] {
    static CHAIN: [usize; MAX_DRAFT] = {
        let mut nodes = [0; MAX_DRAFT];
        let mut i = 0;
        while i < MAX_DRAFT {
            nodes[i] = i;
            i += 1;
        }
        nodes
    };
    &CHAIN[..accepted.min(MAX_DRAFT)]
}

/// Probability of accepting a draft token x: min(1, p(x) / q(x)).
/// q(x) = 0 cannot come from a drafter that sampled x; it is treated as a
/// certain accept when p(x) > 0 and a certain reject otherwise.
pub fn accept_probability(p: f32, q: f32) -> f64 {
    if q <= 0.0 {
        return if p > 0.0 { 1.0 } else { 0.0 };
    }
    (f64::from(p) / f64::from(q)).min(1.0)
}

/// The residual distribution norm(max(0, p − q)) into `out`. Returns false
/// (and writes p) when p ≤ q everywhere, which a rejection cannot produce:
/// rejecting x needs p(x) < q(x), hence some y with p(y) > q(y).
pub fn residual(p: &[f32], q: &[f32], out: &mut Vec<f32>) -> bool {
    out.clear();
    // q may be narrower than p (a drafter with fewer ids): missing q is 0.
    out.extend(
        p.iter()
            .enumerate()
            .map(|(i, &p)| (p - q.get(i).copied().unwrap_or(0.0)).max(0.0)),
    );
    let total: f64 = out.iter().map(|&x| f64::from(x)).sum();
    if total <= 0.0 {
        out.clear();
        out.extend_from_slice(p);
        return false;
    }
    for x in out.iter_mut() {
        *x = (f64::from(*x) / total) as f32;
    }
    true
}

/// Where a draft token's q comes from.
#[derive(Debug, Clone, Copy)]
pub enum DraftProb<'a> {
    /// The drafter sampled the token from this distribution (vocab wide).
    Sampled(&'a [f32]),
    /// The token was proposed deterministically (lookup, greedy drafting):
    /// q is one-hot on it.
    Deterministic,
}

/// Speculative sampling. For each draft token x_i with target distribution
/// p_i and draft distribution q_i: accept with probability min(1, p_i/q_i);
/// at the first rejection sample from norm(max(0, p_i − q_i)); if all pass,
/// sample the bonus token from p_γ. The output follows the target's
/// distribution exactly.
///
/// `p(i, out)` writes the target distribution at position i;
/// `uniform()` returns a draw in [0, 1); `sample(weights)` draws an index.
pub fn verify_sampling<E>(
    draft: &[Token],
    q: &[DraftProb<'_>],
    mut p: impl FnMut(usize, &mut Vec<f32>) -> Result<(), E>,
    mut uniform: impl FnMut() -> f64,
    mut sample: impl FnMut(&[f32]) -> Token,
    scratch: &mut (Vec<f32>, Vec<f32>),
) -> Result<Verdict, E> {
    let (p_row, residual_row) = scratch;
    for (i, &x) in draft.iter().enumerate() {
        p(i, p_row)?;
        let p_x = p_row.get(x as usize).copied().unwrap_or(0.0);
        let q_x = match q[i] {
            DraftProb::Sampled(q) => q.get(x as usize).copied().unwrap_or(0.0),
            DraftProb::Deterministic => 1.0,
        };
        if uniform() < accept_probability(p_x, q_x) {
            continue;
        }
        match q[i] {
            DraftProb::Sampled(q) => {
                residual(p_row, q, residual_row);
            }
            DraftProb::Deterministic => {
                // max(0, p − onehot(x)) is p with x removed.
                residual_row.clear();
                residual_row.extend_from_slice(p_row);
                if let Some(slot) = residual_row.get_mut(x as usize) {
                    *slot = 0.0;
                }
            }
        }
        return Ok(Verdict {
            accepted: i,
            next: sample(residual_row),
        });
    }
    p(draft.len(), p_row)?;
    Ok(Verdict {
        accepted: draft.len(),
        next: sample(p_row),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::convert::Infallible;

    fn one_hot(n: usize, i: usize) -> Vec<f32> {
        let mut v = vec![0.0; n];
        v[i] = 5.0;
        v
    }

    #[test]
    fn greedy_accepts_prefix_and_corrects() {
        let rows = [one_hot(5, 1), one_hot(5, 2), one_hot(5, 4), one_hot(5, 0)];
        let verdict = |draft: &[Token]| {
            let v = verify_tree(draft, chain_path(draft.len()), |row, _| {
                Ok::<_, Infallible>(crate::sampling::argmax(&rows[row]))
            })
            .unwrap();
            (&v.path[..] == chain_path(v.path.len())).then_some((v.path.len(), v.next))
        };
        assert_eq!(verdict(&[1, 2, 3]), Some((2, 4)));
        assert_eq!(verdict(&[1, 2, 4]), Some((3, 0)));
        assert_eq!(verdict(&[3]), Some((0, 1)));
        assert_eq!(verdict(&[]), Some((0, 1)));
    }

    /// A tree walk follows the target's choices into whichever branch
    /// holds them.
    #[test]
    fn tree_walk_takes_the_branch_holding_the_targets_token() {
        // root → 5 → 6 (chain), root → 7 → 8, 5 → 9
        let tokens = [5, 6, 7, 8, 9];
        let parents = [0, 1, 0, 3, 1];
        // The target's token after each path: 7, then 8, then 3.
        let target = |path: &[usize]| -> Token {
            match path.last() {
                None => 7,
                Some(2) => 8,
                _ => 3,
            }
        };
        let v = verify_tree(&tokens, &parents, |_, p| Ok::<_, Infallible>(target(p))).unwrap();
        assert_eq!(&v.path[..], &[2, 3]);
        assert_eq!(v.next, 3);
        // Rows handed out are the nodes walked: root, 7's node, 8's node.
        let mut rows = Vec::new();
        verify_tree(&tokens, &parents, |row, p| {
            rows.push(row);
            Ok::<_, Infallible>(target(p))
        })
        .unwrap();
        assert_eq!(rows, [0, 3, 4]);
        // After 5 the target says 9: the side branch under 5.
        let v = verify_tree(&tokens, &parents, |_, p| {
            Ok::<_, Infallible>(if p.is_empty() {
                5
            } else if p == [0] {
                9
            } else {
                1
            })
        })
        .unwrap();
        assert_eq!((&v.path[..], v.next), (&[0, 4][..], 1));
    }

    fn normalize(w: &[f32]) -> Vec<f32> {
        let s: f32 = w.iter().sum();
        w.iter().map(|x| x / s).collect()
    }

    fn draw(rng: &mut ChaCha8Rng, w: &[f32]) -> Token {
        let total: f32 = w.iter().sum();
        let mut t = rng.random::<f32>() * total;
        for (i, &x) in w.iter().enumerate() {
            if t < x {
                return i as Token;
            }
            t -= x;
        }
        (w.len() - 1) as Token
    }

    /// Chi-square statistic of observed counts against probabilities.
    fn chi_square(counts: &[usize], p: &[f32]) -> f64 {
        let n: usize = counts.iter().sum();
        counts
            .iter()
            .zip(p)
            .filter(|(_, &p)| p > 0.0)
            .map(|(&o, &p)| {
                let e = n as f64 * f64::from(p);
                (o as f64 - e).powi(2) / e
            })
            .sum()
    }

    /// The first emitted token of speculative sampling follows p exactly,
    /// whatever the drafter's q (sampled or deterministic).
    #[test]
    fn speculative_sampling_keeps_the_target_distribution() {
        let p0 = normalize(&[0.05, 0.4, 0.25, 0.2, 0.1]);
        let p1 = normalize(&[0.3, 0.1, 0.2, 0.1, 0.3]);
        let q0 = normalize(&[0.3, 0.1, 0.1, 0.4, 0.1]);
        let q1 = normalize(&[0.2, 0.2, 0.2, 0.2, 0.2]);
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut uniform_rng = ChaCha8Rng::seed_from_u64(43);
        let mut sample_rng = ChaCha8Rng::seed_from_u64(44);
        let n = 40_000;
        for deterministic in [false, true] {
            let mut first = [0usize; 5];
            let mut second_given_first_accepted = [0usize; 5];
            for _ in 0..n {
                let x0 = if deterministic {
                    3
                } else {
                    draw(&mut rng, &q0)
                };
                let x1 = if deterministic {
                    0
                } else {
                    draw(&mut rng, &q1)
                };
                let q = if deterministic {
                    [DraftProb::Deterministic, DraftProb::Deterministic]
                } else {
                    [DraftProb::Sampled(&q0), DraftProb::Sampled(&q1)]
                };
                let mut scratch = (Vec::new(), Vec::new());
                let v = verify_sampling(
                    &[x0, x1],
                    &q,
                    |i, out| {
                        out.clear();
                        out.extend_from_slice(if i == 0 { &p0 } else { &p1 });
                        Ok::<_, Infallible>(())
                    },
                    || uniform_rng.random::<f64>(),
                    |w| draw(&mut sample_rng, w),
                    &mut scratch,
                )
                .unwrap();
                let emitted_first = if v.accepted == 0 { v.next } else { x0 };
                first[emitted_first as usize] += 1;
                if v.accepted >= 1 {
                    let second = if v.accepted == 1 { v.next } else { x1 };
                    second_given_first_accepted[second as usize] += 1;
                }
            }
            // 4 degrees of freedom, p = 0.001 critical value 18.47.
            let chi = chi_square(&first, &p0);
            assert!(
                chi < 18.47,
                "first token, deterministic={deterministic}: chi2 = {chi}"
            );
            // The second token depends only on the first position (p1 here does not), so it follows p1.
            let chi = chi_square(&second_given_first_accepted, &p1);
            assert!(
                chi < 18.47,
                "second token, deterministic={deterministic}: chi2 = {chi}"
            );
        }
    }

    fn distribution(len: usize) -> impl Strategy<Value = Vec<f32>> {
        proptest::collection::vec(prop_oneof![Just(0.0f32), 0.0f32..1.0], len)
            .prop_filter("needs mass", |v| v.iter().sum::<f32>() > 1e-3)
            .prop_map(|v| normalize(&v))
    }

    proptest! {
        #[test]
        fn accept_probability_is_a_probability(p in 0.0f32..1.0, q in 0.0f32..1.0) {
            let a = accept_probability(p, q);
            prop_assert!((0.0..=1.0).contains(&a));
            if q > 0.0 && p >= q { prop_assert_eq!(a, 1.0); }
        }

        #[test]
        fn residual_sums_to_one_and_avoids_zero_mass(
            (p, q) in (2usize..12).prop_flat_map(|n| (distribution(n), distribution(n)))
        ) {
            let mut r = Vec::new();
            let proper = residual(&p, &q, &mut r);
            let total: f32 = r.iter().sum();
            prop_assert!((total - 1.0).abs() < 1e-4, "sum {}", total);
            for i in 0..p.len() {
                if proper {
                    // Mass only where the target has more than the drafter.
                    prop_assert!(r[i] == 0.0 || p[i] > q[i]);
                }
                prop_assert!(r[i] == 0.0 || p[i] > 0.0, "residual samples a zero-mass token");
            }
        }

        #[test]
        fn verify_sampling_never_emits_zero_mass_tokens(
            (p, q) in (2usize..8).prop_flat_map(|n| (distribution(n), distribution(n))),
            seed in any::<u64>(),
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let x = draw(&mut rng, &q);
            let mut scratch = (Vec::new(), Vec::new());
            let mut uniform_rng = ChaCha8Rng::seed_from_u64(seed ^ 1);
            let v = verify_sampling(
                &[x],
                &[DraftProb::Sampled(&q)],
                |_, out| { out.clear(); out.extend_from_slice(&p); Ok::<_, Infallible>(()) },
                || uniform_rng.random::<f64>(),
                |w| draw(&mut rng, w),
                &mut scratch,
            ).unwrap();
            prop_assert!(v.accepted <= 1);
            if v.accepted == 0 {
                prop_assert!(p[v.next as usize] > 0.0);
            } else {
                prop_assert!(p[x as usize] > 0.0);
            }
        }
    }
}
