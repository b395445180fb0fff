//! llama.cpp's own n-gram speculation, replayed: the drafts its
//! `ngram-mod` and `ngram-map-k` modes (as `llama-speculative-simple` runs
//! them with their default settings) would propose on a recorded trace, so
//! edgespec's policy is compared with them on the same tokens and the same
//! cost profile. Written from the behaviour of llama.cpp's
//! `common/speculative.cpp` and `common/ngram-map.cpp` (the tree
//! `benches/build-peer.sh` builds): the settings, what is indexed when, and
//! when a draft is given up, not its data structures (an exact map stands
//! in for its hash tables, whose collisions are rare on texts this short).
//!
//! Two things differ from the live tools on purpose: a draft never runs
//! past the request's token limit (the tools' `ngram-mod` drafts its whole
//! length and overshoots the limit, which a fair comparison must not
//! count), and the draft the prompt's own pass would carry is not made
//! (replay times decoding from the first generated token, for every mode).

use std::collections::HashMap;

use edgespec::draft::{Draft, DraftControl, DraftSource, Drafter};
use edgespec::engine::{EngineError, Token};

/// Which of llama.cpp's n-gram modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlamaNgram {
    /// `--spec-type ngram-mod`: the next token of every 24-gram seen;
    /// drafts 48 to 64 tokens by chaining them, or nothing.
    Mod,
    /// `--spec-type ngram-map-k`: the 48 tokens that followed the last
    /// 12 tokens where they occurred before, as many as were accepted the
    /// last time that key drafted.
    MapK,
}

impl LlamaNgram {
    /// The mode's name in `bench` and `replay`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mod => "llama-ngram-mod",
            Self::MapK => "llama-ngram-map-k",
        }
    }
}

/// `ngram-mod`'s defaults (common.h): match length, longest and shortest draft.
const MOD_MATCH: usize = 24;
const MOD_MAX: usize = 64;
const MOD_MIN: usize = 48;
/// New tokens it indexes at once.
const MOD_CHUNK: usize = 32;
/// Rounds accepting under a quarter of their draft after which it forgets
/// its table (and indexes the text again).
const MOD_LOW_ROUNDS: u32 = 5;
/// `ngram-map-k`'s defaults: key and value lengths.
const MAP_KEY: usize = 12;
const MAP_VALUE: usize = 48;

/// A replayed llama.cpp n-gram drafter for one request at a time (each of
/// the tool's runs is a process of its own).
#[derive(Debug, Clone)]
pub struct LlamaNgramDrafter {
    mode: LlamaNgram,
    /// ngram-mod: 24-gram → the token after it (the latest seen).
    next: HashMap<Vec<Token>, Token>,
    /// ngram-mod: tokens of the context whose n-grams are indexed.
    indexed: usize,
    /// ngram-mod: consecutive rounds that accepted under a quarter.
    low_rounds: u32,
    /// ngram-map-k: per key, how many of its last draft were accepted.
    key_accepted: HashMap<Vec<Token>, usize>,
    /// The last draft: committed length it was made at, its length and
    /// (map-k) its key, to learn its outcome at the next proposal.
    last: Option<(usize, usize, Vec<Token>)>,
    begun: bool,
}

impl LlamaNgramDrafter {
    /// A drafter in `mode`, nothing indexed.
    pub fn new(mode: LlamaNgram) -> Self {
        Self {
            mode,
            next: HashMap::new(),
            indexed: 0,
            low_rounds: 0,
            key_accepted: HashMap::new(),
            last: None,
            begun: false,
        }
    }

    /// Indexes the n-grams of `context` from `self.indexed` on whose next
    /// token is known.
    fn index_mod(&mut self, context: &[Token]) {
        let end = context.len().saturating_sub(MOD_MATCH);
        for i in self.indexed..end {
            self.next
                .insert(context[i..i + MOD_MATCH].to_vec(), context[i + MOD_MATCH]);
        }
        self.indexed = self.indexed.max(end);
    }

    /// What the tool learns from its last draft's outcome.
    fn record_outcome(&mut self, committed_len: usize) {
        let Some((at, drafted, key)) = self.last.take() else {
            return;
        };
        let accepted = committed_len.saturating_sub(at + 1).min(drafted);
        match self.mode {
            LlamaNgram::Mod => {
                if (accepted as f64) < 0.25 * drafted as f64 {
                    self.low_rounds += 1;
                    if self.low_rounds >= MOD_LOW_ROUNDS {
                        self.next.clear();
                        self.indexed = 0;
                        self.low_rounds = 0;
                    }
                } else {
                    self.low_rounds = 0;
                }
            }
            LlamaNgram::MapK => {
                self.key_accepted.insert(key, accepted);
            }
        }
    }

