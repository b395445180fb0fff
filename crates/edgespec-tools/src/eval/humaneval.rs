//! The HumanEval run: every problem through the large model alone, the
//! small one alone and each EAD configuration, the answers checked in the
//! sandbox and recorded as they finish; and the pass@1 against
//! large-share summary.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{extract_code, EvalError, Isolation, Outcome, Problem, Sandbox};
use edgespec::draft::{DraftLength, DraftModel};
use edgespec::ead::EadConfig;
use edgespec::engine::{ContextParams, Model};
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};

/// What to run.
pub struct HumanevalRun {
    /// The problems.
    pub problems: Vec<Problem>,
    /// The large model.
    pub large: Arc<Model>,
    /// The small model.
    pub small: Arc<Model>,
    /// EAD configurations by label.
    pub configs: Vec<(String, EadConfig)>,
    /// Draft length inside large-model regions (0: plain EAD).
    pub gamma: usize,
    /// Most tokens per answer.
    pub max_tokens: usize,
    /// Context and threads of every session.
    pub context: ContextParams,
    /// Also run the large and the small model alone.
    pub baselines: bool,
    /// (configuration label, task id) pairs an interrupted run already
    /// answered: a resumed run skips them.
    pub done: HashSet<(String, String)>,
}

/// One answer, as written to results.jsonl.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    /// Configuration label (`large`, `small`, `ead τ=…`, `ead share=…`).
    pub config: String,
    /// The fixed threshold of an EAD configuration.
    pub threshold_bits: Option<f64>,
    /// The large-model share an adaptive configuration held.
    #[serde(default)]
    pub large_share: Option<f64>,
    /// The problem.
    pub task_id: String,
    /// The tests passed.
    pub passed: bool,
    /// What running the tests gave.
    pub outcome: Outcome,
    /// How the sandbox isolated the run (absent in records written before
    /// it was recorded).
    #[serde(default)]
    pub isolation: Option<Isolation>,
    /// Tokens generated.
    pub tokens: usize,
    /// Of which by the large model.
    pub large_tokens: usize,
    /// Model switches.
    pub switches: usize,
    /// Decode speed.
    pub decode_tok_s: f64,
    /// Weight bytes read relative to large-only decoding.
    pub cost_bytes: f64,
    /// The answer.
    pub reply: String,
}

impl HumanevalRun {
    /// Runs every problem under every configuration, appending each record
    /// to `results` (one JSON line) as it finishes; `progress(record)`
    /// after each answer.
    pub fn run(
        &self,
        sandbox: &Sandbox,
        results: &mut dyn Write,
        mut progress: impl FnMut(&Record),
    ) -> Result<Vec<Record>, EvalError> {
        let alone = |model: &Arc<Model>| {
            Session::new(SessionConfig::new(model.clone(), self.context.clone()))
        };
        let kind = if self.gamma > 0 {
            DraftKind::EadSpec
        } else {
            DraftKind::Ead
        };
        // Sessions by label: the large model alone, the small one alone, each EAD configuration.
        let mut sessions = [alone(&self.large)?, alone(&self.small)?]
            .into_iter()
            .map(Ok)
            .chain(self.configs.iter().map(|(_, config)| {
                Session::new(SessionConfig {
                    ead: *config,
                    policy: PolicyConfig {
                        length: DraftLength::Fixed(self.gamma),
                        ..PolicyConfig::default()
                    },
                    ..SessionConfig::new(self.large.clone(), self.context.clone())
                        .with_drafter(kind, Some(DraftModel::Full(self.small.clone())))
                })
            }))
            .collect::<Result<Vec<_>, _>>()?;
        let labels: Vec<&str> = ["large", "small"]
            .into_iter()
            .chain(self.configs.iter().map(|(label, _)| label.as_str()))
            .collect();
        let small_cost = self.small.summary().bytes_per_token as f64
            / self.large.summary().bytes_per_token.max(1) as f64;
        let mut records = Vec::new();
        for problem in &self.problems {
            let prompt = sessions[0].prompt_tokens(&problem.prompt, true)?;
            for (i, label) in labels.iter().enumerate() {
                if !self.baselines && i < 2
                    || self
                        .done
                        .contains(&(label.to_string(), problem.task_id.clone()))
                {
                    continue;
                }
                let g = sessions[i].generate(&prompt, self.max_tokens, |_, _| true)?;
                let n = g.generation.tokens.len();
                let (large_tokens, switches, cost) = match (&g.ead, i) {
                    (Some(s), _) => (s.large_tokens, s.switches, s.cost_bytes()),
                    (None, 0) => (n, 0, 1.0),
                    (None, _) => (0, 0, small_cost),
                };
                let text = g.generation.text;
                let outcome = sandbox.check(problem, &extract_code(&text))?;
                let config = i.checked_sub(2).map(|j| self.configs[j].1);
                let record = Record {
                    config: label.to_string(),
                    threshold_bits: config
                        .filter(|c| c.large_share.is_none())
                        .map(|c| c.threshold_bits),
                    large_share: config.and_then(|c| c.large_share),
                    task_id: problem.task_id.clone(),
                    passed: outcome.passed(),
                    outcome,
                    isolation: Some(sandbox.isolation),
                    tokens: n,
                    large_tokens,
                    switches,
                    decode_tok_s: g.generation.stats.decode_tok_per_s(),
                    cost_bytes: cost,
                    reply: text,
                };
                let line = serde_json::to_string(&record).unwrap_or_default();
                writeln!(results, "{line}")
                    .and_then(|()| results.flush())
                    .map_err(|source| EvalError::Write { source })?;
                progress(&record);
                records.push(record);
            }
        }
        Ok(records)
    }
}

