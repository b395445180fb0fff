//! Traces: what each draft source would have offered at every position of
//! a greedy target generation, and what the target chose there. Recorded
//! once with every drafter drafting to its maximum, a trace lets the replay
//! simulator ([`crate::replay`]) price any draft-length policy on any cost
//! profile: greedy verification accepts exactly the prefix of a draft that
//! equals the target's output. Lookup drafts need no recording: they are a
//! function of the tokens, recomputed on replay.
//!
//! One trace per prompt, one JSON object per line of a `.jsonl` file.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use edgespec::draft::{
    top_successors, Draft, DraftControl, DraftSource, Drafter, Next, Successor, Successors,
    SUCCESSORS,
};
use edgespec::engine::{EngineError, Logits, Sequence, Token};
use edgespec::generate::{generate_target_only, GenerateParams};

/// Trace format version written into every trace.
pub const TRACE_VERSION: u32 = 1;

/// A drafter's greedy draft from one position: the first `matched` tokens
/// equal the target's output there (so they are not stored again), then
/// the rest of what it proposed, with its top probability for every token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedDraft {
    /// Leading tokens equal to the target's output from this position.
    #[serde(rename = "m")]
    pub matched: usize,
    /// Tokens after the matched ones.
    #[serde(rename = "t")]
    pub rest: Vec<Token>,
    /// The drafter's probability of each drafted token (matched and rest).
    #[serde(rename = "c")]
    pub confidence: Vec<f32>,
}

/// Everything one drafter offered over a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrafterTrace {
    /// The drafter's model file name.
    pub model: String,
    /// Tokens drafted from each position.
    pub max_draft: usize,
    /// Mean ms per drafter pass while recording (this machine).
    pub step_ms: f64,
    /// `drafts[i]` continues the prompt and the output's first i + 1 tokens.
    pub drafts: Vec<RecordedDraft>,
}

/// One prompt's trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Format version ([`TRACE_VERSION`]).
    pub version: u32,
    /// Prompt set name.
    pub set: String,
    /// Index of the prompt in its set.
    pub prompt_index: usize,
    /// The target model's file name.
    pub target: String,
    /// Prompt tokens.
    pub prompt: Vec<Token>,
    /// The target's greedy output (end-of-generation token not included).
    pub output: Vec<Token>,
    /// Ms of each output token's target pass while recording (this
    /// machine; the first is the prompt pass).
    pub target_ms: Vec<f32>,
    /// What each drafter offered, by kind (`model`, `trimmed`).
    pub drafters: std::collections::BTreeMap<String, DrafterTrace>,
    /// The target's likeliest tokens (id, share among them) at each output
    /// position, likeliest first: what recycled drafts learn from
    /// (absent from traces recorded before them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<Vec<(Token, f32)>>,
    /// The target's end-of-generation tokens, which no draft continues
    /// past (absent from traces recorded before them: drafts not cut).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end_tokens: Vec<Token>,
}

/// Trace files that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a valid trace.
    #[error("{path}:{line}: not a trace: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Recording failed in llama.cpp.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl RecordedDraft {
    /// The drafted tokens, given the target's output from this position.
    pub fn tokens<'a>(&'a self, output_from_here: &'a [Token]) -> impl Iterator<Item = Token> + 'a {
        output_from_here[..self.matched]
            .iter()
            .copied()
            .chain(self.rest.iter().copied())
    }
}

