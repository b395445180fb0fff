//! A context that knows which tokens its KV cache holds, so every model
//! that follows a shared token sequence (a drafter, EAD's two models) rolls
//! back to the common prefix and catches up in one batch the same way.

use super::{Context, EngineError, Logits, Token};

/// A context and the tokens in its KV cache, in order.
pub struct Sequence {
    ctx: Context,
    tokens: Vec<Token>,
    /// How many of [`Self::tokens`] each pass read, in order: what a cache
    /// moved to another model reads again in the same batches when its
    /// positions depend on them (see [`Self::fall_back`]).
    batches: Vec<usize>,
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
            batches: Vec::new(),
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
        self.batches.clear();
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
            // The batches add up to the tokens: cut as many from their end.
            let mut excess = self.tokens.len() - len;
            self.tokens.truncate(len);
            while excess > 0 {
                let Some(last) = self.batches.last_mut() else {
                    break;
                };
                let cut = excess.min(*last);
                *last -= cut;
                excess -= cut;
                if *last == 0 {
                    self.batches.pop();
                }
            }
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
        if let Err(e) = self.ctx.decode(tokens, logits) {
            self.fall_back(e)?;
            self.ctx.decode(tokens, logits)?;
        }
        self.tokens.extend_from_slice(tokens);
        self.batches.push(tokens.len());
        Ok(())
    }

    /// After a pass failed with `error`: when it lost a remote model that
    /// has a local fallback, moves the cache there (the tokens it held read
    /// again) so the pass can be made again; else returns the error. An
    /// exact context (its positions' values depend on the size of the
    /// batch that read them, [`crate::engine::ContextParams::pad_single`])
    /// reads them again in batches of the sizes that first read them:
    /// each batch of 8 and more as it was, runs of smaller ones in batches
    /// of up to 7 (which ggml computes alike); any other in one batch.
    fn fall_back(&mut self, error: EngineError) -> Result<(), EngineError> {
        let EngineError::Remote(lost) = &error else {
            return Err(error);
        };
        let Some(local) = self.ctx.model().fallback() else {
            return Err(error);
        };
        log::warn!(
            "{lost}; carrying on here, reading the {} tokens so far again",
            self.tokens.len()
        );
        self.ctx.move_to(local?)?;
        let batches = if self.ctx.pads_single() {
            regrouped(&self.batches)
        } else {
            vec![self.tokens.len()]
        };
        let mut at = 0;
        for b in batches.into_iter().filter(|&b| b > 0) {
            if let Err(e) = self.ctx.decode(&self.tokens[at..at + b], Logits::None) {
                self.tokens.clear();
                self.batches.clear();
                self.ctx.clear();
                return Err(e);
            }
            at += b;
        }
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
        if let Err(e) = self.ctx.decode_tree(root, nodes, parents) {
            self.fall_back(e)?;
            self.ctx.decode_tree(root, nodes, parents)?;
        }
        self.tokens.push(root);
        self.batches.push(1);
        Ok(())
    }

    /// Keeps the tree's nodes `path` (whose tokens are `tokens`) and drops
    /// the rest ([`Context::keep_path`]).
    pub fn keep_path(&mut self, path: &[usize], tokens: &[Token]) -> Result<(), EngineError> {
        self.ctx.keep_path(path)?;
        self.tokens.extend_from_slice(tokens);
        self.batches.push(tokens.len());
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
        self.batches.push(tokens.len());
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
        self.batches.clear();
        self.ctx.restore_state(state, tokens.len())?;
        self.tokens.extend_from_slice(tokens);
        self.batches.push(tokens.len());
        Ok(())
    }
}

/// Batches of 8 and more as they are; runs of smaller ones merged into
/// batches of up to 7.
fn regrouped(batches: &[usize]) -> Vec<usize> {
    const SMALL: usize = 7;
    let mut out: Vec<usize> = Vec::new();
    let mut run = 0;
    for &b in batches {
        if b > SMALL {
            if run > 0 {
                out.push(run);
                run = 0;
            }
            out.push(b);
        } else if run + b > SMALL {
            out.push(run);
            run = b;
        } else {
            run += b;
        }
    }
    if run > 0 {
        out.push(run);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::regrouped;

    #[test]
    fn small_batches_merge_up_to_seven_and_large_ones_stay() {
        assert_eq!(regrouped(&[40, 1, 1, 3, 2, 5, 1, 9, 2]), [40, 7, 6, 9, 2]);
        assert_eq!(regrouped(&[7, 7, 1]), [7, 7, 1]);
        assert_eq!(regrouped(&[]), Vec::<usize>::new());
        assert_eq!(regrouped(&[8]), [8]);
    }
}
