//! A llama.cpp context: one KV cache, one sequence, positions tracked here.
//! A draft tree is verified in one batch with a sequence per leaf
//! ([`Context::decode_tree`]); afterwards sequence 0 holds the kept path
//! again ([`Context::keep_path`]).

use std::ptr::NonNull;
use std::sync::Arc;

use llama_cpp_sys_2 as sys;

use super::backend::thread_pools;
use super::context_params::{ContextParams, FlashAttention};
use super::model::CONTEXT_CREATION;
use super::reading::{PromptProgress, Reading, StopCheck};
use super::rpc::{RemotePass, RpcError};
use super::{backend, EngineError, LogitsKept, Model, RowDraws, Token};

/// Most leaves of a tree [`Context::decode_tree`] takes: the sequences a
/// context holds at once in its (unified) KV cache.
pub const MAX_TREE_LEAVES: usize = 4;

/// The sequence holding cells of rejected tree nodes that lie before kept
/// ones in the cache: left free, later tokens would fill them out of
/// position order, and attention (flash attention accumulates in half
/// precision) would sum the cache in another order than plain decoding,
/// changing logits in the third decimal. Kept out of sequence 0's way
/// until the cache is cut back before them.
const DEAD_SEQ: i32 = MAX_TREE_LEAVES as i32;

/// A decoded tree awaiting [`Context::keep_path`].
#[derive(Debug, Clone, Copy)]
struct PendingTree {
    /// Where the tree's root went.
    base: usize,
    /// Sequences used (0 and the leaves' own, 1..leaves).
    leaves: usize,
}

/// Which positions of a decoded span get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// None (catching up the cache only).
    None,
    /// The last position only (prompt, plain decoding).
    Last,
    /// Every position (verifying a draft).
    All,
}

/// A context on a model, sequence 0 only.
pub struct Context {
    raw: NonNull<sys::llama_context>,
    /// Persistent CPU thread pools (decode, batch); without them ggml builds
    /// a throwaway pool for every graph computation.
    pools: [Option<NonNull<sys::ggml_threadpool>>; 2],
    batch: sys::llama_batch,
    /// Embedding-input batch, allocated on first use.
    embd_batch: Option<sys::llama_batch>,
    batch_capacity: usize,
    /// Outputs requested by the last decode, in batch order.
    n_outputs: usize,
    /// Entries in the last decoded batch.
    last_batch_len: usize,
    n_past: usize,
    n_ctx: u32,
    /// A verified tree's extra sequences, until a path is kept.
    tree: Option<PendingTree>,
    /// One sequence of each tree node (a sequence through it), by node.
    node_seq: Vec<i32>,
    /// Each tree node's position.
    node_pos: Vec<i32>,
    /// Cells held in [`DEAD_SEQ`].
    dead: usize,
    /// The earliest position a dead cell follows: cutting the sequence back
    /// to it frees them in order.
    dead_from: usize,
    /// Pads a lone position to two ([`ContextParams::pad_single`]).
    pad_single: bool,
    /// Token ids accepted as input.
    n_vocab: usize,
    /// Width of a logits row (K for a trimmed drafter).
    n_logits: usize,
    /// Whether a prompt is being read and whether to stop it (shared with
    /// llama.cpp's abort callback).
    reading: Arc<Reading>,
    /// Told how far a prompt read of several batches has got.
    progress: Option<PromptProgress>,
    /// How much of each logits row the caller reads ([`Self::set_logits_kept`]).
    logits_kept: Option<LogitsKept>,
    /// How the next pass with outputs is drawn on a remote target's
    /// server ([`Self::draw_next_pass`]).
    next_draws: Option<RowDraws>,
    /// The tokens the server drew from the last pass's rows, one per
    /// output row (empty when it drew none).
    drawn: Vec<Token>,
    /// What it was made with (to make it again on another model).
    params: ContextParams,
    model: Arc<Model>,
}

// SAFETY: a llama_context is not tied to a thread; Context is not Sync, so
// only one thread uses it at a time.
unsafe impl Send for Context {}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("n_past", &self.n_past)
            .field("n_ctx", &self.n_ctx)
            .finish()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: batch came from llama_batch_init and raw from
        // llama_init_from_model; each is freed once. The model outlives the
        // context because self holds an Arc to it. The pools are freed after
        // the context that used them.
        unsafe {
            sys::llama_batch_free(self.batch);
            if let Some(b) = self.embd_batch {
                sys::llama_batch_free(b);
            }
            sys::llama_free(self.raw.as_ptr());
            if let Some(pools) = thread_pools() {
                for pool in self.pools.iter().flatten() {
                    (pools.free)(pool.as_ptr());
                }
            }
        }
    }
}

