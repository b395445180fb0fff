//! Drafters: propose tokens for the target to verify.
//!
//! - [`ModelDrafter`]: a smaller model with the same vocabulary, in its own context.
//! - [`LookupDrafter`]: drafts that cost no model call: suffix matches in
//!   the prompt, the text so far and a memory of earlier outputs, and
//!   recycled target candidates where nothing matches.
//! - [`HybridDrafter`]: a free draft when the policy expects it to yield
//!   more than the model, otherwise the model.
//!
//! A drafter never decides how long a draft is: it asks the policy
//! ([`DraftControl`]) before spending time and after every token.

mod hybrid;
mod lookup;
pub mod memory;
mod model;
mod recycled;
mod trimmed;
mod vocab;

pub use hybrid::{HybridDrafter, DEFAULT_HYBRID_MIN_NGRAM};
pub use lookup::{LookupDrafter, MAX_MATCH};
pub use memory::{MemoryFileError, OutputMemory};
pub use model::{DraftModel, ModelDrafter, TIMED_CATCH_UP};
pub use recycled::{top_successors, Successor, SuccessorTable, Successors, SUCCESSORS};
pub use trimmed::TrimmedSource;
pub use vocab::{check_vocab_compatible, VocabError};

use std::sync::Arc;
use std::time::Duration;

use crate::costs::{CostModel, MAX_BATCH};
use crate::engine::{EngineError, Model, Sequence, Token, MAX_TREE_LEAVES};

/// Longest draft edgespec ever proposes in one round: one verification
/// pass (the last token and the draft) fits the cost model's largest batch.
pub const MAX_DRAFT: usize = MAX_BATCH - 1;

/// Draft-length settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DraftLength {
    /// Always draft this many tokens (fewer at the limits).
    Fixed(usize),
    /// Cost-aware: pick each round's length from measured costs and
    /// predicted acceptance, up to the cap.
    Auto {
        /// Longest model draft considered.
        max: usize,
    },
}

/// A draft length edgespec cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DraftLengthError {
    /// A fixed length above [`MAX_DRAFT`].
    #[error("draft length {0} is outside 0..={MAX_DRAFT}")]
    Fixed(usize),
    /// An automatic cap of 0 (use a fixed length of 0 to never draft) or
    /// above [`MAX_DRAFT`].
    #[error("automatic draft length cap (gamma max) {0} is outside 1..={MAX_DRAFT}")]
    AutoCap(usize),
}

impl DraftLength {
    /// The one rule for every engine and front end: a fixed length in
    /// 0..=MAX_DRAFT, an automatic cap in 1..=MAX_DRAFT.
    pub fn validate(self) -> Result<Self, DraftLengthError> {
        match self {
            Self::Fixed(g) if g > MAX_DRAFT => Err(DraftLengthError::Fixed(g)),
            Self::Auto { max } if max == 0 || max > MAX_DRAFT => {
                Err(DraftLengthError::AutoCap(max))
            }
            _ => Ok(self),
        }
    }
}

/// Where a draft came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftSource {
    /// A drafter model.
    Model,
    /// A suffix match in the request's own text (prompt and output so far).
    Lookup {
        /// Tokens of context the match shares with the end of the text, at
        /// most [`MAX_MATCH`]: the longer, the likelier the text is being
        /// copied (the policy learns how much).
        matched: usize,
    },
    /// A suffix match in the memory of earlier outputs only.
    Memory {
        /// Tokens of context shared, as for [`DraftSource::Lookup`].
        matched: usize,
    },
    /// Recycled target candidates: each token the target's most likely
    /// successor of the one before, as last seen.
    Recycled,
}

impl DraftSource {
    /// Whether drafting from this source costs no model call.
    pub fn is_free(self) -> bool {
        self != Self::Model
    }
}

/// What the policy says after a drafted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Draft another token.
    Continue,
    /// Keep the draft as it is and stop.
    Stop,
    /// Drop the token just drafted and stop.
    DropLastAndStop,
}