impl Trace {
    /// Checks that the trace is self-consistent (lengths, versions).
    pub fn validate(&self) -> Result<(), String> {
        if self.version != TRACE_VERSION {
            return Err(format!(
                "version {} (this edgespec reads version {TRACE_VERSION})",
                self.version
            ));
        }
        if self.prompt.is_empty() || self.output.is_empty() {
            return Err("empty prompt or output".into());
        }
        for (name, d) in &self.drafters {
            if d.max_draft == 0 || d.max_draft > edgespec::draft::MAX_DRAFT {
                return Err(format!("drafter {name}: max_draft {}", d.max_draft));
            }
            if d.drafts.len() != self.output.len() - 1 {
                return Err(format!(
                    "drafter {name}: {} drafts for {} output tokens",
                    d.drafts.len(),
                    self.output.len()
                ));
            }
            for (i, r) in d.drafts.iter().enumerate() {
                let left = self.output.len() - 1 - i;
                let len = r.matched + r.rest.len();
                if r.matched > left || len > d.max_draft || r.confidence.len() != len {
                    return Err(format!("drafter {name}: draft {i} is malformed"));
                }
                if !r.rest.is_empty() && r.rest.first() == self.output.get(i + 1 + r.matched) {
                    return Err(format!("drafter {name}: draft {i} under-counts its match"));
                }
            }
        }
        let bad_top = |t: &Vec<(Token, f32)>| {
            t.len() > SUCCESSORS
                || t.iter()
                    .any(|&(id, share)| id < 0 || !(0.0..=1.0).contains(&share))
        };
        if !self.top.is_empty()
            && (self.top.len() != self.output.len() || self.top.iter().any(bad_top))
        {
            return Err(format!(
                "{} top-token lists for {} output tokens, or one malformed",
                self.top.len(),
                self.output.len()
            ));
        }
        Ok(())
    }

    /// The target's recorded likeliest tokens at output position `j` (none
    /// where the trace has no record).
    pub fn successors(&self, j: usize) -> Successors {
        self.top.get(j).map_or_else(Successors::new, |t| {
            t.iter()
                .map(|&(token, share)| Successor { token, share })
                .collect()
        })
    }
}

/// Reads a `.jsonl` trace file.
pub fn load_traces(path: &Path) -> Result<Vec<Trace>, TraceError> {
    let io = |source| TraceError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut traces = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let parse = |message: String| TraceError::Parse {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let trace: Trace = serde_json::from_str(&line).map_err(|e| parse(e.to_string()))?;
        trace.validate().map_err(parse)?;
        traces.push(trace);
    }
    Ok(traces)
}

/// Appends one trace as a line of `out`.
pub fn write_trace(out: &mut impl Write, trace: &Trace) -> std::io::Result<()> {
    let line = serde_json::to_string(trace).map_err(std::io::Error::other)?;
    writeln!(out, "{line}")?;
    out.flush()
}

/// Rounds a probability to three decimals (what traces keep).
fn round3(p: f32) -> f32 {
    (p * 1000.0).round() / 1000.0
}

/// A control that drafts exactly `.0` tokens whatever they cost: how traces
/// see every draft a drafter would make.
pub struct DraftAll(pub usize);

impl DraftControl for DraftAll {
    fn room(&self, _source: DraftSource) -> usize {
        self.0
    }
    fn start(&mut self, _source: DraftSource, _behind: usize) -> bool {
        true
    }
    fn next(&mut self, _draft: &Draft) -> Next {
        Next::Continue
    }
}

/// Records a trace: the target generates greedily from `prompt` (up to
/// `max_tokens`), then each drafter drafts `max_draft` tokens from every
/// position of that output. A draft that held for its first token is
/// shifted and extended by one step instead of redrafted: a greedy
/// drafter's continuation of the text does not depend on how it got there.
pub fn record_trace(
    target: &mut Sequence,
    drafters: &mut [(String, String, &mut dyn Drafter)],
    prompt: &[Token],
    max_tokens: usize,
    max_draft: usize,
) -> Result<Trace, TraceError> {
    let mut target_ms = Vec::with_capacity(max_tokens);
    let mut last = Instant::now();
    let generation = generate_target_only(
        target,
        prompt,
        &GenerateParams::greedy(max_tokens),
        |_, _| {
            let now = Instant::now();
            target_ms.push(round1((now - last).as_secs_f64() * 1e3));
            last = now;
            true
        },
    )?;
    let output = generation.tokens;
    let top = record_top(target, prompt, &output)?;
    let mut traces = std::collections::BTreeMap::new();
    for (kind, model, drafter) in drafters.iter_mut() {
        let (drafts, step_ms) = record_drafts(&mut **drafter, prompt, &output, max_draft)?;
        traces.insert(
            kind.clone(),
            DrafterTrace {
                model: model.clone(),
                max_draft,
                step_ms: f64::from(round1(step_ms)),
                drafts,
            },
        );
    }
    Ok(Trace {
        version: TRACE_VERSION,
        set: String::new(),
        prompt_index: 0,
        target: target
            .context()
            .model()
            .path()
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        prompt: prompt.to_vec(),
        target_ms,
        output,
        drafters: traces,
        top,
        end_tokens: target.context().model().end_tokens(),
    })
}

