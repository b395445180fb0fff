//! Recycled target candidates (Token Recycling, arXiv 2408.08696): every
//! verification pass computes the target's distribution after each token it
//! keeps; the most likely next token is kept per token in a table (one entry
//! per vocabulary token, grown to the vocabulary once), and where nothing
//! repeats, a chain of those successors is a draft that costs no model call.

use crate::engine::Token;

/// The target's latest most likely successor of each token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuccessorTable {
    /// By token id; -1 where none was seen yet.
    next: Vec<Token>,
}

impl SuccessorTable {
    /// Records that the target's most likely token right after `token`
    /// was `next`.
    pub fn record(&mut self, token: Token, next: Token) {
        let (Ok(index), true) = (usize::try_from(token), next >= 0) else {
            return;
        };
        if index >= self.next.len() {
            // Doubling: the table reaches the vocabulary's size in a few steps.
            self.next.resize((index + 1).next_power_of_two(), -1);
        }
        self.next[index] = next;
    }

    /// The recorded successor of `token`, if any.
    pub fn successor(&self, token: Token) -> Option<Token> {
        let next = *self.next.get(usize::try_from(token).ok()?)?;
        (next >= 0).then_some(next)
    }
}

/// The index of the largest of `logits` (the first among equals): the
/// target's most likely token. None for an empty row or one whose largest
/// value is NaN.
pub fn argmax(logits: &[f32]) -> Option<Token> {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    (!logits.is_empty() && !logits[best].is_nan())
        .then(|| Token::try_from(best).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_successor_per_token() {
        let mut t = SuccessorTable::default();
        assert_eq!(t.successor(2), None);
        t.record(2, 1);
        assert_eq!(t.successor(2), Some(1));
        t.record(2, 0);
        assert_eq!(t.successor(2), Some(0));
        t.record(1000, 7);
        assert_eq!((t.successor(1000), t.successor(999)), (Some(7), None));
        // Negative ids are ignored.
        t.record(-3, 1);
        t.record(3, -1);
        assert_eq!((t.successor(-3), t.successor(3)), (None, None));
    }

    #[test]
    fn argmax_is_the_first_largest() {
        assert_eq!(argmax(&[0.1, 0.5, 0.2, 0.5]), Some(1));
        assert_eq!(argmax(&[f32::NAN, 0.5]), None);
        assert_eq!(argmax(&[]), None);
    }
}
