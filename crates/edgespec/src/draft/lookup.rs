//! Prompt-lookup drafting (Saxena 2023, "Prompt Lookup Decoding"): find the
//! latest n-gram of the sequence earlier in the sequence and propose what
//! followed it. Costs no model call.

use super::{Draft, DraftControl, DraftSource, Drafter};
use crate::engine::{EngineError, Token};

/// Longest context a match is measured over: beyond this the evidence that
/// a span is being copied verbatim is already as strong as it gets.
pub const MAX_MATCH: usize = 64;

/// A match found in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupMatch {
    /// Index in the history where the proposed continuation starts.
    pub start: usize,
    /// Tokens proposed from there.
    pub len: usize,
    /// Tokens of context the match shares with the end of the history: the
    /// n-gram extended backwards, at most [`MAX_MATCH`]. The longer, the
    /// likelier the text is being copied (the policy learns how much).
    pub matched: usize,
}

impl LookupMatch {
    /// The `i`-th proposed token. Past the end of `history` the copy goes on
    /// copying itself: the match said the text from `start` repeats what
    /// follows the n-gram, so a loop (history ending in its own period)
    /// continues for as long as the draft may run.
    pub fn token(&self, history: &[Token], i: usize) -> Token {
        let period = history.len() - self.start;
        history[self.start + i % period]
    }
}

/// How many tokens ending at `end` (exclusive) equal the history's last
/// tokens, counting back at most `limit`.
fn shared_suffix(history: &[Token], end: usize, limit: usize) -> usize {
    history[..end]
        .iter()
        .rev()
        .zip(history.iter().rev())
        .take(limit)
        .take_while(|(a, b)| a == b)
        .count()
}

/// Finds an earlier occurrence of the history's last n tokens, trying n
/// from `max_ngram` down to `min_ngram`, and returns the continuation of
/// `max_len` tokens (see [`LookupMatch::token`]). Longer n-grams win; among
/// occurrences of one n-gram, the one sharing the longest context with the
/// end of the history, then the most recent.
pub fn find_continuation(
    history: &[Token],
    min_ngram: usize,
    max_ngram: usize,
    max_len: usize,
) -> Option<LookupMatch> {
    if max_len == 0 || min_ngram == 0 {
        return None;
    }
    let len = history.len();
    for n in (min_ngram..=max_ngram).rev() {
        if len <= n {
            continue;
        }
        let suffix = &history[len - n..];
        // Candidate starts j < len - n, latest first; the continuation
        // starts at j + n, which is < len.
        let mut best: Option<LookupMatch> = None;
        for j in (0..len - n).rev() {
            if &history[j..j + n] != suffix {
                continue;
            }
            let matched = shared_suffix(history, j + n, MAX_MATCH.max(n));
            if best.is_none_or(|b| matched > b.matched) {
                best = Some(LookupMatch {
                    start: j + n,
                    len: max_len,
                    matched,
                });
            }
            if matched >= MAX_MATCH {
                break;
            }
        }
        if best.is_some() {
            return best;
        }
    }
    None
}

/// The prompt-lookup drafter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupDrafter {
    /// Shortest n-gram that counts as a match.
    pub min_ngram: usize,
    /// Longest n-gram tried first.
    pub max_ngram: usize,
}

impl Default for LookupDrafter {
    fn default() -> Self {
        Self {
            min_ngram: 2,
            max_ngram: 4,
        }
    }
}

impl LookupDrafter {
    /// Fills `out` from the best match of at least `min_ngram` tokens;
    /// returns false (and leaves `out` empty) when there is none.
    pub fn propose_with(
        &self,
        committed: &[Token],
        min_ngram: usize,
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> bool {
        // The longest draft any match could get; the match's own cap
        // applies as tokens are drafted.
        let room = ctl.room(DraftSource::Lookup { matched: MAX_MATCH });
        let Some(m) = find_continuation(
            committed,
            min_ngram.max(1),
            self.max_ngram.max(min_ngram),
            room,
        ) else {
            return false;
        };
        out.clear(DraftSource::Lookup { matched: m.matched });
        for i in 0..m.len {
            if !out.push_and_ask(m.token(committed, i), None, ctl, m.len) {
                break;
            }
        }
        true
    }
}

impl Drafter for LookupDrafter {
    fn reset(&mut self) {}

    fn propose(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> Result<(), EngineError> {
        out.clear(DraftSource::Lookup { matched: 0 });
        self.propose_with(committed, self.min_ngram, ctl, out);
        Ok(())
    }

    fn commit(&mut self, _committed: &[Token]) -> Result<(), EngineError> {
        Ok(())
    }

    fn bytes_per_token(&self) -> u64 {
        0
    }

    fn drafts_lookup(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_latest_longest_match() {
        //            0  1  2  3  4  5  6  7  8  9
        let h = [1, 2, 3, 9, 1, 2, 3, 7, 1, 2, 3];
        // "1 2 3" occurred at 4..7 (followed by 7) and at 0..3 (followed by 9): latest wins.
        let m = find_continuation(&h, 1, 3, 4).unwrap();
        assert_eq!(
            m,
            LookupMatch {
                start: 7,
                len: 4,
                matched: 3
            }
        );
        let copy: Vec<Token> = (0..m.len).map(|i| m.token(&h, i)).collect();
        assert_eq!(copy, [7, 1, 2, 3]);
        // Continuation capped by max_len.
        assert_eq!(find_continuation(&h, 1, 3, 2).unwrap().len, 2);
    }

    #[test]
    fn the_occurrence_sharing_more_context_wins_over_a_later_one() {
        //       0  1  2  3  4  5  6  7  8  9 10 11 12 13 14
        let h = [5, 1, 2, 3, 8, 4, 1, 2, 3, 9, 0, 5, 1, 2, 3];
        // "1 2 3" at 6..9 is preceded by 4, at 1..4 by 5 as the end is.
        let m = find_continuation(&h, 2, 3, 2).unwrap();
        assert_eq!((m.start, m.matched), (4, 4));
        assert_eq!(m.token(&h, 0), 8);
        // The context measured stops at MAX_MATCH.
        let long: Vec<Token> = (0..2 * MAX_MATCH as Token)
            .chain(0..2 * MAX_MATCH as Token)
            .collect();
        let m = find_continuation(&long, 2, 4, 1).unwrap();
        assert_eq!((m.start, m.matched), (2 * MAX_MATCH, MAX_MATCH));
    }

    #[test]
    fn a_loop_is_copied_past_the_end_of_the_history() {
        let h = [9, 1, 2, 3, 1, 2, 3];
        // "2 3" last occurred at 2..4: the continuation 1 2 3 is the loop's
        // period, and the copy goes round it.
        let m = find_continuation(&h, 2, 2, 7).unwrap();
        assert_eq!((m.start, m.len), (4, 7));
        let copy: Vec<Token> = (0..m.len).map(|i| m.token(&h, i)).collect();
        assert_eq!(copy, [1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn falls_back_to_shorter_ngrams_and_none() {
        let h = [5, 6, 7, 8, 6];
        let m = find_continuation(&h, 1, 3, 8).unwrap();
        assert_eq!(m.matched, 1);
        assert_eq!(m.start, 2);
        assert_eq!(find_continuation(&h, 2, 3, 8), None);
        assert_eq!(find_continuation(&[1], 1, 3, 8), None);
        assert_eq!(find_continuation(&h, 1, 3, 0), None);
    }
}
