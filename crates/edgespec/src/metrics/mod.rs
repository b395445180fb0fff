//! Counters and timings of a generation.

use std::time::Duration;

use serde::Serialize;

/// What one generation measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenerationStats {
    /// Prompt tokens fed to the model.
    pub prompt_tokens: usize,
    /// Of which the cache already held (a conversation's earlier turns),
    /// not read again.
    pub prompt_tokens_cached: usize,
    /// Tokens generated (end-of-generation token not counted).
    pub generated_tokens: usize,
    /// Whether the model ended the text with an end-of-generation token
    /// (which the decode phase produced, and timed, like any other).
    pub ended_by_end_token: bool,
    /// Time to process the prompt.
    #[serde(serialize_with = "as_secs")]
    pub prompt_time: Duration,
    /// Time from the end of the prompt to the last generated token.
    #[serde(serialize_with = "as_secs")]
    pub decode_time: Duration,
    /// Time from the start to the first generated token.
    #[serde(serialize_with = "as_secs")]
    pub time_to_first_token: Duration,
    /// Network round trips to a remote target (requests that waited for
    /// an RPC server's reply), prompt included; 0 for a local target.
    pub round_trips: u64,
    /// Bytes a remote target's servers sent back (logits, mostly), prompt
    /// included; 0 for a local target.
    pub remote_bytes: u64,
}

