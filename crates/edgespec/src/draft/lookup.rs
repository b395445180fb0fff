//! Drafts that cost no model call, from three sources, best first:
//!
//! 1. Suffix matching (Prompt Lookup Decoding, Saxena 2023; SuffixDecoding,
//!    arXiv 2411.04975): the longest stretch at the end of the text that
//!    occurred before, in the request's own text (prompt and output so far)
//!    or in the memory of earlier outputs ([`OutputMemory`]); what followed
//!    it is the draft. Where several places share that longest context,
//!    each next token is the one most of them continue with, and the draft
//!    stops where that consensus makes the continuation unlikely.
//! 2. Recycled target candidates ([`SuccessorTable`]), where nothing matches.
//!
//! Candidates are found by scanning the request and the memory (at most
//! [`MAX_TOKENS`](super::memory::MAX_TOKENS) tokens); a suffix tree would
//! answer the same queries, but at these sizes a scan costs a fraction of a
//! millisecond a round and no upkeep.

use super::memory::{OutputMemory, SEPARATOR};
use super::recycled::SuccessorTable;
use super::{Draft, DraftControl, DraftSource, Drafter};
use crate::engine::{EngineError, Token};

/// Longest context a match is measured over: beyond this the evidence that
/// a span is being copied verbatim is already as strong as it gets.
pub const MAX_MATCH: usize = 64;

/// Places sharing the longest context that a draft is built from at most
/// (the most recent).
const MAX_CANDIDATES: usize = 64;

/// A suffix-matched draft stops before the token whose estimated
/// probability (the share of candidates continuing with it, multiplied
/// along the draft) falls below this: SuffixDecoding's default cut-off.
const MIN_PROBABILITY: f64 = 0.1;

/// Where a candidate continuation lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corpus {
    /// The request's own text.
    Request,
    /// The memory of earlier outputs.
    Memory,
}

/// One earlier place the end of the text occurred: its continuation starts
/// at `start` in `corpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    corpus: Corpus,
    start: usize,
}

/// How many tokens ending at `end` (exclusive) of `corpus` equal the last
/// tokens of `history`, counting back at most `limit`.
fn shared_suffix(corpus: &[Token], end: usize, history: &[Token], limit: usize) -> usize {
    corpus[..end]
        .iter()
        .rev()
        .zip(history.iter().rev())
        .take(limit)
        .take_while(|(a, b)| a == b)
        .count()
}

/// The drafter of free drafts: lookup settings, the memory of earlier
/// outputs and the recycled successors, kept for the drafter's lifetime.
#[derive(Debug, Clone)]
pub struct LookupDrafter {
    /// Shortest match (tokens of shared context) that counts.
    pub min_ngram: usize,
    /// Longest n-gram the match must at least cover to be preferred over a
    /// shorter one; longer shared context still ranks higher.
    pub max_ngram: usize,
    memory: OutputMemory,
    successors: SuccessorTable,
    candidates: Vec<Candidate>,
    counts: Vec<(Token, usize)>,
}

impl Default for LookupDrafter {
    fn default() -> Self {
        Self::new(2, 4)
    }
}

impl LookupDrafter {
    /// Matches of `min_ngram` tokens or more, an empty memory of the
    /// default size.
    pub fn new(min_ngram: usize, max_ngram: usize) -> Self {
        Self {
            min_ngram,
            max_ngram,
            memory: OutputMemory::default(),
            successors: SuccessorTable::default(),
            candidates: Vec::with_capacity(MAX_CANDIDATES),
            counts: Vec::with_capacity(MAX_CANDIDATES),
        }
    }

    /// The same drafter drafting also from `memory` (and adding to it).
    pub fn with_memory(mut self, memory: OutputMemory) -> Self {
        self.memory = memory;
        self
    }

    /// The memory of earlier outputs.
    pub fn memory(&self) -> &OutputMemory {
        &self.memory
    }

    /// Collects the candidates sharing the longest context (at least
    /// `min_ngram` tokens) with the end of `history`, the most recent
    /// first; returns that context's length (0: none).
    fn find_candidates(&mut self, history: &[Token], min_ngram: usize) -> usize {
        self.candidates.clear();
        let Some(&last) = history.last() else {
            return 0;
        };
        let min = min_ngram.max(1);
        let mut best = 0;
        let mut consider = |corpus: Corpus, text: &[Token], end: usize, limit: usize| {
            if text[end - 1] != last {
                return;
            }
            let matched = shared_suffix(text, end, history, limit);
            if matched < min || matched < best {
                return;
            }
            if matched > best {
                best = matched;
                self.candidates.clear();
            }
            if self.candidates.len() < MAX_CANDIDATES {
                self.candidates.push(Candidate { corpus, start: end });
            }
        };
        // The request: every earlier end, latest first (the last token
        // itself is not an earlier occurrence).
        for end in (1..history.len()).rev() {
            consider(Corpus::Request, history, end, MAX_MATCH.min(end));
        }
        let memory = self.memory.tokens();
        for end in (1..memory.len()).rev() {
            consider(Corpus::Memory, memory, end, MAX_MATCH);
        }
        best
    }

