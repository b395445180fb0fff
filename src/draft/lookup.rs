//! Prompt-lookup drafting (Saxena 2023, "Prompt Lookup Decoding"): find the
//! latest n-gram of the sequence earlier in the sequence and propose what
//! followed it. Costs no model call.

use super::{Draft, DraftControl, DraftSource, Drafter, Next};
use crate::engine::{EngineError, Token};

/// A match found in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupMatch {
    /// Index in the history where the proposed continuation starts.
    pub start: usize,
    /// Tokens available from there.
    pub len: usize,
    /// Length of the n-gram that matched.
    pub ngram: usize,
}

/// Finds the most recent earlier occurrence of the history's last n tokens,
/// trying n from `max_ngram` down to `min_ngram`, and returns the
/// continuation (at most `max_len` tokens). Longer matches win; among equal
/// lengths the most recent occurrence wins.
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
        for j in (0..len - n).rev() {
            if &history[j..j + n] == suffix {
                let start = j + n;
                return Some(LookupMatch {
                    start,
                    len: (len - start).min(max_len),
                    ngram: n,
                });
            }
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
        let room = ctl.room();
        let Some(m) = find_continuation(
            committed,
            min_ngram.max(1),
            self.max_ngram.max(min_ngram),
            room,
        ) else {
            return false;
        };
        out.clear(DraftSource::Lookup { ngram: m.ngram });
        for &token in &committed[m.start..m.start + m.len] {
            out.push(token, None);
            match ctl.next(out) {
                Next::Continue => {}
                Next::Stop => break,
                Next::DropLastAndStop => {
                    out.pop();
                    break;
                }
            }
        }
        true
    }
}

impl Drafter for LookupDrafter {
    fn name(&self) -> &'static str {
        "lookup"
    }

    fn reset(&mut self) {}

    fn propose(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> Result<(), EngineError> {
        out.clear(DraftSource::Lookup { ngram: 0 });
        self.propose_with(committed, self.min_ngram, ctl, out);
        Ok(())
    }

    fn commit(&mut self, _committed: &[Token]) -> Result<(), EngineError> {
        Ok(())
    }

    fn bytes_per_token(&self) -> u64 {
        0
    }

    fn measure_step_ms(&mut self) -> Result<Option<f64>, EngineError> {
        Ok(None)
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
                ngram: 3
            }
        );
        assert_eq!(&h[m.start..m.start + m.len], &[7, 1, 2, 3]);
        // Continuation capped by max_len.
        assert_eq!(find_continuation(&h, 1, 3, 2).unwrap().len, 2);
    }

    #[test]
    fn falls_back_to_shorter_ngrams_and_none() {
        let h = [5, 6, 7, 8, 6];
        let m = find_continuation(&h, 1, 3, 8).unwrap();
        assert_eq!(m.ngram, 1);
        assert_eq!(m.start, 2);
        assert_eq!(find_continuation(&h, 2, 3, 8), None);
        assert_eq!(find_continuation(&[1], 1, 3, 8), None);
        assert_eq!(find_continuation(&h, 1, 3, 0), None);
    }
}