pub(crate) fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Events per second, 0 when no time passed.
pub fn per_second(count: usize, time: Duration) -> f64 {
    let secs = time.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

impl GenerationStats {
    /// Round trips to a remote target per generated token.
    pub fn round_trips_per_token(&self) -> f64 {
        if self.generated_tokens == 0 {
            0.0
        } else {
            self.round_trips as f64 / self.generated_tokens as f64
        }
    }

    /// Bytes a remote target sent back per generated token.
    pub fn remote_bytes_per_token(&self) -> f64 {
        if self.generated_tokens == 0 {
            0.0
        } else {
            self.remote_bytes as f64 / self.generated_tokens as f64
        }
    }

    /// Prompt tokens read per second (those found in the cache not counted).
    pub fn prompt_tok_per_s(&self) -> f64 {
        per_second(
            self.prompt_tokens - self.prompt_tokens_cached,
            self.prompt_time,
        )
    }

    /// Tokens per second over the decode phase: those it produced, the
    /// end-of-generation token included (its pass is timed; llama.cpp
    /// counts it too). The first token comes from the prompt pass, so it
    /// is not counted against decode time.
    pub fn decode_tok_per_s(&self) -> f64 {
        let end = usize::from(self.ended_by_end_token && self.generated_tokens > 0);
        per_second(
            self.generated_tokens.saturating_sub(1) + end,
            self.decode_time,
        )
    }

    /// One-line human summary.
    pub fn summary_line(&self) -> String {
        format!(
            "prompt: {} tokens, {:.1} tok/s | decode: {} tokens, {:.1} tok/s | first token after {:.0} ms",
            self.prompt_tokens,
            self.prompt_tok_per_s(),
            self.generated_tokens,
            self.decode_tok_per_s(),
            self.time_to_first_token.as_secs_f64() * 1000.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let s = GenerationStats {
            prompt_tokens: 14,
            prompt_tokens_cached: 4,
            generated_tokens: 21,
            prompt_time: Duration::from_millis(500),
            decode_time: Duration::from_secs(2),
            time_to_first_token: Duration::from_millis(510),
            round_trips: 42,
            remote_bytes: 21 * 600_000,
            ended_by_end_token: false,
        };
        assert_eq!(s.prompt_tok_per_s(), 20.0);
        assert_eq!(s.decode_tok_per_s(), 10.0);
        assert_eq!(s.round_trips_per_token(), 2.0);
        assert_eq!(s.remote_bytes_per_token(), 600_000.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        // An end token ended the text: the decode phase timed 21 passes
        // (tokens 2–21 and the end token), as llama.cpp counts them.
        let ended = GenerationStats {
            ended_by_end_token: true,
            decode_time: Duration::from_millis(2100),
            ..s.clone()
        };
        assert_eq!(ended.decode_tok_per_s(), 10.0);
        // An end token as the very first token: no decode pass at all.
        let at_once = GenerationStats {
            generated_tokens: 0,
            decode_time: Duration::ZERO,
            ..ended
        };
        assert_eq!(at_once.decode_tok_per_s(), 0.0);
    }
}

/// What the rounds drafting from one source measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SourceStats {
    /// Rounds with a draft from this source.
    pub rounds: usize,
    /// Tokens drafted.
    pub drafted: usize,
    /// Drafted tokens the target accepted.
    pub accepted: usize,
    /// The target's verification passes of these rounds.
    #[serde(serialize_with = "as_secs")]
    pub verify_time: Duration,
}

impl SourceStats {
    /// Counts one verified round of `drafted` tokens, `accepted` of them.
    pub fn add_round(&mut self, drafted: usize, accepted: usize, verify_time: Duration) {
        self.rounds += 1;
        self.drafted += drafted;
        self.accepted += accepted;
        self.verify_time += verify_time;
    }

    /// Acceptance rate α.
    pub fn acceptance(&self) -> f64 {
        ratio(self.accepted, self.drafted)
    }

    /// Draft tokens accepted per round.
    pub fn mean_accepted(&self) -> f64 {
        ratio(self.accepted, self.rounds)
    }

    /// Mean verification pass of these rounds, in ms.
    pub fn verify_ms(&self) -> f64 {
        if self.rounds == 0 {
            0.0
        } else {
            self.verify_time.as_secs_f64() * 1e3 / self.rounds as f64
        }
    }
}

/// What a speculative generation measured, on top of [`GenerationStats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpecStats {
    /// Target forward passes after the prompt (one per round).
    pub target_calls: usize,
    /// Rounds that drafted at least one token.
    pub draft_rounds: usize,
    /// Tokens drafted.
    pub drafted: usize,
    /// Longest draft of one round.
    pub longest_draft: usize,
    /// Drafted tokens accepted.
    pub accepted: usize,
    /// Rounds and tokens drafted from suffix matches in the request.
    pub lookup: SourceStats,
    /// From suffix matches in the memory of earlier outputs.
    pub memory: SourceStats,
    /// From recycled target candidates.
    pub recycled: SourceStats,
    /// By the drafter model.
    pub model: SourceStats,
    /// The rounds (of any source) whose draft was a tree: the shape's
    /// share, the rest were chains.
    pub tree: SourceStats,
    /// Tokens accepted on a tree's branches (off its chain).
    pub branch_accepted: usize,
    /// Time drafting (catch-up included).
    #[serde(serialize_with = "as_secs")]
    pub draft_time: Duration,
    /// Time in target forward passes.
    #[serde(serialize_with = "as_secs")]
    pub verify_time: Duration,
    /// Time in acceptance tests and sampling.
    #[serde(serialize_with = "as_secs")]
    pub accept_time: Duration,
    /// Time rolling caches back.
    #[serde(serialize_with = "as_secs")]
    pub rollback_time: Duration,
    /// Passes timed for the cost model while reading the first prompt of a
    /// session without known costs (part of the prompt time; zero when
    /// costs were given or already measured).
    #[serde(serialize_with = "as_secs")]
    pub calibration_time: Duration,
    /// Drafter ms per step ÷ target ms for one token (measured).
    pub c_time: f64,
    /// Drafter bytes per token ÷ target bytes per token.
    pub c_bytes: f64,
    /// What the rounds that ran the drafter model saved against decoding
    /// their tokens plainly, in ms (the single-token pass priced as
    /// measured): negative when they cost more than they gave, zero when
    /// it never ran.
    pub model_saved_ms: f64,
}

impl SpecStats {
    /// Each draft source by name (`lookup`, `memory`, `recycled`, `model`),
    /// then `tree`: the rounds, of any source, whose draft was a tree.
    pub fn sources(&self) -> [(&'static str, &SourceStats); 5] {
        [
            ("lookup", &self.lookup),
            ("memory", &self.memory),
            ("recycled", &self.recycled),
            ("model", &self.model),
            ("tree", &self.tree),
        ]
    }

    /// Acceptance rate α of drafted tokens.
    pub fn acceptance(&self) -> f64 {
        ratio(self.accepted, self.drafted)
    }

    /// Mean draft length per round (all rounds, γ = 0 rounds included).
    pub fn mean_gamma(&self) -> f64 {
        ratio(self.drafted, self.target_calls)
    }

    /// τ: tokens per target call. The first token comes from the prompt
    /// pass, so it is not counted.
    pub fn tau(&self, generated: usize) -> f64 {
        ratio(generated.saturating_sub(1), self.target_calls)
    }

    /// Memory-bound speed-up τ / (γ·c + 1) with c in bytes (VocabTrim paper,
    /// arXiv 2506.22694); only model-drafted tokens cost drafter bytes.
    pub fn mbsu(&self, generated: usize) -> f64 {
        let model_gamma = ratio(self.model.drafted, self.target_calls);
        self.tau(generated) / (model_gamma * self.c_bytes + 1.0)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