    /// The token candidate `c` proposes at draft position `i`: past the end
    /// of the request the copy goes on copying itself (the match said the
    /// text from `start` repeats what follows it, so a loop continues);
    /// in the memory a candidate ends at its output's end.
    fn candidate_token(&self, history: &[Token], c: Candidate, i: usize) -> Option<Token> {
        match c.corpus {
            Corpus::Request => {
                let period = history.len() - c.start;
                Some(history[c.start + i % period])
            }
            Corpus::Memory => self
                .memory
                .tokens()
                .get(c.start + i)
                .copied()
                .filter(|&t| t != SEPARATOR),
        }
    }

    /// Fills `out` with a suffix-matched draft (matches of at least
    /// `min_ngram` tokens) unless the policy expects a recycled one to
    /// yield more, or where there is none, a recycled one; returns false
    /// (and leaves `out` empty) when neither has a token.
    pub fn propose_with(
        &mut self,
        committed: &[Token],
        min_ngram: usize,
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> bool {
        let matched = self.propose_match(committed, min_ngram, ctl, out);
        let recyclable = committed
            .last()
            .is_some_and(|&t| self.successors.successor(t).is_some());
        if !recyclable || (matched && !ctl.prefer(out, DraftSource::Recycled)) {
            return matched;
        }
        // The match again only where the policy dropped the recycled draft.
        self.propose_recycled(committed, ctl, out)
            || (matched && self.propose_match(committed, min_ngram, ctl, out))
    }

    fn propose_match(
        &mut self,
        committed: &[Token],
        min_ngram: usize,
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> bool {
        let matched = self.find_candidates(committed, min_ngram);
        if self.candidates.is_empty() {
            return false;
        }
        let source = if self.candidates.iter().any(|c| c.corpus == Corpus::Request) {
            DraftSource::Lookup { matched }
        } else {
            DraftSource::Memory { matched }
        };
        out.clear(source);
        let room = ctl.room(source);
        let mut probability = 1.0;
        let mut counts = std::mem::take(&mut self.counts);
        let mut candidates = std::mem::take(&mut self.candidates);
        for i in 0..room {
            counts.clear();
            let mut alive = 0;
            for &c in &candidates {
                let Some(token) = self.candidate_token(committed, c, i) else {
                    continue;
                };
                alive += 1;
                match counts.iter_mut().find(|(t, _)| *t == token) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((token, 1)),
                }
            }
            // The most frequent; among equals the most recent (listed first).
            let Some(&(token, n)) = counts.iter().reduce(|a, b| if b.1 > a.1 { b } else { a })
            else {
                break;
            };
            probability *= n as f64 / alive as f64;
            if probability < MIN_PROBABILITY {
                break;
            }
            candidates.retain(|&c| self.candidate_token(committed, c, i) == Some(token));
            if !out.push_and_ask(token, None, ctl, room) {
                break;
            }
        }
        self.counts = counts;
        self.candidates = candidates;
        !out.is_empty()
    }

    fn propose_recycled(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> bool {
        out.clear(DraftSource::Recycled);
        let room = ctl.room(DraftSource::Recycled);
        let mut token = committed.last().copied();
        while let Some(next) = token.and_then(|t| self.successors.successor(t)) {
            if out.len() >= room || !out.push_and_ask(next, None, ctl, room) {
                break;
            }
            token = Some(next);
        }
        !out.is_empty()
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
        if !self.propose_with(committed, self.min_ngram, ctl, out) {
            out.clear(DraftSource::Lookup { matched: 0 });
        }
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

    fn observe_successor(&mut self, token: Token, next: Token) {
        self.successors.record(token, next);
    }

    fn finish(&mut self, committed: &[Token], prompt_len: usize) {
        self.memory
            .remember(&committed[prompt_len.min(committed.len())..]);
    }

    fn forget_outputs(&mut self) {
        self.memory = OutputMemory::new(self.memory.capacity());
        self.successors = SuccessorTable::default();
    }

    fn memory(&self) -> Option<&OutputMemory> {
        Some(&self.memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draft::Next;

    /// Lets every draft run to `room` tokens.
    struct Unbounded(usize);

    impl DraftControl for Unbounded {
        fn room(&self, _: DraftSource) -> usize {
            self.0
        }
        fn start(&mut self, _: DraftSource, _: usize) -> bool {
            true
        }
        fn next(&mut self, _: &Draft) -> Next {
            Next::Continue
        }
    }

    fn draft(d: &mut LookupDrafter, history: &[Token], room: usize) -> (Vec<Token>, DraftSource) {
        let mut out = Draft::default();
        d.propose(history, &mut Unbounded(room), &mut out).unwrap();
        (out.tokens().to_vec(), out.source())
    }

    #[test]
    fn the_latest_of_the_longest_matches_is_copied() {
        let mut d = LookupDrafter::new(1, 3);
        //            0  1  2  3  4  5  6  7  8  9 10
        let h = [1, 2, 3, 9, 1, 2, 3, 7, 1, 2, 3];
        // "1 2 3" continued with 9 and then with 7: one each, the latest wins.
        assert_eq!(
            draft(&mut d, &h, 4),
            (vec![7, 1, 2, 3], DraftSource::Lookup { matched: 3 })
        );
    }

    #[test]
    fn the_occurrence_sharing_more_context_wins_over_a_later_one() {
        let mut d = LookupDrafter::new(2, 3);
        //       0  1  2  3  4  5  6  7  8  9 10 11 12 13 14
        let h = [5, 1, 2, 3, 8, 4, 1, 2, 3, 9, 0, 5, 1, 2, 3];
        // "1 2 3" at 6..9 is preceded by 4, at 1..4 by 5 as the end is.
        assert_eq!(
            draft(&mut d, &h, 1),
            (vec![8], DraftSource::Lookup { matched: 4 })
        );
        // The context measured stops at MAX_MATCH.
        let long: Vec<Token> = (0..2 * MAX_MATCH as Token)
            .chain(0..2 * MAX_MATCH as Token)
            .collect();
        let (tokens, source) = draft(&mut d, &long, 1);
        assert_eq!(
            (tokens, source),
            (vec![0], DraftSource::Lookup { matched: MAX_MATCH })
        );
    }

    #[test]
    fn the_continuation_most_places_share_wins_and_a_split_ends_the_draft() {
        let mut d = LookupDrafter::new(2, 2);
        // "8 1 2" (as much context as any) continues with 5 6 twice and
        // with 7 once, the latest.
        let h = [8, 1, 2, 5, 6, 8, 1, 2, 5, 6, 8, 1, 2, 7, 8, 1, 2];
        assert_eq!(draft(&mut d, &h, 4).0, [5, 6, 8, 1]);
        // Eleven places, eleven different continuations: none is likely enough.
        let h: Vec<Token> = (0..11)
            .flat_map(|i| [1, 2, 100 + i])
            .chain([1, 2])
            .collect();
        assert_eq!(draft(&mut d, &h, 4).0, Vec::<Token>::new());
    }

    #[test]
    fn a_loop_is_copied_past_the_end_of_the_history() {
        let mut d = LookupDrafter::new(2, 2);
        let h = [9, 1, 2, 3, 1, 2, 3];
        assert_eq!(draft(&mut d, &h, 7).0, [1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn earlier_outputs_are_drafted_from_and_never_across_their_end() {
        let mut d = LookupDrafter::new(2, 4);
        d.finish(&[50, 51, 1, 2, 3, 4, 5], 2);
        assert_eq!(d.memory().tokens(), [1, 2, 3, 4, 5, -1]);
        assert_eq!(
            draft(&mut d, &[60, 1, 2], 8),
            (vec![3, 4, 5], DraftSource::Memory { matched: 2 })
        );
        // The request's own text shares as much context: it counts as the
        // request's, and the consensus of both decides each token.
        assert_eq!(
            draft(&mut d, &[1, 2, 3, 9, 1, 2], 2).1,
            DraftSource::Lookup { matched: 2 }
        );
        // Too short a match: nothing from the memory.
        assert_eq!(draft(&mut d, &[60, 2], 8).0, Vec::<Token>::new());
    }

    #[test]
    fn recycled_successors_draft_where_nothing_matches() {
        let mut d = LookupDrafter::new(2, 4);
        for (token, next) in [(1, 4), (4, 6), (6, 1)] {
            d.observe_successor(token, next);
        }
        assert_eq!(
            draft(&mut d, &[3, 1], 5),
            (vec![4, 6, 1, 4, 6], DraftSource::Recycled)
        );
        assert_eq!(draft(&mut d, &[3, 2], 5).0, Vec::<Token>::new());
    }
}