    /// `ngram-mod`'s draft after `context` (the target's cache) and `last`
    /// (the token to feed next).
    fn draft_mod(&mut self, context: &[Token], last: Token) -> Vec<Token> {
        if context.len() < MOD_MATCH {
            return Vec::new();
        }
        if self.indexed + MOD_CHUNK < context.len() {
            self.index_mod(context);
        }
        let mut text: Vec<Token> = context[context.len() + 1 - MOD_MATCH..].to_vec();
        text.push(last);
        let mut draft = Vec::new();
        while draft.len() < MOD_MAX {
            let key = &text[text.len() - MOD_MATCH..];
            let Some(&token) = self.next.get(key) else {
                break;
            };
            draft.push(token);
            text.push(token);
        }
        if draft.len() < MOD_MIN {
            draft.clear();
        }
        draft
    }

    /// `ngram-map-k`'s draft, and the key it drafted for.
    fn draft_map(&self, context: &[Token], last: Token) -> (Vec<Token>, Vec<Token>) {
        let n = context.len();
        if n < 2 * MAP_KEY + MAP_VALUE {
            return (Vec::new(), Vec::new());
        }
        let mut key: Vec<Token> = context[n + 1 - MAP_KEY..].to_vec();
        key.push(last);
        // The latest earlier place whose whole value lies in the context.
        let found = (1..n - MAP_KEY - MAP_VALUE - 1)
            .rev()
            .find(|&j| context[j..j + MAP_KEY] == key[..]);
        let Some(at) = found else {
            return (Vec::new(), key);
        };
        let length = self
            .key_accepted
            .get(&key)
            .copied()
            .unwrap_or(MAP_VALUE)
            .min(MAP_VALUE);
        (context[at + MAP_KEY..at + MAP_KEY + length].to_vec(), key)
    }
}

impl Drafter for LlamaNgramDrafter {
    fn reset(&mut self) {
        *self = Self::new(self.mode);
    }

    fn propose(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> Result<(), EngineError> {
        out.clear(DraftSource::Lookup { matched: 0 });
        let Some((&last, context)) = committed.split_last() else {
            return Ok(());
        };
        self.record_outcome(committed.len());
        if !self.begun {
            // The tool indexes its prompt when the request begins.
            if self.mode == LlamaNgram::Mod {
                self.index_mod(context);
            }
            self.begun = true;
        }
        let (tokens, key) = match self.mode {
            LlamaNgram::Mod => (self.draft_mod(context, last), Vec::new()),
            LlamaNgram::MapK => self.draft_map(context, last),
        };
        let source = DraftSource::Lookup { matched: 0 };
        out.clear(source);
        let room = ctl.room(source);
        for &token in tokens.iter().take(room) {
            if !out.push_and_ask(token, None, ctl, room) {
                break;
            }
        }
        if !out.is_empty() {
            self.last = Some((committed.len(), out.len(), key));
        }
        Ok(())
    }

    fn commit(&mut self, _committed: &[Token]) -> Result<(), EngineError> {
        Ok(())
    }

    fn bytes_per_token(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::DraftAll;

    fn propose(d: &mut LlamaNgramDrafter, committed: &[Token], room: usize) -> Vec<Token> {
        let mut out = Draft::default();
        d.propose(committed, &mut DraftAll(room), &mut out).unwrap();
        out.tokens().to_vec()
    }

    /// 100 distinct tokens, then the first 30 of them again: a copy.
    fn copied_text() -> Vec<Token> {
        let mut text: Vec<Token> = (0..100).collect();
        text.extend(0..30);
        text
    }

    #[test]
    fn ngram_mod_drafts_a_long_copy_whole_and_nothing_shorter_than_its_minimum() {
        let text = copied_text();
        let mut d = LlamaNgramDrafter::new(LlamaNgram::Mod);
        // 30 tokens of the copy match 24: the 64 that followed them.
        assert_eq!(propose(&mut d, &text, 100), (30..94).collect::<Vec<_>>());
        // The token limit cuts it.
        d.reset();
        assert_eq!(propose(&mut d, &text, 10).len(), 10);
        // A 24-token match whose known continuation runs 39 tokens (to the
        // end of the indexed text), under the minimum 48: nothing.
        let mut short: Vec<Token> = (0..60).collect();
        short.extend(1000..1010);
        short.extend(30..54);
        d.reset();
        assert!(propose(&mut d, &short, 100).is_empty());
    }

    #[test]
    fn ngram_map_k_drafts_what_its_key_had_accepted_last_time() {
        let text = copied_text();
        let mut d = LlamaNgramDrafter::new(LlamaNgram::MapK);
        let first = propose(&mut d, &text, 100);
        assert_eq!(first, (30..78).collect::<Vec<_>>());
        // Five accepted (and the target's own token): the same key now
        // drafts five.
        let mut after = text.clone();
        after.extend(30..36);
        let _ = propose(&mut d, &after, 100);
        assert_eq!(d.key_accepted.get(&(18..30).collect::<Vec<_>>()), Some(&5));
        assert_eq!(propose(&mut d, &text, 100).len(), 5);
        // No earlier place: nothing.
        let fresh: Vec<Token> = (0..200).collect();
        d.reset();
        assert!(propose(&mut d, &fresh, 100).is_empty());
    }
}
