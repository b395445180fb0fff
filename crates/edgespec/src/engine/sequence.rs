//! A context that knows which tokens its KV cache holds, so every model
//! that follows a shared token sequence (a drafter, EAD's two models) rolls
//! back to the common prefix and catches up in one batch the same way.

use super::{Context, EngineError, Logits, Token};

/// A context and the tokens in its KV cache, in order.
pub struct Sequence {
    ctx: Context,
    tokens: Vec<Token>,
}

impl Sequence {
    /// An empty sequence over `ctx` (a used cache is cleared; a fresh one
    /// is not touched, so no start-up pass over the whole KV buffer).
    pub fn new(mut ctx: Context) -> Self {
        if ctx.n_past() > 0 {
            ctx.clear();
        }
        Self {
            tokens: Vec::with_capacity(ctx.n_ctx() as usize),
            ctx,
        }
    }

    /// The context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The context, mutably, for passes that leave the cache as found
    /// (timing a batch and truncating it again).
    pub fn context_mut(&mut self) -> &mut Context {
        &mut self.ctx
    }

    /// The tokens in the cache.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Number of tokens in the cache.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.ctx.clear();
        self.tokens.clear();
    }

    /// Keeps only the longest prefix shared with `tokens`, and at most
    /// `limit` tokens of it.
    pub fn roll_back_to(&mut self, tokens: &[Token], limit: usize) -> Result<(), EngineError> {
        let common = self
            .tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(limit);
        self.truncate(common)
    }

    /// Keeps the first `len` tokens.
    pub fn truncate(&mut self, len: usize) -> Result<(), EngineError> {
        if len < self.tokens.len() {
            self.ctx.truncate(len)?;
            self.tokens.truncate(len);
        }
        Ok(())
    }

    /// Rolls back so that `tokens` can be caught up on with the logits of
    /// the position after them: to the shared prefix, and one further when
    /// every token is cached (their logits are gone). Returns where the
    /// catch-up starts.
    pub fn prepare_catch_up(&mut self, tokens: &[Token]) -> Result<usize, EngineError> {
        self.roll_back_to(tokens, tokens.len().saturating_sub(1))?;
        Ok(self.tokens.len())
    }

    /// Decodes `tokens` after the cache.
    pub fn decode(&mut self, tokens: &[Token], logits: Logits) -> Result<(), EngineError> {
        self.ctx.decode(tokens, logits)?;
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }

    /// Decodes a draft tree after the cache ([`Context::decode_tree`]); the
    /// sequence holds `root` and, once [`Self::keep_path`] says which, the
    /// kept nodes.
    pub fn decode_tree(
        &mut self,
        root: Token,
        nodes: &[Token],
        parents: &[usize],
    ) -> Result<(), EngineError> {
        self.ctx.decode_tree(root, nodes, parents)?;
        self.tokens.push(root);
        Ok(())
    }

    /// Keeps the tree's nodes `path` (whose tokens are `tokens`) and drops
    /// the rest ([`Context::keep_path`]).
    pub fn keep_path(&mut self, path: &[usize], tokens: &[Token]) -> Result<(), EngineError> {
        self.ctx.keep_path(path)?;
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }

    /// Decodes `tokens` given as input embeddings (`embeddings`: one row
    /// per token) after the cache.
    pub fn decode_embeddings(
        &mut self,
        tokens: &[Token],
        embeddings: &[f32],
        logits: Logits,
    ) -> Result<(), EngineError> {
        self.ctx.decode_embeddings(embeddings, logits)?;
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }

    /// llama.cpp's state of the cache (see [`Context::save_state`]); the
    /// tokens are [`Self::tokens`].
    pub fn save_state(&self) -> Result<Vec<u8>, EngineError> {
        self.ctx.save_state()
    }

    /// Restores a cache saved by [`Self::save_state`] from a sequence of
    /// the same model holding `tokens` (which are only ever compared with
    /// later prompts, never decoded). On an error the cache is empty.
    pub fn restore(&mut self, tokens: &[Token], state: &[u8]) -> Result<(), EngineError> {
        self.tokens.clear();
        self.ctx.restore_state(state, tokens.len())?;
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }
}
