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
//! Where the places disagree, the continuations the chain did not take
//! (the runner-up at a split, both sides where the split ended the chain)
//! are offered to the policy as branches of a draft tree
//! ([`DraftControl::grow`]), each followed while its own places agree.
//!
//! Candidates are found by scanning the request and the memory (at most
//! [`MAX_TOKENS`](super::memory::MAX_TOKENS) tokens); a suffix tree would
//! answer the same queries, but at these sizes a scan costs a fraction of a
//! millisecond a round and no upkeep.

use super::memory::{OutputMemory, SEPARATOR};
use super::recycled::{Successor, SuccessorTable};
use super::{Draft, DraftControl, DraftSource, Drafter};
use crate::engine::{EngineError, Token};

/// Longest context a match is measured over: beyond this the evidence that
/// a span is being copied verbatim is already as strong as it gets.
pub const MAX_MATCH: usize = 64;

/// Places sharing the longest context that a draft is built from at most
/// (the most recent).
const MAX_CANDIDATES: usize = 64;

/// Places sharing a shorter context (at least the shortest match) that
/// branches are drawn from at most (the most recent).
const MAX_PLACES: usize = 256;

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

/// Most branches one draft offers the policy.
const MAX_FORKS: usize = 16;

/// A continuation the chain did not take: `token` after the chain's first
/// `position` tokens, continued by `share` of the places alive there.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fork {
    position: usize,
    token: Token,
    share: f64,
}

