//! A drafter model in its own llama.cpp context.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Draft, DraftControl, DraftSource, Drafter, TrimmedSource};
use crate::costs::{timed_tail, CostModel};
use crate::engine::{
    Context, ContextParams, EngineError, Logits, Model, ModelParams, Sequence, Token,
};
use crate::gguf::GgufFile;
use crate::sampling::{argmax, top_probability, History, Penalties, Sampler, SamplingParams};
use crate::vocabtrim::{TrimError, TrimInfo};

/// Drafter batch sizes a first prompt read times when the costs are
/// unknown: one token (a drafting step) and two (a round leaves the
/// drafter one or two tokens behind); longer backlogs are extrapolated
/// until rounds measure them.
pub const TIMED_CATCH_UP: [usize; 2] = [1, 2];

/// The model a drafter runs: a full-vocabulary model, or a VocabTrim
/// drafter with the source drafter it was trimmed from.
#[derive(Clone)]
pub enum DraftModel {
    /// A smaller model with the target's vocabulary.
    Full(Arc<Model>),
    /// A trimmed drafter (`edgespec trim`).
    Trimmed(Arc<TrimmedSource>),
}

impl DraftModel {
    /// Opens a drafter file: a trimmed one (VocabTrim metadata) with its
    /// source drafter (`source`, else the path stored in the file), any
    /// other as a full model.
    pub fn open(
        path: &Path,
        source: Option<&Path>,
        params: &ModelParams,
    ) -> Result<Self, TrimError> {
        if TrimInfo::from_gguf(&GgufFile::open(path)?)?.is_some() {
            Ok(Self::Trimmed(Arc::new(TrimmedSource::open(
                path, source, params,
            )?)))
        } else {
            Ok(Self::Full(Model::load(path, params)?))
        }
    }

    /// True for a VocabTrim drafter.
    pub fn is_trimmed(&self) -> bool {
        matches!(self, Self::Trimmed(_))
    }

    /// The model whose vocabulary the drafter's tokens come from.
    pub fn vocabulary(&self) -> &Arc<Model> {
        match self {
            Self::Full(m) => m,
            Self::Trimmed(t) => &t.vocab,
        }
    }
}

/// A VocabTrim drafter's input table and id map, with scratch rows.
struct Trim {
    source: Arc<TrimmedSource>,
    input: Vec<f32>,
    k_probs: Vec<f32>,
}

/// Drafts with a smaller model sharing the target's vocabulary. Its KV cache
/// follows the committed sequence lazily: tokens it has not seen are fed in
/// one batch at the next draft, and rejected tokens are rolled back.
pub struct ModelDrafter {
    seq: Sequence,
    /// Some in sampling mode: drafts are sampled from q.
    sampler: Option<Sampler>,
    /// Some for a VocabTrim drafter.
    trim: Option<Trim>,
}

impl ModelDrafter {
    /// A drafter on `model`. `sampling` is the generation's sampling; in
    /// sampling mode the drafter samples from its own q with a derived seed.
    pub fn new(
        model: Arc<Model>,
        params: &ContextParams,
        sampling: SamplingParams,
    ) -> Result<Self, EngineError> {
        let seq = Sequence::new(Context::new(model, params)?);
        let sampler = (!sampling.is_greedy()).then(|| {
            Sampler::new(SamplingParams {
                seed: sampling.seed ^ 0x9e37_79b9_7f4a_7c15,
                ..sampling
            })
        });
        Ok(Self {
            seq,
            sampler,
            trim: None,
        })
    }

    /// A VocabTrim drafter: input as embeddings from the source drafter's
    /// table, K-wide logits mapped back to target ids (q = 0 outside them).
    /// Its q ignores repetition penalties (its rows are indexed by trimmed
    /// ids, not the target's): a q that differs from the target's p costs
    /// acceptance, never exactness.
    pub fn trimmed(
        source: Arc<TrimmedSource>,
        params: &ContextParams,
        sampling: SamplingParams,
    ) -> Result<Self, EngineError> {
        let sampling = SamplingParams {
            penalties: Penalties::OFF,
            ..sampling
        };
        let mut drafter = Self::new(source.model.clone(), params, sampling)?;
        drafter.trim = Some(Trim {
            source,
            input: Vec::new(),
            k_probs: Vec::new(),
        });
        Ok(drafter)
    }

    /// A drafter running `model`: full or trimmed.
    pub fn open(
        model: &DraftModel,
        params: &ContextParams,
        sampling: SamplingParams,
    ) -> Result<Self, EngineError> {
        match model {
            DraftModel::Full(m) => Self::new(m.clone(), params, sampling),
            DraftModel::Trimmed(t) => Self::trimmed(t.clone(), params, sampling),
        }
    }

    /// Feeds tokens to the drafter's context (as embeddings when trimmed).
    fn feed(&mut self, tokens: &[Token]) -> Result<(), EngineError> {
        let Some(trim) = self.trim.as_mut() else {
            return self.seq.decode(tokens, Logits::Last);
        };
        let table = &trim.source.table;
        let n = table.n_embd();
        trim.input.resize(tokens.len() * n, 0.0);
        for (row, &t) in trim.input.chunks_exact_mut(n).zip(tokens) {
            table.row_into(t, row)?;
        }
        self.seq
            .decode_embeddings(tokens, &trim.input, Logits::Last)
    }

