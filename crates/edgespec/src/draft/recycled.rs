//! Recycled target candidates (Token Recycling, arXiv 2408.08696): every
//! verification pass computes the target's distribution after each token it
//! keeps; its likeliest next tokens are kept per token in a table (one entry
//! per vocabulary token, grown to the vocabulary once), and where nothing
//! repeats, a chain of the likeliest successors is a draft that costs no
//! model call, the others branches of a draft tree.

use crate::engine::Token;

/// Successors kept per token.
pub const SUCCESSORS: usize = 3;

/// One of the target's likely next tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Successor {
    /// The token.
    pub token: Token,
    /// Its probability among the kept successors (a softmax over their
    /// logits alone: how clearly the target preferred it).
    pub share: f32,
}

/// A token's successors, likeliest first.
pub type Successors = heapless::Vec<Successor, SUCCESSORS>;

/// No successor recorded.
const NONE: Successor = Successor {
    token: -1,
    share: 0.0,
};

/// The target's latest likeliest successors of each token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SuccessorTable {
    /// By token id, likeliest first; token -1 where none was seen.
    next: Vec<[Successor; SUCCESSORS]>,
}

impl SuccessorTable {
    /// Records the target's likeliest tokens right after `token`
    /// (likeliest first; negative ids are not recorded).
    pub fn record(&mut self, token: Token, next: &[Successor]) {
        let Ok(index) = usize::try_from(token) else {
            return;
        };
        if index >= self.next.len() {
            // Doubling: the table reaches the vocabulary's size in a few steps.
            self.next
                .resize((index + 1).next_power_of_two(), [NONE; SUCCESSORS]);
        }
        let slot = &mut self.next[index];
        *slot = [NONE; SUCCESSORS];
        for (kept, s) in slot.iter_mut().zip(next.iter().filter(|s| s.token >= 0)) {
            *kept = *s;
        }
    }

    /// The recorded likeliest successor of `token`, if any.
    pub fn successor(&self, token: Token) -> Option<Token> {
        self.successors(token).first().map(|s| s.token)
    }

    /// The recorded successors of `token`, likeliest first.
    pub fn successors(&self, token: Token) -> &[Successor] {
        let Some(slot) = usize::try_from(token).ok().and_then(|i| self.next.get(i)) else {
            return &[];
        };
        let n = slot.iter().take_while(|s| s.token >= 0).count();
        &slot[..n]
    }
}

/// The [`SUCCESSORS`] largest of `logits` (the first among equals first),
/// likeliest first, with their shares among themselves; NaN is skipped.
pub fn top_successors(logits: &[f32]) -> Successors {
    let mut top: heapless::Vec<(usize, f32), SUCCESSORS> = heapless::Vec::new();
    for (i, &x) in logits.iter().enumerate() {
        if x.is_nan() || (top.is_full() && x <= top[SUCCESSORS - 1].1) {
            continue;
        }
        let at = top.iter().position(|&(_, y)| x > y).unwrap_or(top.len());
        if top.is_full() {
            top.pop();
        }
        let _ = top.insert(at, (i, x));
    }
    let Some(&(_, best)) = top.first() else {
        return Successors::new();
    };
    let weight = |x: f32| f64::from(x - best).exp();
    let total: f64 = top.iter().map(|&(_, x)| weight(x)).sum();
    top.iter()
        .filter_map(|&(i, x)| {
            Some(Successor {
                token: Token::try_from(i).ok()?,
                share: (weight(x) / total) as f32,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &[Successor]) -> Vec<Token> {
        s.iter().map(|s| s.token).collect()
    }

    fn one(token: Token) -> [Successor; 1] {
        [Successor { token, share: 1.0 }]
    }

    #[test]
    fn keeps_the_latest_successors_per_token() {
        let mut t = SuccessorTable::default();
        assert_eq!(t.successor(2), None);
        t.record(2, &one(1));
        assert_eq!(t.successor(2), Some(1));
        t.record(2, &top_successors(&[0.0, 1.0, 3.0, 2.0]));
        assert_eq!(tokens(t.successors(2)), [2, 3, 1]);
        t.record(2, &one(0));
        assert_eq!(tokens(t.successors(2)), [0]);
        t.record(1000, &one(7));
        assert_eq!((t.successor(1000), t.successor(999)), (Some(7), None));
        // Negative ids are ignored.
        t.record(-3, &one(1));
        t.record(3, &one(-1));
        assert_eq!((t.successor(-3), t.successor(3)), (None, None));
    }

    #[test]
    fn top_successors_are_the_largest_with_their_shares() {
        let top = top_successors(&[0.1, 0.5, 0.2, 0.5, 0.4]);
        assert_eq!(tokens(&top), [1, 3, 4]);
        let shares: Vec<f32> = top.iter().map(|s| s.share).collect();
        assert!((shares.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((shares[0] - shares[1]).abs() < 1e-6 && shares[1] > shares[2]);
        assert_eq!(tokens(&top_successors(&[2.0])), [0]);
        assert_eq!(tokens(&top_successors(&[f32::NAN, 0.5])), [1]);
        assert!(top_successors(&[]).is_empty());
    }
}