/// The policy's side of drafting.
pub trait DraftControl {
    /// Most tokens this round's draft may hold when drafted by `source`
    /// (free lookup drafts may run longer than model drafts).
    fn room(&self, source: DraftSource) -> usize;
    /// Asked before a drafter spends time: draft at all, given that a model
    /// drafter must first catch up on `behind` tokens it has not seen?
    fn start(&mut self, source: DraftSource, behind: usize) -> bool;
    /// Asked after each drafted token.
    fn next(&mut self, draft: &Draft) -> Next;
    /// Asked by a drafter holding a finished `draft` that could draft with
    /// `alternative` instead: is that expected to be worth more? (By
    /// default no: keep the draft in hand.)
    fn prefer(&mut self, _draft: &Draft, _alternative: DraftSource) -> bool {
        false
    }
    /// Whether this round may add branches at all (false: a drafter need
    /// not look for any). By default no.
    fn may_branch(&self) -> bool {
        false
    }
    /// Asked by a drafter holding `draft` that could add a node after
    /// `parent` (0: the committed text, i + 1: node i) which `share` of
    /// its evidence continues with: is it worth its place in the
    /// verification batch? (By default no: chains only.)
    fn grow(&mut self, _draft: &Draft, _parent: usize, _share: f64) -> bool {
        false
    }
}

/// Whether drafts may be trees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Trees {
    /// Where the policy expects a branch to pay for its place in the batch.
    #[default]
    Auto,
    /// Chains only.
    Off,
    /// Every branch a drafter offers, while the draft has room (for tests
    /// and measurements).
    Always,
}

impl std::str::FromStr for Trees {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            "always" => Ok(Self::Always),
            other => Err(format!(
                "unknown draft-tree setting '{other}' (auto, off, always)"
            )),
        }
    }
}

/// One round's draft: tokens, the drafter's confidence in each, and (in
/// sampling mode) the distribution each was sampled from. Buffers are
/// allocated once and reused.
///
/// Usually a chain, each token continuing the one before; a free drafter
/// unsure between continuations may add branches ([`Draft::branch`]),
/// making it a tree whose nodes are listed parents first: the chain's,
/// then the branches'. The target verifies every node in one batch.
///
/// Nothing continues a token that ends generation ([`Draft::end_at`]): the
/// target would never emit it, so verifying it is waste.
#[derive(Debug, Clone)]
pub struct Draft {
    tokens: heapless::Vec<Token, MAX_DRAFT>,
    /// Each node's parent: 0 for the committed text's last token, i + 1
    /// for node i.
    parents: heapless::Vec<usize, MAX_DRAFT>,
    /// Nodes in the leading chain (nodes before it continue one another).
    chain: usize,
    leaves: usize,
    confidence: heapless::Vec<Option<f32>, MAX_DRAFT>,
    source: DraftSource,
    q_rows: Vec<Vec<f32>>,
    sampled: bool,
    catch_up: Option<(usize, std::time::Duration)>,
    /// The target's end-of-generation tokens.
    ends: Vec<Token>,
}

impl Default for Draft {
    fn default() -> Self {
        Self {
            tokens: heapless::Vec::new(),
            parents: heapless::Vec::new(),
            chain: 0,
            leaves: 0,
            confidence: heapless::Vec::new(),
            source: DraftSource::Model,
            q_rows: Vec::new(),
            sampled: false,
            catch_up: None,
            ends: Vec::new(),
        }
    }
}

impl Draft {
    /// Tokens that end generation (the target's end-of-turn and
    /// end-of-text tokens): a draft is not continued past one, in every
    /// round from now on.
    pub fn end_at(&mut self, ends: &[Token]) {
        self.ends.clear();
        self.ends.extend_from_slice(ends);
    }

    /// Whether node `node` ends generation (nothing after it is drafted).
    fn ends_generation(&self, node: usize) -> bool {
        self.ends.contains(&self.tokens[node])
    }