/// Reads the records of a results.jsonl (also of an interrupted run: a torn
/// last line is skipped with a warning).
pub fn load_records(path: &Path) -> Result<Vec<Record>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_owned(),
        source,
    })?;
    crate::jsonl::parse(&text, &path.display().to_string()).map_err(|bad| EvalError::BadRecord {
        path: path.to_owned(),
        line: bad.line,
        reason: bad.reason,
    })
}

/// The pass@1 against large-share table (markdown) under `header`: one
/// row per configuration, in order of first appearance.
pub fn summary(records: &[Record], header: &str) -> Option<String> {
    let mut tallies = tally(records);
    if tallies.is_empty() {
        return None;
    }
    let large_pass = tallies
        .iter()
        .find(|t| t.label == "large")
        .map_or(0.0, |t| t.passed as f64 / t.problems.max(1) as f64);
    let mut md = format!(
        "{header}\n\n| config | problems | pass@1 | passed | of large's pass@1 | large share of tokens | switches/answer | decode tok/s (median) | bytes read vs large-only (median) |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for t in &mut tallies {
        let pass = t.passed as f64 / t.problems.max(1) as f64;
        md.push_str(&format!(
            "| {} | {} | {:.1}% | {}/{} | {:.1}% | {:.1}% | {:.1} | {:.1} | {:.3} |\n",
            t.label,
            t.problems,
            pass * 100.0,
            t.passed,
            t.problems,
            if large_pass > 0.0 {
                pass / large_pass * 100.0
            } else {
                0.0
            },
            t.large_tokens as f64 / t.tokens.max(1) as f64 * 100.0,
            t.switches as f64 / t.problems.max(1) as f64,
            median(&mut t.decode_rates),
            median(&mut t.cost_bytes),
        ));
    }
    Some(md)
}

/// One configuration's results.
#[derive(Debug, Default, Clone)]
struct Tally {
    label: String,
    passed: usize,
    problems: usize,
    tokens: usize,
    large_tokens: usize,
    switches: usize,
    decode_rates: Vec<f64>,
    cost_bytes: Vec<f64>,
}

/// Tallies per configuration, in order of first appearance.
fn tally(records: &[Record]) -> Vec<Tally> {
    let mut tallies: Vec<Tally> = Vec::new();
    for r in records {
        let i = match tallies.iter().position(|t| t.label == r.config) {
            Some(i) => i,
            None => {
                tallies.push(Tally {
                    label: r.config.clone(),
                    ..Tally::default()
                });
                tallies.len() - 1
            }
        };
        let t = &mut tallies[i];
        t.problems += 1;
        t.passed += usize::from(r.passed);
        t.tokens += r.tokens;
        t.large_tokens += r.large_tokens;
        t.switches += r.switches;
        t.decode_rates.push(r.decode_tok_s);
        t.cost_bytes.push(r.cost_bytes);
    }
    tallies
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