    /// Times one pass over each batch size in `sizes` (ms), fed after
    /// `context` tokens: once to warm, then the median of three. Leaves the
    /// drafter reset.
    pub fn time_batches(
        &mut self,
        sizes: &[usize],
        context: usize,
    ) -> Result<Vec<(usize, f64)>, EngineError> {
        self.reset();
        self.feed(&vec![0; context.max(1)])?;
        let base = self.seq.len();
        let mut times = Vec::with_capacity(sizes.len());
        for &tokens in sizes {
            if tokens == 0 || base + tokens > self.seq.context().n_ctx() as usize {
                continue;
            }
            let batch = vec![0; tokens];
            let mut time = || -> Result<f64, EngineError> {
                let start = Instant::now();
                self.feed(&batch)?;
                let ms = start.elapsed().as_secs_f64() * 1e3;
                self.seq.truncate(base)?;
                Ok(ms)
            };
            time()?;
            let mut timed = [time()?, time()?, time()?];
            timed.sort_by(f64::total_cmp);
            times.push((tokens, timed[1]));
        }
        self.reset();
        Ok(times)
    }

    /// The drafter's model.
    pub fn model(&self) -> &Arc<Model> {
        self.seq.context().model()
    }
}

impl Drafter for ModelDrafter {
    fn reset(&mut self) {
        self.seq.clear();
    }

    fn propose(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> Result<(), EngineError> {
        out.clear(DraftSource::Model);
        let room = ctl
            .room(DraftSource::Model)
            .min((self.seq.context().n_ctx() as usize + 1).saturating_sub(committed.len()));
        self.seq.roll_back_to(committed, usize::MAX)?;
        if room == 0 || !ctl.start(DraftSource::Model, committed.len() - self.seq.len()) {
            return Ok(());
        }
        // Catch up on every committed token not yet seen, in one batch (the
        // cache already holds only a prefix of `committed`; it gives up the
        // last token when it holds all: that token's logits are gone).
        self.seq.truncate(committed.len() - 1)?;
        let pending_from = self.seq.len();
        let start = Instant::now();
        self.feed(&committed[pending_from..])?;
        out.set_catch_up(committed.len() - pending_from, start.elapsed());

        loop {
            let logits = self.seq.context().logits(0)?;
            let (token, confidence) = match (&mut self.sampler, &mut self.trim) {
                (None, trim) => {
                    let best = argmax(logits);
                    let token = trim
                        .as_ref()
                        .map_or(best, |t| t.source.info.ids[best as usize]);
                    (token, top_probability(logits, best))
                }
                (Some(sampler), None) => {
                    let (drafted, row) = out.next_q_row();
                    sampler.distribution(logits, History::new(committed).then(drafted), row);
                    let token = sampler.sample_from(row);
                    (token, row[token as usize])
                }
                (Some(sampler), Some(trim)) => {
                    sampler.distribution(logits, History::default(), &mut trim.k_probs);
                    let j = sampler.sample_from(&trim.k_probs) as usize;
                    let info = &trim.source.info;
                    let (_, row) = out.next_q_row();
                    row.clear();
                    row.resize(info.source_vocab as usize, 0.0);
                    for (&id, &p) in info.ids.iter().zip(&trim.k_probs) {
                        row[id as usize] = p;
                    }
                    (info.ids[j], trim.k_probs[j])
                }
            };
            if !out.push_and_ask(token, Some(confidence), ctl, room) {
                break;
            }
            self.feed(&[token])?;
        }
        Ok(())
    }

    fn commit(&mut self, committed: &[Token]) -> Result<(), EngineError> {
        self.seq.roll_back_to(committed, usize::MAX)
    }

    fn bytes_per_token(&self) -> u64 {
        self.model().summary().bytes_per_token
    }

    fn vocabulary(&self) -> Option<&Arc<Model>> {
        Some(
            self.trim
                .as_ref()
                .map_or(self.seq.context().model(), |t| &t.source.vocab),
        )
    }

    fn prefill(
        &mut self,
        tokens: &[Token],
        costs: Option<&mut CostModel>,
    ) -> Result<Duration, EngineError> {
        let from = self.seq.prepare_catch_up(tokens)?;
        let Some(costs) = costs else {
            self.feed(&tokens[from..])?;
            return Ok(Duration::ZERO);
        };
        let (head, tail) = timed_tail(tokens.len() - from, &TIMED_CATCH_UP);
        if head > 0 {
            self.feed(&tokens[from..from + head])?;
        }
        let mut at = from + head;
        let mut timed = Duration::ZERO;
        for b in tail {
            let start = Instant::now();
            self.feed(&tokens[at..at + b])?;
            let elapsed = start.elapsed();
            let ms = elapsed.as_secs_f64() * 1e3;
            costs.observe_catch_up(b, ms);
            if b == 1 {
                costs.observe_draft(1, ms);
            }
            timed += elapsed;
            at += b;
        }
        Ok(timed)
    }

    fn cache(&self) -> Option<&Sequence> {
        Some(&self.seq)
    }

    fn cache_mut(&mut self) -> Option<&mut Sequence> {
        Some(&mut self.seq)
    }
}
