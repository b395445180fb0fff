//! A drafter model in its own llama.cpp context.

use std::sync::Arc;
use std::time::Instant;

use super::{Draft, DraftControl, DraftSource, Drafter, Next};
use crate::engine::{Context, ContextParams, EngineError, Logits, Model, Token};
use crate::sampling::{argmax, Sampler, SamplingParams};

/// Drafts with a smaller model sharing the target's vocabulary. Its KV cache
/// follows the committed sequence lazily: tokens it has not seen are fed in
/// one batch at the next draft, and rejected tokens are rolled back.
pub struct ModelDrafter {
    ctx: Context,
    /// Tokens in the drafter's KV cache, in order.
    kv: Vec<Token>,
    /// Some in sampling mode: drafts are sampled from q.
    sampler: Option<Sampler>,
}

impl ModelDrafter {
    /// A drafter on `model`. `sampling` is the generation's sampling; in
    /// sampling mode the drafter samples from its own q with a derived seed.
    pub fn new(
        model: Arc<Model>,
        params: &ContextParams,
        sampling: SamplingParams,
    ) -> Result<Self, EngineError> {
        let ctx = Context::new(model, params)?;
        let sampler = (!sampling.is_greedy()).then(|| {
            Sampler::new(SamplingParams {
                seed: sampling.seed ^ 0x9e37_79b9_7f4a_7c15,
                ..sampling
            })
        });
        Ok(Self {
            kv: Vec::with_capacity(ctx.n_ctx() as usize),
            ctx,
            sampler,
        })
    }

    /// The drafter's model.
    pub fn model(&self) -> &Arc<Model> {
        self.ctx.model()
    }

    /// Rolls the cache back to the longest prefix shared with `committed`.
    fn sync(&mut self, committed: &[Token]) -> Result<(), EngineError> {
        let common = self
            .kv
            .iter()
            .zip(committed)
            .take_while(|(a, b)| a == b)
            .count();
        if common < self.kv.len() {
            self.ctx.truncate(common)?;
            self.kv.truncate(common);
        }
        Ok(())
    }
}

/// Probability of the most likely token: 1 / Σ exp(l − max).
fn top_probability(logits: &[f32], best: Token) -> f32 {
    let max = logits[best as usize];
    let total: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    1.0 / total
}

impl Drafter for ModelDrafter {
    fn name(&self) -> &'static str {
        "model"
    }

    fn reset(&mut self) {
        self.ctx.clear();
        self.kv.clear();
    }

    fn propose(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> Result<(), EngineError> {
        out.clear(DraftSource::Model);
        let room = ctl
            .room()
            .min((self.ctx.n_ctx() as usize + 1).saturating_sub(committed.len()));
        self.sync(committed)?;
        if room == 0 || !ctl.start(DraftSource::Model, committed.len() - self.kv.len()) {
            return Ok(());
        }
        if self.kv.len() == committed.len() {
            // Everything is cached but the logits are gone: replay the last token.
            self.ctx.truncate(committed.len() - 1)?;
            self.kv.pop();
        }
        // Catch up on every committed token not yet seen, in one batch.
        let pending = &committed[self.kv.len()..];
        let start = Instant::now();
        self.ctx.decode(pending, Logits::Last)?;
        out.set_catch_up(pending.len(), start.elapsed());
        self.kv.extend_from_slice(pending);

        loop {
            let logits = self.ctx.logits(0)?;
            let (token, confidence) = match &mut self.sampler {
                None => {
                    let best = argmax(logits);
                    (best, top_probability(logits, best))
                }
                Some(sampler) => {
                    let row = out.next_q_row();
                    sampler.distribution(logits, row);
                    let token = sampler.sample_from(row);
                    (token, row[token as usize])
                }
            };
            out.push(token, Some(confidence));
            match ctl.next(out) {
                Next::Continue if out.len() < room => {}
                Next::DropLastAndStop => {
                    out.pop();
                    break;
                }
                _ => break,
            }
            self.ctx.decode(&[token], Logits::Last)?;
            self.kv.push(token);
        }
        Ok(())
    }

    fn commit(&mut self, committed: &[Token]) -> Result<(), EngineError> {
        self.sync(committed)
    }

    fn bytes_per_token(&self) -> u64 {
        self.ctx.model().summary().bytes_per_token
    }

    fn measure_step_ms(&mut self) -> Result<Option<f64>, EngineError> {
        self.reset();
        let token = 0;
        self.ctx.decode(&[token], Logits::Last)?;
        let start = Instant::now();
        self.ctx.decode(&[token], Logits::Last)?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        self.reset();
        Ok(Some(ms))
    }
}