/// The target's [`SUCCESSORS`] likeliest tokens at each position of
/// `output` (after the prompt and the output before it), from batched
/// passes over the text.
fn record_top(
    target: &mut Sequence,
    prompt: &[Token],
    output: &[Token],
) -> Result<Vec<Vec<(Token, f32)>>, TraceError> {
    const CHUNK: usize = 256;
    let (Some((&last, head)), false) = (prompt.split_last(), output.is_empty()) else {
        return Ok(Vec::new());
    };
    target.clear();
    target.decode(head, Logits::None)?;
    let inputs: Vec<Token> = std::iter::once(last)
        .chain(output[..output.len() - 1].iter().copied())
        .collect();
    let mut top = Vec::with_capacity(output.len());
    for chunk in inputs.chunks(CHUNK) {
        target.decode(chunk, Logits::All)?;
        for row in 0..chunk.len() {
            let successors = top_successors(target.context().logits(row)?);
            top.push(
                successors
                    .iter()
                    .map(|s| (s.token, round3(s.share)))
                    .collect(),
            );
        }
    }
    Ok(top)
}

fn round1(ms: f64) -> f32 {
    ((ms * 10.0).round() / 10.0) as f32
}

/// One drafter's drafts from every position of `output`, and its mean ms
/// per drafted token.
fn record_drafts(
    drafter: &mut dyn Drafter,
    prompt: &[Token],
    output: &[Token],
    max_draft: usize,
) -> Result<(Vec<RecordedDraft>, f64), TraceError> {
    drafter.reset();
    let mut drafts = Vec::with_capacity(output.len().saturating_sub(1));
    let mut history: Vec<Token> = prompt.to_vec();
    let mut draft = Draft::default();
    // The previous position's draft (tokens, confidences).
    let mut previous: Vec<(Token, f32)> = Vec::new();
    let (mut steps, mut time) = (0usize, 0.0f64);
    for i in 0..output.len().saturating_sub(1) {
        history.push(output[i]);
        let start = Instant::now();
        let mut current: Vec<(Token, f32)> = Vec::with_capacity(max_draft);
        if previous.len() == max_draft && previous[0].0 == output[i] {
            // Shift: the tail of the last draft, then one more step after it.
            current.extend_from_slice(&previous[1..]);
            let len = history.len();
            history.extend(current.iter().map(|&(t, _)| t));
            drafter.propose(&history, &mut DraftAll(1), &mut draft)?;
            history.truncate(len);
        } else {
            drafter.propose(&history, &mut DraftAll(max_draft), &mut draft)?;
        }
        steps += draft.len();
        time += start.elapsed().as_secs_f64() * 1e3;
        let confidence = draft.confidence().iter().map(|c| c.unwrap_or(1.0));
        current.extend(draft.tokens().iter().copied().zip(confidence));
        let left = &output[i + 1..];
        let matched = current
            .iter()
            .zip(left)
            .take_while(|((t, _), o)| t == *o)
            .count();
        drafts.push(RecordedDraft {
            matched,
            rest: current[matched..].iter().map(|&(t, _)| t).collect(),
            confidence: current.iter().map(|&(_, c)| round3(c)).collect(),
        });
        previous = current;
    }
    Ok((drafts, time / steps.max(1) as f64))
}