/// The most frequent token of `counts` other than `token` (among equals
/// the first listed, the most recent), with its count.
fn runner_up(counts: &[(Token, usize)], token: Token) -> Option<(Token, usize)> {
    counts
        .iter()
        .filter(|&&(t, _)| t != token)
        .reduce(|a, b| if b.1 > a.1 { b } else { a })
        .copied()
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
    /// The places sharing at least the shortest match (a branch's are
    /// among them).
    matches: Vec<Candidate>,
    counts: Vec<(Token, usize)>,
    /// Alternatives to the chain being drafted (at most [`MAX_FORKS`]).
    forks: Vec<Fork>,
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
            matches: Vec::with_capacity(MAX_CANDIDATES),
            counts: Vec::with_capacity(MAX_CANDIDATES),
            forks: Vec::with_capacity(MAX_FORKS),
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
    /// first, and into `matches` those sharing any context of at least
    /// `min_ngram` tokens; returns the longest context's length (0: none).
    fn find_candidates(&mut self, history: &[Token], min_ngram: usize) -> usize {
        self.candidates.clear();
        self.matches.clear();
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
            if matched < min {
                return;
            }
            if self.matches.len() < MAX_PLACES {
                self.matches.push(Candidate { corpus, start: end });
            }
            if matched < best {
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
        self.forks.clear();
        for i in 0..room {
            let Some((token, n, alive)) = self.vote(committed, &candidates, i, &mut counts) else {
                break;
            };
            let share = n as f64 / alive as f64;
            probability *= share;
            if probability < MIN_PROBABILITY {
                // Unsure here: the two likeliest sides may branch.
                self.offer_fork(i, token, share);
                if let Some((other, m)) = runner_up(&counts, token) {
                    self.offer_fork(i, other, m as f64 / alive as f64);
                }
                break;
            }
            candidates.retain(|&c| self.candidate_token(committed, c, i) == Some(token));
            // The token's share of the vote is its evidence for the policy.
            if !out.push_and_ask(token, Some(share as f32), ctl, room) {
                break;
            }
        }
        self.candidates = candidates;
        if ctl.may_branch() {
            self.fork_off_chain(committed, out, &mut counts);
            self.grow_branches(committed, ctl, out, &mut counts);
        }
        self.counts = counts;
        !out.is_empty()
    }

    /// Offers, at each position of the chain in `out`, the continuation
    /// most of the places that agree with the chain so far take instead of
    /// the chain's, among every place sharing at least the shortest match
    /// (those sharing the longest context mostly agree with the chain:
    /// shorter contexts are where the alternatives are).
    fn fork_off_chain(
        &mut self,
        committed: &[Token],
        out: &Draft,
        counts: &mut Vec<(Token, usize)>,
    ) {
        let mut places = std::mem::take(&mut self.candidates);
        places.clear();
        places.extend_from_slice(&self.matches);
        for (i, &token) in out.tokens()[..out.chain_len()].iter().enumerate() {
            let Some((_, _, alive)) = self.vote(committed, &places, i, counts) else {
                break;
            };
            if let Some((other, m)) = runner_up(counts, token) {
                self.offer_fork(i, other, m as f64 / alive as f64);
            }
            places.retain(|&c| self.candidate_token(committed, c, i) == Some(token));
        }
        self.candidates = places;
    }

    /// The vote of `candidates` at draft position `i`: the most frequent
    /// token (among equals the most recent, listed first), its count and
    /// the candidates still alive there; `counts` keeps every token's.
    fn vote(
        &self,
        history: &[Token],
        candidates: &[Candidate],
        i: usize,
        counts: &mut Vec<(Token, usize)>,
    ) -> Option<(Token, usize, usize)> {
        counts.clear();
        let mut alive = 0;
        for &c in candidates {
            let Some(token) = self.candidate_token(history, c, i) else {
                continue;
            };
            alive += 1;
            match counts.iter_mut().find(|(t, _)| *t == token) {
                Some((_, n)) => *n += 1,
                None => counts.push((token, 1)),
            }
        }
        let &(token, n) = counts.iter().reduce(|a, b| if b.1 > a.1 { b } else { a })?;
        Some((token, n, alive))
    }

    fn offer_fork(&mut self, position: usize, token: Token, share: f64) {
        if self.forks.len() < MAX_FORKS {
            self.forks.push(Fork {
                position,
                token,
                share,
            });
        }
    }

    /// Offers the forks of the chain in `out` to the policy, likeliest
    /// first; each it takes grows as a branch while the places behind it
    /// agree and the policy takes its next token too.
    fn grow_branches(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
        counts: &mut Vec<(Token, usize)>,
    ) {
        let chain = out.chain_len();
        let mut forks = std::mem::take(&mut self.forks);
        forks.sort_by(|a, b| b.share.total_cmp(&a.share));
        let mut branch = std::mem::take(&mut self.candidates);
        for fork in forks.iter().filter(|f| f.position <= chain) {
            // The places that agree with the chain up to the fork and
            // continue with its token.
            branch.clear();
            branch.extend(self.matches.iter().copied().filter(|&c| {
                (0..fork.position)
                    .all(|i| self.candidate_token(committed, c, i) == Some(out.tokens()[i]))
                    && self.candidate_token(committed, c, fork.position) == Some(fork.token)
            }));
            let (mut parent, mut token, mut share) = (fork.position, fork.token, fork.share);
            let mut position = fork.position;
            while ctl.grow(out, parent, share) && out.branch(parent, token, Some(share as f32)) {
                parent = out.len();
                position += 1;
                let Some((next, n, alive)) = self.vote(committed, &branch, position, counts) else {
                    break;
                };
                branch.retain(|&c| self.candidate_token(committed, c, position) == Some(next));
                (token, share) = (next, n as f64 / alive as f64);
            }
        }
        self.candidates = branch;
        self.forks = forks;
    }

    fn propose_recycled(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> bool {
        out.clear(DraftSource::Recycled);
        let room = ctl.room(DraftSource::Recycled);
        let Some(&last) = committed.last() else {
            return false;
        };
        // Each token goes with its share of the target's kept probability
        // (how clearly the target preferred it), which scales its estimate.
        let mut token = last;
        while let Some(&next) = self.successors.successors(token).first() {
            if out.len() >= room || !out.push_and_ask(next.token, Some(next.share), ctl, room) {
                break;
            }
            token = next.token;
        }
        if !ctl.may_branch() {
            return !out.is_empty();
        }
        // The other successors at each position of the chain, and all of
        // them after it, are its forks, each followed by likeliest
        // successors.
        self.forks.clear();
        let chain = out.chain_len();
        for position in 0..=chain {
            let before = if position == 0 {
                last
            } else {
                out.tokens()[position - 1]
            };
            let taken = out.tokens().get(position).copied();
            let successors = self.successors.successors(before);
            for s in successors.iter().filter(|s| Some(s.token) != taken) {
                if self.forks.len() < MAX_FORKS {
                    self.forks.push(Fork {
                        position,
                        token: s.token,
                        share: f64::from(s.share),
                    });
                }
            }
        }
        let mut forks = std::mem::take(&mut self.forks);
        forks.sort_by(|a, b| b.share.total_cmp(&a.share));
        for fork in &forks {
            let (mut parent, mut token, mut share) = (fork.position, fork.token, fork.share);
            while ctl.grow(out, parent, share) && out.branch(parent, token, Some(share as f32)) {
                parent = out.len();
                let Some(&next) = self.successors.successors(token).first() else {
                    break;
                };
                (token, share) = (next.token, f64::from(next.share));
            }
        }
        self.forks = forks;
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

    fn observe_successors(&mut self, token: Token, next: &[Successor]) {
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

    fn memory_mut(&mut self) -> Option<&mut OutputMemory> {
        Some(&mut self.memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draft::Next;

    /// Lets every draft run to `room` tokens (chains only).
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

    /// Drafts chains of `chain` tokens, then takes every branch backed by
    /// at least `min_share` of the evidence while the draft holds fewer
    /// than `room` nodes; records what it was offered (parent, share).
    struct Branching {
        chain: usize,
        room: usize,
        min_share: f64,
        offered: Vec<(usize, f64)>,
    }

    impl Branching {
        fn new(chain: usize, room: usize, min_share: f64) -> Self {
            Self {
                chain,
                room,
                min_share,
                offered: Vec::new(),
            }
        }
    }

    impl DraftControl for Branching {
        fn room(&self, _: DraftSource) -> usize {
            self.room
        }
        fn start(&mut self, _: DraftSource, _: usize) -> bool {
            true
        }
        fn next(&mut self, draft: &Draft) -> Next {
            if draft.len() < self.chain {
                Next::Continue
            } else {
                Next::Stop
            }
        }
        fn may_branch(&self) -> bool {
            true
        }
        fn grow(&mut self, draft: &Draft, parent: usize, share: f64) -> bool {
            self.offered.push((parent, share));
            share >= self.min_share && draft.len() < self.room
        }
    }

    /// Where the places split, the continuation the chain did not take
    /// becomes a branch, followed while its own places agree; a split that
    /// ends the chain branches both ways.
    #[test]
    fn a_split_vote_offers_the_runner_up_as_a_branch() {
        let mut d = LookupDrafter::new(2, 2);
        // "8 1 2" continues with 5 6 twice and with 7 9 once (the latest).
        let h = [8, 1, 2, 5, 6, 8, 1, 2, 5, 6, 8, 1, 2, 7, 9, 8, 1, 2];
        let mut ctl = Branching::new(3, 8, 0.3);
        let mut out = Draft::default();
        d.propose(&h, &mut ctl, &mut out).unwrap();
        assert_eq!(out.tokens(), &[5, 6, 8, 7, 9, 8, 1, 2]);
        assert_eq!(out.parents(), &[0, 1, 2, 0, 4, 5, 6, 7]);
        assert_eq!((out.chain_len(), out.leaves()), (3, 2));
        assert_eq!(ctl.offered[0].0, 0);
        assert!((ctl.offered[0].1 - 1.0 / 3.0).abs() < 1e-9);
        // A weaker branch is not taken: a chain.
        let mut ctl = Branching::new(3, 8, 0.5);
        d.propose(&h, &mut ctl, &mut out).unwrap();
        assert!(out.is_chain());
        assert_eq!(out.tokens(), &[5, 6, 8]);

        // Eleven places, eleven continuations: too unsure for a chain, so
        // the split's two likeliest sides are offered at the root.
        let h: Vec<Token> = (0..11)
            .flat_map(|i| [1, 2, 100 + i])
            .chain([1, 2])
            .collect();
        let mut ctl = Branching::new(3, 8, 0.0);
        d.propose(&h, &mut ctl, &mut out).unwrap();
        assert_eq!(out.chain_len(), 0);
        // The latest place's continuation first, copied while room lasts.
        assert_eq!(out.tokens(), &[110, 1, 2, 110, 1, 2, 110, 1]);
        let at_root: Vec<f64> = ctl
            .offered
            .iter()
            .filter(|o| o.0 == 0)
            .map(|o| o.1)
            .collect();
        assert_eq!(at_root.len(), 2);
        assert!(at_root
            .iter()
            .all(|&share| (share - 1.0 / 11.0).abs() < 1e-9));
    }

    /// A copy that reaches the end of a turn stops there: the target
    /// would emit nothing after it, so neither the chain nor a branch goes
    /// on (the end token itself may still be right).
    #[test]
    fn a_copy_stops_at_a_token_that_ends_generation() {
        const END: Token = 99;
        let mut d = LookupDrafter::new(2, 2);
        // A turn "1 2 3 4" ended by END, then the next turn, then "1 2" again.
        let h = [7, 1, 2, 3, 4, END, 8, 6, 1, 2];
        let mut out = Draft::default();
        d.propose(&h, &mut Unbounded(8), &mut out).unwrap();
        assert_eq!(out.tokens(), &[3, 4, END, 8, 6, 1, 2, 3]);
        out.end_at(&[END]);
        d.propose(&h, &mut Unbounded(8), &mut out).unwrap();
        assert_eq!(out.tokens(), &[3, 4, END]);
        assert!(!out.push(8, None), "the chain ended");
        assert!(!out.branch(3, 8, None), "nothing grows after the end");
        assert!(out.branch(2, 5, None), "a branch before the end may");
        // The end stays set from round to round.
        out.clear(DraftSource::Model);
        assert!(out.push(END, None) && !out.push(1, None));
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
        let successor = |token, share| Successor { token, share };
        for (token, next) in [(1, 4), (4, 6), (6, 1)] {
            d.observe_successors(token, &[successor(next, 0.7), successor(9, 0.2)]);
        }
        assert_eq!(
            draft(&mut d, &[3, 1], 5),
            (vec![4, 6, 1, 4, 6], DraftSource::Recycled)
        );
        assert_eq!(draft(&mut d, &[3, 2], 5).0, Vec::<Token>::new());
        // Each chain token carries the target's share behind it.
        let mut out = Draft::default();
        d.propose(&[3, 1], &mut Unbounded(3), &mut out).unwrap();
        assert_eq!(out.confidence(), &[Some(0.7); 3]);

        // The runners-up branch off the chain, and every successor after
        // it, each followed by its own likeliest successors (likeliest
        // first: the chain's own continuation, then the runners-up).
        d.observe_successors(9, &[successor(5, 0.9)]);
        let mut ctl = Branching::new(2, 7, 0.1);
        let mut out = Draft::default();
        d.propose(&[3, 1], &mut ctl, &mut out).unwrap();
        assert_eq!(out.source(), DraftSource::Recycled);
        assert_eq!(out.tokens(), &[4, 6, 1, 4, 6, 1, 4]);
        assert_eq!(out.chain_len(), 2);
        assert_eq!(out.confidence()[2], Some(0.7));
        let mut ctl = Branching::new(2, 6, 0.5);
        d.observe_successors(6, &[successor(9, 0.4), successor(1, 0.3)]);
        d.observe_successors(4, &[successor(6, 0.3), successor(9, 0.6)]);
        d.propose(&[3, 1], &mut ctl, &mut out).unwrap();
        // Chain 4 6; the fork 9 after 4 (share 0.6) grows 9 5.
        assert_eq!(out.tokens(), &[4, 6, 9, 5]);
        assert_eq!(out.parents(), &[0, 1, 1, 3]);
    }
}