impl Context {
    /// Creates a context on `model`.
    pub fn new(model: Arc<Model>, params: &ContextParams) -> Result<Self, EngineError> {
        Self::with_reading(model, params, Arc::new(Reading::default()))
    }

    /// Moves this context to `model` (a remote model's local fallback):
    /// a fresh context with the same settings, stop check and progress,
    /// its cache empty.
    pub(super) fn move_to(&mut self, model: Arc<Model>) -> Result<(), EngineError> {
        let mut moved = Self::with_reading(model, &self.params, self.reading.clone())?;
        moved.progress = self.progress.take();
        moved.logits_kept = self.logits_kept;
        *self = moved;
        Ok(())
    }

    fn with_reading(
        model: Arc<Model>,
        params: &ContextParams,
        reading: Arc<Reading>,
    ) -> Result<Self, EngineError> {
        params.validate()?;
        let head = model.head_size();
        for (name, cache) in [("type_k", params.type_k), ("type_v", params.type_v)] {
            if head % cache.block() != 0 {
                return Err(EngineError::InvalidParam {
                    name,
                    value: cache.name().to_owned(),
                    reason: "this model's attention heads are not whole cache blocks of 32",
                });
            }
        }
        backend()?;
        // SAFETY: returns a plain struct of defaults.
        let mut raw_params = unsafe { sys::llama_context_default_params() };
        // A pad may sit one past the caller's window.
        raw_params.n_ctx = params.n_ctx + u32::from(params.pad_single);
        raw_params.n_batch = params.n_batch.min(raw_params.n_ctx);
        raw_params.n_ubatch = raw_params.n_batch;
        // A sequence per leaf of a draft tree, all in one KV buffer (the
        // tree's nodes share the committed prefix's cells).
        raw_params.n_seq_max = MAX_TREE_LEAVES as u32 + 1;
        raw_params.kv_unified = true;
        raw_params.n_threads = params.n_threads;
        raw_params.n_threads_batch = params.n_threads_batch;
        raw_params.flash_attn_type = match params.flash_attn {
            FlashAttention::Auto => sys::LLAMA_FLASH_ATTN_TYPE_AUTO,
            FlashAttention::On => sys::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Off => sys::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        raw_params.type_k = params.type_k.ggml();
        raw_params.type_v = params.type_v.ggml();
        raw_params.no_perf = false;
        let raw = {
            let _guard = CONTEXT_CREATION.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: the model is live (we hold an Arc); params are initialised.
            unsafe { sys::llama_init_from_model(model.raw(), raw_params) }
        };
        if let Err(e) = model.remote_fault() {
            if let Some(raw) = NonNull::new(raw) {
                // SAFETY: raw is live and owned by nobody else yet.
                unsafe { sys::llama_free(raw.as_ptr()) };
            }
            return Err(e);
        }
        let raw = NonNull::new(raw).ok_or(EngineError::ContextCreateFailed {
            n_ctx: params.n_ctx,
            n_batch: params.n_batch,
        })?;
        let new_pool = |n_threads: i32| {
            let pools = thread_pools()?;
            // SAFETY: plain struct of defaults for n_threads; ggml_threadpool_new
            // copies what it needs from it and returns null on failure.
            unsafe {
                let mut tp = sys::ggml_threadpool_params_default(n_threads);
                NonNull::new((pools.new)(&mut tp))
            }
        };
        let decode_pool = new_pool(params.n_threads);
        let batch_pool = if params.n_threads_batch == params.n_threads {
            None
        } else {
            new_pool(params.n_threads_batch)
        };
        if let Some(pool) = decode_pool {
            let batch = batch_pool.unwrap_or(pool);
            // SAFETY: raw is live; the pools outlive it (freed after it in Drop).
            unsafe { sys::llama_attach_threadpool(raw.as_ptr(), pool.as_ptr(), batch.as_ptr()) };
        }
        // llama.cpp may pad the window upwards; the caller's size is the limit.
        // SAFETY: raw is live.
        let n_ctx = unsafe { sys::llama_n_ctx(raw.as_ptr()) }.min(params.n_ctx);
        // SAFETY: raw is live.
        let n_batch = unsafe { sys::llama_n_batch(raw.as_ptr()) } as usize;
        // SAFETY: allocates a token batch of n_batch entries, each with room
        // for the ids of every sequence.
        let batch = unsafe { sys::llama_batch_init(n_batch as i32, 0, MAX_TREE_LEAVES as i32) };
        let n_vocab = model.n_vocab().max(0) as usize;
        let n_logits = model.n_logits();
        // SAFETY: raw is live; the callback's data is the Reading the
        // context holds (an Arc, never moved out) until after llama_free.
        unsafe {
            sys::llama_set_abort_callback(
                raw.as_ptr(),
                Some(Reading::abort_callback),
                Arc::as_ptr(&reading).cast_mut().cast(),
            );
        }
        Ok(Self {
            raw,
            pools: [decode_pool, batch_pool],
            batch,
            embd_batch: None,
            batch_capacity: n_batch,
            n_outputs: 0,
            last_batch_len: 0,
            n_past: 0,
            n_ctx,
            tree: None,
            node_seq: Vec::new(),
            node_pos: Vec::new(),
            dead: 0,
            dead_from: usize::MAX,
            pad_single: params.pad_single,
            n_vocab,
            n_logits,
            reading,
            progress: None,
            logits_kept: None,
            next_draws: None,
            drawn: Vec::new(),
            params: params.clone(),
            model,
        })
    }

    /// What stops a prompt read from outside (Ctrl-C, a client that left):
    /// while [`Self::set_reading`] is on, a pass stops between its graph's
    /// operations once `stop` returns true, with
    /// [`EngineError::Interrupted`] and the cache as before the call.
    pub fn set_stop_check(&mut self, stop: Option<StopCheck>) {
        self.reading.set_stop(stop);
    }

    /// Where a prompt read of several batches reports how far it has got
    /// (tokens read so far and in all: before its first batch and after
    /// each).
    pub fn set_prompt_progress(&mut self, progress: Option<PromptProgress>) {
        self.progress = progress;
    }

    /// Marks the decodes that follow as a prompt read (true) or as
    /// generation (false): only a prompt read is stopped by the stop check
    /// and reports progress. Returns the mark as it was, to restore.
    pub fn set_reading(&mut self, reading: bool) -> bool {
        self.reading.arm(reading)
    }

    /// Says how much of each logits row the caller reads from now on
    /// ([`LogitsKept`]), or (None) whole rows. A remote target whose server
    /// is an edgespec `rpc-server` then sends only those entries, and every
    /// other entry of a row reads as −∞; local models always keep whole
    /// rows. Returns the setting as it was, to restore.
    pub fn set_logits_kept(&mut self, kept: Option<LogitsKept>) -> Option<LogitsKept> {
        std::mem::replace(&mut self.logits_kept, kept)
    }

    /// Has a remote target's server that is an edgespec front draw a
    /// token from each logits row of the next pass that outputs any
    /// ([`RowDraws`]: the rows in batch order, one uniform number each),
    /// and send only `draws.top` of each row's largest entries besides
    /// (every other entry reads as −∞). Afterwards [`Self::drawn`] gives
    /// the tokens. A local model, or a server that cannot draw, gives
    /// rows as [`Self::set_logits_kept`] says and no tokens. None cancels
    /// draws not yet made. Returns the draws not yet made.
    pub fn draw_next_pass(&mut self, draws: Option<RowDraws>) -> Option<RowDraws> {
        std::mem::replace(&mut self.next_draws, draws)
    }

    /// Output rows of the last decode (0 after a rollback).
    pub fn outputs(&self) -> usize {
        self.n_outputs
    }

    /// The token the server drew from output row `index` of the last pass
    /// ([`Self::draw_next_pass`]), if it drew one.
    pub fn drawn(&self, index: usize) -> Option<Token> {
        self.drawn
            .get(index)
            .copied()
            .filter(|_| index < self.n_outputs)
    }

    /// Keeps the tokens a server drew from the `outputs` rows of the pass
    /// just made: all of them, or none when it drew none.
    fn keep_drawn(&mut self, drawn: Vec<Token>, outputs: usize) -> Result<(), EngineError> {
        if !drawn.is_empty() && drawn.len() != outputs {
            return Err(RpcError::Lost {
                reason: format!(
                    "the server drew {} tokens from a pass of {outputs} logits rows",
                    drawn.len()
                ),
            }
            .into());
        }
        self.drawn = drawn;
        Ok(())
    }

    /// Whether a lone position is padded to a batch of two
    /// ([`ContextParams::pad_single`]).
    pub fn pads_single(&self) -> bool {
        self.pad_single
    }

    /// The model this context runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Context window in tokens.
    pub fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    /// Tokens currently in the KV cache (the next token's position).
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Appends `tokens` at the current position, in chunks of the batch size.
    /// Logits are kept for the positions `logits` selects within `tokens`.
    pub fn decode(&mut self, tokens: &[Token], logits: Logits) -> Result<(), EngineError> {
        let n_vocab = self.n_vocab as i32;
        if let Some(&token) = tokens.iter().find(|&&t| !(0..n_vocab).contains(&t)) {
            return Err(EngineError::TokenOutOfRange { token, n_vocab });
        }
        let needed = self.n_past + tokens.len();
        if needed > self.n_ctx as usize {
            return Err(EngineError::ContextFull {
                needed,
                n_ctx: self.n_ctx,
            });
        }
        if logits == Logits::All && tokens.len() > self.batch_capacity {
            return Err(EngineError::InvalidParam {
                name: "tokens",
                value: tokens.len().to_string(),
                reason: "more tokens with logits than one batch holds",
            });
        }
        let n_chunks = tokens.len().div_ceil(self.batch_capacity);
        let start = self.n_past;
        let reading = self.reading.armed();
        let progress = |ctx: &mut Self| {
            if let Some(progress) = ctx.progress.as_mut().filter(|_| reading && n_chunks > 1) {
                progress(ctx.n_past - start, tokens.len());
            }
        };
        progress(self);
        for (index, chunk) in tokens.chunks(self.batch_capacity).enumerate() {
            for (i, &token) in chunk.iter().enumerate() {
                // SAFETY: i < chunk.len() <= batch_capacity, the size the
                // token array was allocated with.
                unsafe { *self.batch.token.add(i) = token };
            }
            let batch = self.batch;
            let run = if reading && self.reading.stop_requested() {
                Err(EngineError::Interrupted)
            } else {
                self.run_batch(batch, chunk.len(), logits, index + 1 == n_chunks)
            };
            if let Err(e) = run {
                // The caller's view: none of `tokens` was decoded.
                if self.n_past > start {
                    let _ = self.truncate(start);
                }
                return Err(e);
            }
            progress(self);
        }
        Ok(())
    }

    /// Appends positions given as input embeddings (`n_embd` floats each,
    /// row after row) instead of token ids: the input side of a drafter
    /// whose token-embedding table was trimmed.
    pub fn decode_embeddings(
        &mut self,
        embeddings: &[f32],
        logits: Logits,
    ) -> Result<(), EngineError> {
        let n_embd = self.model.n_embd().max(1) as usize;
        if embeddings.is_empty() || embeddings.len() % n_embd != 0 {
            return Err(EngineError::InvalidParam {
                name: "embeddings",
                value: embeddings.len().to_string(),
                reason: "must be a non-empty whole number of n_embd rows",
            });
        }
        let n = embeddings.len() / n_embd;
        let needed = self.n_past + n;
        if needed > self.n_ctx as usize {
            return Err(EngineError::ContextFull {
                needed,
                n_ctx: self.n_ctx,
            });
        }
        if logits == Logits::All && n > self.batch_capacity {
            return Err(EngineError::InvalidParam {
                name: "embeddings",
                value: n.to_string(),
                reason: "more positions with logits than one batch holds",
            });
        }
        let batch = match self.embd_batch {
            Some(b) => b,
            None => {
                // SAFETY: allocates an embedding batch of batch_capacity rows.
                let b =
                    unsafe { sys::llama_batch_init(self.batch_capacity as i32, n_embd as i32, 1) };
                self.embd_batch = Some(b);
                b
            }
        };
        let rows_per_chunk = self.batch_capacity;
        let n_chunks = n.div_ceil(rows_per_chunk);
        let start = self.n_past;
        for (index, chunk) in embeddings.chunks(rows_per_chunk * n_embd).enumerate() {
            // SAFETY: chunk holds at most batch_capacity rows of n_embd
            // floats, the size the embd array was allocated with.
            unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), batch.embd, chunk.len()) };
            if let Err(e) =
                self.run_batch(batch, chunk.len() / n_embd, logits, index + 1 == n_chunks)
            {
                // The caller's view, as for `decode`: none of it was decoded.
                if self.n_past > start {
                    let _ = self.truncate(start);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Fills positions, sequence ids and output flags of the first `n`
    /// entries of `batch` (whose inputs are already written) and decodes it.
    fn run_batch(
        &mut self,
        mut batch: sys::llama_batch,
        n: usize,
        logits: Logits,
        last_chunk: bool,
    ) -> Result<(), EngineError> {
        if self.tree.is_some() {
            return Err(EngineError::InvalidParam {
                name: "tree",
                value: n.to_string(),
                reason: "a decoded tree awaits keep_path",
            });
        }
        self.make_room(n);
        self.n_outputs = 0;
        let mut outputs = 0;
        for i in 0..n {
            let wants = match logits {
                Logits::None => false,
                Logits::All => true,
                Logits::Last => last_chunk && i + 1 == n,
            };
            self.n_outputs += usize::from(wants);
            outputs += usize::from(wants);
            // SAFETY: i < n <= batch_capacity, the size the arrays were
            // allocated with; seq_id[i] points to room for one id.
            unsafe {
                *batch.pos.add(i) = (self.n_past + i) as i32;
                *batch.n_seq_id.add(i) = 1;
                *(*batch.seq_id.add(i)) = 0;
                *batch.logits.add(i) = i8::from(wants);
            }
        }
        let pad = self.pad_single && n == 1;
        if pad {
            // SAFETY: a padding context's batches hold at least two entries
            // (n_batch >= 2, checked); entry 0 is initialised above, and an
            // embedding batch's rows are n_embd floats each.
            unsafe { self.pad_lone_position(&mut batch) };
        }
        batch.n_tokens = (n + usize::from(pad)) as i32;
        self.last_batch_len = n;
        self.drawn.clear();
        let draws = if outputs > 0 {
            self.next_draws.take()
        } else {
            None
        };
        let pass = self.model.remote().map(|r| r.pass(self.logits_kept, draws));
        // SAFETY: raw is live; the batch holds n (padded: n + 1)
        // initialised entries.
        let code = unsafe { sys::llama_decode(self.raw.as_ptr(), batch) };
        let stopped = self.reading.take_stopped();
        // Wait for the pass to finish here, not where logits are first
        // read: a backend may compute asynchronously (ggml RPC does), and
        // the pass's time and any failure of it belong to this call. An
        // RPC server computes a pass that returns nothing without a reply
        // to wait for: a round trip waits for it.
        // SAFETY: raw is live.
        unsafe { sys::llama_synchronize(self.raw.as_ptr()) };
        if outputs == 0 {
            self.model.wait_for_remote();
        }
        let drawn = pass.as_ref().map_or_else(Vec::new, RemotePass::take_drawn);
        drop(pass);
        if let Err(e) = self
            .model
            .remote_fault()
            .and_then(|()| self.keep_drawn(drawn, outputs))
        {
            let _ = self.truncate(self.n_past);
            return Err(e);
        }
        if code != 0 {
            // Drop whatever a failed call left past our position.
            let _ = self.truncate(self.n_past);
            // 2: ggml stopped the pass at the abort callback's word.
            return Err(if code == 2 && stopped {
                EngineError::Interrupted
            } else {
                EngineError::DecodeFailed { code }
            });
        }
        if pad {
            // SAFETY: raw is live; the memory handle lives as long as the
            // context. Drops the pad's cell, one past the real position (a
            // failed pass above dropped it with the rest).
            unsafe {
                let mem = sys::llama_get_memory(self.raw.as_ptr());
                sys::llama_memory_seq_rm(mem, 0, (self.n_past + 1) as i32, -1);
            }
        }
        self.n_past += n;
        Ok(())
    }

    /// Writes entry 1 of `batch` as a copy of entry 0 one position later,
    /// in sequence 0, without logits: the pad that makes a lone position
    /// a batch of two ([`ContextParams::pad_single`]).
    ///
    /// # Safety
    /// `batch` holds at least two entries, entry 0 is initialised, and an
    /// embedding batch's rows are `n_embd` floats.
    unsafe fn pad_lone_position(&self, batch: &mut sys::llama_batch) {
        // SAFETY: the caller's contract: room for entry 1, entry 0 written.
        unsafe {
            if batch.embd.is_null() {
                *batch.token.add(1) = *batch.token;
            } else {
                let n_embd = self.model.n_embd().max(1) as usize;
                std::ptr::copy_nonoverlapping(batch.embd, batch.embd.add(n_embd), n_embd);
            }
            *batch.pos.add(1) = *batch.pos + 1;
            *batch.n_seq_id.add(1) = 1;
            *(*batch.seq_id.add(1)) = 0;
            *batch.logits.add(1) = 0;
        }
    }

    /// Decodes a draft tree in one batch, every position with logits: `root`
    /// (the committed text's last token) at the current position, then
    /// `nodes`, node i after `parents[i]` (0: the root, j + 1: node j;
    /// parents before children), at one past its parent's position. Each
    /// leaf's path is a sequence of its own in the cache, sharing the
    /// prefix's cells, so a node attends to the prefix and its ancestors
    /// only. Output row 0 is the root's, row i + 1 node i's. The root
    /// counts as decoded ([`Self::n_past`]); until [`Self::keep_path`] the
    /// cache also holds the rest of the tree and nothing else may be
    /// decoded ([`Self::truncate`] drops the tree too).
    pub fn decode_tree(
        &mut self,
        root: Token,
        nodes: &[Token],
        parents: &[usize],
    ) -> Result<(), EngineError> {
        let n_vocab = self.n_vocab as i32;
        let invalid = |value: usize, reason| {
            Err(EngineError::InvalidParam {
                name: "tree",
                value: value.to_string(),
                reason,
            })
        };
        if let Some(&token) = std::iter::once(&root)
            .chain(nodes)
            .find(|&&t| !(0..n_vocab).contains(&t))
        {
            return Err(EngineError::TokenOutOfRange { token, n_vocab });
        }
        if parents.len() != nodes.len() || parents.iter().enumerate().any(|(i, &p)| p > i) {
            return invalid(parents.len(), "every node needs a parent listed before it");
        }
        let n = nodes.len() + 1;
        if self.pad_single && n == 1 {
            return invalid(n, "a padding context verifies trees of at least one node");
        }
        if n > self.batch_capacity {
            return invalid(n, "more tree nodes than one batch holds");
        }
        let needed = self.n_past + n;
        if needed > self.n_ctx as usize {
            return Err(EngineError::ContextFull {
                needed,
                n_ctx: self.n_ctx,
            });
        }
        self.make_room(n);
        // SAFETY: the model pointer is live (held by an Arc).
        let recurrent = unsafe {
            sys::llama_model_is_recurrent(self.model.raw())
                || sys::llama_model_is_hybrid(self.model.raw())
        };
        if recurrent {
            return invalid(n, "a recurrent model's state cannot branch");
        }
        // Sequences: each leaf its own (the first leaf sequence 0), each
        // node in those of the leaves below it, the root in all.
        let mut masks = vec![0u32; n];
        let mut leaves = 0;
        for (row, mask) in masks.iter_mut().enumerate().skip(1) {
            if !parents.contains(&row) {
                if leaves == MAX_TREE_LEAVES {
                    return invalid(leaves + 1, "more leaves than a context's sequences");
                }
                *mask = 1 << leaves;
                leaves += 1;
            }
        }
        for i in (1..n).rev() {
            masks[parents[i - 1]] |= masks[i];
        }
        let leaves = leaves.max(1);
        masks[0] = (1 << leaves) - 1;
        let mut depth = vec![0usize; n];
        for (i, &p) in parents.iter().enumerate() {
            depth[i + 1] = depth[p] + 1;
        }
        // SAFETY: raw is live; the memory handle lives as long as the
        // context; sequence ids are below n_seq_max.
        unsafe {
            let mem = sys::llama_get_memory(self.raw.as_ptr());
            for s in 1..leaves as i32 {
                sys::llama_memory_seq_rm(mem, s, -1, -1);
                sys::llama_memory_seq_cp(mem, 0, s, -1, -1);
            }
        }
        self.node_seq.clear();
        self.node_pos.clear();
        let mut batch = self.batch;
        for (i, &mask) in masks.iter().enumerate() {
            let mut ids = 0;
            for s in 0..leaves {
                if mask & (1 << s) != 0 {
                    // SAFETY: i < n <= batch_capacity and ids < leaves <=
                    // MAX_TREE_LEAVES, the sizes the batch was allocated with.
                    unsafe { *(*batch.seq_id.add(i)).add(ids) = s as i32 };
                    ids += 1;
                }
            }
            self.node_seq.push(mask.trailing_zeros() as i32);
            self.node_pos.push((self.n_past + depth[i]) as i32);
            let token = if i == 0 { root } else { nodes[i - 1] };
            // SAFETY: i < n <= batch_capacity, the size the arrays were
            // allocated with.
            unsafe {
                *batch.token.add(i) = token;
                *batch.pos.add(i) = (self.n_past + depth[i]) as i32;
                *batch.n_seq_id.add(i) = ids as i32;
                *batch.logits.add(i) = 1;
            }
        }
        self.node_seq.remove(0);
        self.node_pos.remove(0);
        batch.n_tokens = n as i32;
        self.n_outputs = n;
        self.last_batch_len = n;
        self.tree = Some(PendingTree {
            base: self.n_past,
            leaves,
        });
        self.drawn.clear();
        let draws = self.next_draws.take();
        let pass = self.model.remote().map(|r| r.pass(self.logits_kept, draws));
        // SAFETY: raw is live; the batch holds n initialised entries.
        let code = unsafe { sys::llama_decode(self.raw.as_ptr(), batch) };
        // Wait for the pass to finish here, not where logits are first
        // read: a backend may compute asynchronously (ggml RPC does), and
        // the pass's time and any failure of it belong to this call.
        // SAFETY: raw is live.
        unsafe { sys::llama_synchronize(self.raw.as_ptr()) };
        let drawn = pass.as_ref().map_or_else(Vec::new, RemotePass::take_drawn);
        drop(pass);
        if let Err(e) = self
            .model
            .remote_fault()
            .and_then(|()| self.keep_drawn(drawn, n))
        {
            let _ = self.truncate(self.n_past);
            return Err(e);
        }
        if code != 0 {
            let _ = self.truncate(self.n_past);
            return Err(EngineError::DecodeFailed { code });
        }
        // The root is in every sequence: committed whatever is kept.
        self.n_past += 1;
        Ok(())
    }

    /// After [`Self::decode_tree`]: keeps the root and the nodes of `path`
    /// (each a child of the one before, the first a child of the root) as
    /// the sequence, drops the rest of the tree.
    pub fn keep_path(&mut self, path: &[usize]) -> Result<(), EngineError> {
        let Some(tree) = self.tree else {
            return Err(EngineError::RollbackFailed { pos: self.n_past });
        };
        let first = tree.base as i32 + 1;
        let end = first + path.len() as i32;
        let seq = path.last().map_or(0, |&node| self.node_seq[node]);
        let last = path.last().map_or(0, |&node| node + 1);
        // SAFETY: raw is live; the memory handle lives as long as the
        // context; sequence ids are below n_seq_max.
        unsafe {
            let mem = sys::llama_get_memory(self.raw.as_ptr());
            // Rejected nodes decoded before the last kept one (cells in
            // batch order) stay taken.
            for node in (0..last).filter(|n| !path.contains(n)) {
                let pos = self.node_pos[node];
                sys::llama_memory_seq_cp(mem, self.node_seq[node], DEAD_SEQ, pos, pos + 1);
                self.dead += 1;
                self.dead_from = self.dead_from.min(first as usize);
            }
            if seq == 0 {
                sys::llama_memory_seq_rm(mem, 0, end, -1);
            } else {
                sys::llama_memory_seq_rm(mem, 0, first, -1);
                sys::llama_memory_seq_cp(mem, seq, 0, first, end);
            }
            for s in 1..tree.leaves as i32 {
                sys::llama_memory_seq_rm(mem, s, -1, -1);
            }
        }
        self.tree = None;
        self.n_past = end as usize;
        self.n_outputs = 0;
        Ok(())
    }

    /// Frees the dead cells.
    fn free_dead(&mut self) {
        if self.dead > 0 {
            // SAFETY: raw is live; DEAD_SEQ is below n_seq_max.
            unsafe {
                sys::llama_memory_seq_rm(sys::llama_get_memory(self.raw.as_ptr()), DEAD_SEQ, -1, -1)
            };
        }
        self.dead = 0;
        self.dead_from = usize::MAX;
    }

    /// Makes room for `n` more cells: dead ones are given up when the
    /// cache would otherwise run out (near a full context only: later
    /// tokens may then fill them out of order).
    fn make_room(&mut self, n: usize) {
        if self.n_past + self.dead + n > self.n_ctx as usize {
            self.free_dead();
        }
    }

    /// Logits of the last position the last decode computed outputs for.
    pub fn last_logits(&self) -> Result<&[f32], EngineError> {
        self.logits(self.n_outputs.saturating_sub(1))
    }

    /// Logits of the `index`-th output of the last decode (outputs counted in
    /// batch order: with [`Logits::Last`] the only one is 0). Read in place.
    pub fn logits(&self, index: usize) -> Result<&[f32], EngineError> {
        if index >= self.n_outputs {
            return Err(EngineError::NoLogits { index });
        }
        // With Logits::All the outputs are the batch positions; with
        // Logits::Last the single output is the batch's last position.
        let batch_pos = if self.n_outputs == self.last_batch_len {
            index as i32
        } else {
            self.last_batch_len as i32 - 1
        };
        // SAFETY: raw is live and the position requested logits in the last
        // decode; a null return is handled.
        let ptr = unsafe { sys::llama_get_logits_ith(self.raw.as_ptr(), batch_pos) };
        if ptr.is_null() {
            return Err(EngineError::NoLogits { index });
        }
        // SAFETY: llama.cpp keeps n_logits floats per output row until the
        // next decode, which needs &mut self and so cannot overlap this borrow.
        Ok(unsafe { std::slice::from_raw_parts(ptr, self.n_logits) })
    }

    /// Rolls the KV cache back so that it holds the first `pos` tokens.
    pub fn truncate(&mut self, pos: usize) -> Result<(), EngineError> {
        if pos > self.n_past {
            return Err(EngineError::RollbackFailed { pos });
        }
        // SAFETY: raw is live; the memory handle lives as long as the
        // context; a pending tree's sequences are below n_seq_max.
        let ok = unsafe {
            let mem = sys::llama_get_memory(self.raw.as_ptr());
            for s in 1..self.tree.take().map_or(0, |t| t.leaves as i32) {
                sys::llama_memory_seq_rm(mem, s, -1, -1);
            }
            sys::llama_memory_seq_rm(mem, 0, pos as i32, -1)
        };
        if pos <= self.dead_from {
            self.free_dead();
        }
        if !ok {
            return Err(EngineError::RollbackFailed { pos });
        }
        self.n_past = pos;
        self.n_outputs = 0;
        Ok(())
    }

    /// The KV cache's contents (sequence 0) as llama.cpp serialises them:
    /// its own format, which only a build of the same llama.cpp reads back.
    pub fn save_state(&self) -> Result<Vec<u8>, EngineError> {
        // SAFETY: raw is live.
        let size = unsafe { sys::llama_state_seq_get_size(self.raw.as_ptr(), 0) };
        let mut state = vec![0u8; size];
        // SAFETY: state holds `size` writable bytes, the size llama.cpp
        // asked for; it writes at most that many (0 on failure).
        let written = unsafe {
            sys::llama_state_seq_get_data(self.raw.as_ptr(), state.as_mut_ptr(), size, 0)
        };
        if written == 0 || written > size {
            return Err(EngineError::StateSave);
        }
        state.truncate(written);
        check_state(&state, self.n_past)?;
        Ok(state)
    }

    /// Replaces the KV cache's contents with `state`, saved by
    /// [`Self::save_state`] from a context of the same model holding
    /// `n_tokens` positions. What llama.cpp refuses, or a state that does
    /// not hold exactly those positions, leaves the cache empty and is an
    /// error.
    pub fn restore_state(&mut self, state: &[u8], n_tokens: usize) -> Result<(), EngineError> {
        if n_tokens > self.n_ctx as usize {
            return Err(EngineError::ContextFull {
                needed: n_tokens,
                n_ctx: self.n_ctx,
            });
        }
        check_state(state, n_tokens)?;
        self.clear();
        // SAFETY: raw is live; state is readable for its length. llama.cpp
        // reports a state it cannot read by returning 0 (it catches its
        // own exceptions).
        let read = unsafe {
            sys::llama_state_seq_set_data(self.raw.as_ptr(), state.as_ptr(), state.len(), 0)
        };
        // SAFETY: raw is live; the memory handle lives as long as the context.
        let (first, last) = unsafe {
            let mem = sys::llama_get_memory(self.raw.as_ptr());
            (
                sys::llama_memory_seq_pos_min(mem, 0),
                sys::llama_memory_seq_pos_max(mem, 0),
            )
        };
        let expected = if n_tokens == 0 {
            (-1, -1)
        } else {
            (0, n_tokens as i32 - 1)
        };
        if read == 0 || (first, last) != expected {
            self.clear();
            return Err(EngineError::StateRestore { n_tokens });
        }
        self.n_past = n_tokens;
        self.n_outputs = 0;
        Ok(())
    }

    /// llama.cpp's own counters since the last reset: (ms spent in
    /// single-sequence decode calls after the prompt, number of such calls).
    /// The same numbers llama.cpp's tools print as "eval time".
    pub fn llama_eval_time(&self) -> (f64, i32) {
        // SAFETY: raw is live; returns a plain struct.
        let data = unsafe { sys::llama_perf_context(self.raw.as_ptr()) };
        (data.t_eval_ms, data.n_eval)
    }

    /// Resets llama.cpp's performance counters.
    pub fn reset_llama_counters(&mut self) {
        // SAFETY: raw is live.
        unsafe { sys::llama_perf_context_reset(self.raw.as_ptr()) }
    }

    /// Empties the KV cache for a new prompt.
    pub fn clear(&mut self) {
        // SAFETY: raw is live; clearing data as well as metadata.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.raw.as_ptr()), true) };
        self.tree = None;
        self.dead = 0;
        self.dead_from = usize::MAX;
        self.n_past = 0;
        self.n_outputs = 0;
    }
}

/// Checks what edgespec can of a saved sequence state before llama.cpp
/// reads it: llama.cpp's magic, one stream, and a first cache holding
/// `n_tokens` cells (a sliding-window model's second cache holds fewer).
fn check_state(state: &[u8], n_tokens: usize) -> Result<(), EngineError> {
    const MAGIC: u32 = 0xaf14_3cd8;
    let word = |i: usize| {
        state
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    // magic, sequence id, streams, cells of the first stream
    match (word(0), word(2), word(3)) {
        (Some(MAGIC), Some(1), Some(cells)) if cells as usize == n_tokens => Ok(()),
        _ => Err(EngineError::StateRestore { n_tokens }),
    }
}