    /// Empties the draft for a new round.
    pub fn clear(&mut self, source: DraftSource) {
        self.tokens.clear();
        self.parents.clear();
        self.chain = 0;
        self.leaves = 0;
        self.confidence.clear();
        self.source = source;
        self.sampled = false;
        self.catch_up = None;
    }

    /// Records the catch-up batch a model drafter ran before drafting.
    pub fn set_catch_up(&mut self, tokens: usize, time: std::time::Duration) {
        self.catch_up = Some((tokens, time));
    }

    /// The catch-up batch this round (tokens, time), if one ran.
    pub fn catch_up(&self) -> Option<(usize, std::time::Duration)> {
        self.catch_up
    }

    /// Drafted tokens (a tree's nodes, parents first).
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Number of drafted tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when nothing was drafted.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The drafter's probability for each token (None: deterministic lookup).
    pub fn confidence(&self) -> &[Option<f32>] {
        &self.confidence
    }

    /// Where the tokens came from.
    pub fn source(&self) -> DraftSource {
        self.source
    }

    /// The distribution token `i` was sampled from (sampling mode only).
    pub fn q(&self, i: usize) -> Option<&[f32]> {
        (self.sampled && i < self.tokens.len()).then(|| self.q_rows[i].as_slice())
    }

    /// Each node's parent: 0 for the committed text's last token, i + 1
    /// for node i (a chain's are 0, 1, 2, …).
    pub fn parents(&self) -> &[usize] {
        &self.parents
    }

    /// True when every node continues the one before (no branches).
    pub fn is_chain(&self) -> bool {
        self.chain == self.tokens.len()
    }

    /// Nodes of the leading chain.
    pub fn chain_len(&self) -> usize {
        self.chain
    }

    /// Leaves of the tree (a chain has one; an empty draft none).
    pub fn leaves(&self) -> usize {
        self.leaves
    }

    /// Tokens from the committed text to `node`, `node` included.
    pub fn depth(&self, node: usize) -> usize {
        let mut depth = 0;
        let mut at = node + 1;
        while at > 0 {
            depth += 1;
            at = self.parents[at - 1];
        }
        depth
    }

    /// Adds a token continuing the draft's chain; false when the draft is
    /// full, has branches or its chain ends generation.
    pub fn push(&mut self, token: Token, confidence: Option<f32>) -> bool {
        if !self.is_chain()
            || self.tokens.is_full()
            || (self.chain > 0 && self.ends_generation(self.chain - 1))
        {
            return false;
        }
        self.add(self.chain, token, confidence);
        self.chain += 1;
        true
    }

    /// Adds a node after `parent` (0: after the committed text, i + 1:
    /// after node i) that is not its chain continuation; false when the
    /// draft is full, it would have more than [`MAX_TREE_LEAVES`] leaves,
    /// `parent` is not a node or it ends generation.
    pub fn branch(&mut self, parent: usize, token: Token, confidence: Option<f32>) -> bool {
        let leaves = self.leaves + usize::from(self.adds_leaf(parent));
        if parent > self.tokens.len()
            || self.tokens.is_full()
            || leaves > MAX_TREE_LEAVES
            || (parent > 0 && self.ends_generation(parent - 1))
        {
            return false;
        }
        self.add(parent, token, confidence);
        true
    }

    /// Whether a child of `parent` is a new leaf (rather than extending
    /// one): `parent` is the committed text or already has a child.
    fn adds_leaf(&self, parent: usize) -> bool {
        parent == 0 || self.parents.contains(&parent)
    }

    fn add(&mut self, parent: usize, token: Token, confidence: Option<f32>) {
        self.leaves += usize::from(self.adds_leaf(parent));
        // Room was checked by the callers: all three have the same capacity.
        let _ = self.tokens.push(token);
        let _ = self.parents.push(parent);
        let _ = self.confidence.push(confidence);
    }

    /// The tokens drafted so far (what the next token is sampled after)
    /// and the row to write its distribution into; marks the draft as sampled.
    pub fn next_q_row(&mut self) -> (&[Token], &mut Vec<f32>) {
        let i = self.tokens.len();
        while self.q_rows.len() <= i {
            self.q_rows.push(Vec::new());
        }
        self.sampled = true;
        (&self.tokens, &mut self.q_rows[i])
    }

    /// Removes the last token.
    pub fn pop(&mut self) {
        self.truncate(self.len().saturating_sub(1));
    }

    /// Keeps the first `n` nodes.
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
        self.parents.truncate(n);
        self.confidence.truncate(n);
        self.chain = self.chain.min(n);
        self.leaves = (1..=self.parents.len())
            .filter(|i| !self.parents.contains(i))
            .count();
    }

    /// Adds a drafted token and asks the policy what next: true to draft
    /// another (while the draft holds fewer than `room` and the token does
    /// not end generation), false to stop, with the token dropped again if
    /// the policy says so.
    pub fn push_and_ask(
        &mut self,
        token: Token,
        confidence: Option<f32>,
        ctl: &mut dyn DraftControl,
        room: usize,
    ) -> bool {
        if !self.push(token, confidence) {
            return false;
        }
        match ctl.next(self) {
            Next::Continue => self.len() < room && !self.ends_generation(self.len() - 1),
            Next::Stop => false,
            Next::DropLastAndStop => {
                self.pop();
                false
            }
        }
    }
}

/// A source of drafts.
pub trait Drafter: Send {
    /// Forgets the previous sequence.
    fn reset(&mut self);
    /// Proposes a draft continuing `committed` (prompt + generated so far).
    fn propose(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> Result<(), EngineError>;
    /// The committed sequence after verification: drop what was rejected.
    fn commit(&mut self, committed: &[Token]) -> Result<(), EngineError>;
    /// Weight bytes one model draft step reads (0 for lookup).
    fn bytes_per_token(&self) -> u64;
    /// Reads `tokens` into the drafter's cache now (what it does not hold
    /// of them) instead of at its first draft; with `costs`, the last ones
    /// in the batch sizes of a drafting round's step and catch-up
    /// ([`TIMED_CATCH_UP`]), each timed into them. Returns the time of the
    /// timed passes. Nothing for drafters that run no model.
    fn prefill(
        &mut self,
        _tokens: &[Token],
        _costs: Option<&mut CostModel>,
    ) -> Result<Duration, EngineError> {
        Ok(Duration::ZERO)
    }
    /// The drafter model's cache, to save and restore with a session's
    /// (none for drafters that run no model).
    fn cache(&self) -> Option<&Sequence> {
        None
    }
    /// The drafter model's cache, mutably.
    fn cache_mut(&mut self) -> Option<&mut Sequence> {
        None
    }
    /// Whether this drafter proposes prompt-lookup drafts (free to draft,
    /// so the policy may let them run longer than model drafts).
    fn drafts_lookup(&self) -> bool {
        false
    }
    /// The target's likeliest tokens after `token` were `next` (likeliest
    /// first), at a position its verification kept (told drafters that
    /// draft lookup).
    fn observe_successors(&mut self, _token: Token, _next: &[Successor]) {}
    /// A request ended with `committed`, of which the first `prompt_len`
    /// tokens were its prompt.
    fn finish(&mut self, _committed: &[Token], _prompt_len: usize) {}
    /// Forgets what earlier requests taught the drafter about text (a
    /// memory of outputs, recycled successors).
    fn forget_outputs(&mut self) {}
    /// The memory of earlier outputs this drafter drafts from, if any.
    fn memory(&self) -> Option<&OutputMemory> {
        None
    }
    /// The memory of earlier outputs, mutably (to replace it).
    fn memory_mut(&mut self) -> Option<&mut OutputMemory> {
        None
    }
    /// The vocabulary this drafter's tokens come from, when it runs a model
    /// (a trimmed drafter's is its source drafter's): checked against the
    /// target's before any draft. None for drafters that run no model.
    fn vocabulary(&self) -> Option<&Arc<Model>> {
        None
    }
}
