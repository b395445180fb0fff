//! Summaries, machine description, JSON and Markdown output.

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats::Spread;
use super::RunRecord;

/// The machine a benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    /// CPU model name.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Threads used.
    pub threads: i32,
    /// ggml's system-info line (backends, detected CPU features).
    pub backend: String,
    /// edgespec version.
    pub edgespec: String,
    /// ggml version and commit llama.cpp was built from.
    pub ggml: String,
}

impl MachineInfo {
    /// Describes this machine.
    pub fn detect(threads: i32) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        // SAFETY: ggml_version/ggml_commit return pointers to static strings.
        let ggml = unsafe {
            let v = std::ffi::CStr::from_ptr(llama_cpp_sys_2::ggml_version());
            let c = std::ffi::CStr::from_ptr(llama_cpp_sys_2::ggml_commit());
            format!("{} ({})", v.to_string_lossy(), c.to_string_lossy())
        };
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads,
            backend: crate::engine::system_info(),
            edgespec: env!("CARGO_PKG_VERSION").to_owned(),
            ggml,
        }
    }
}

/// One (prompt set, mode) cell of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ModeSummary {
    /// Prompt set.
    pub set: String,
    /// Mode.
    pub mode: String,
    /// Decode tok/s per repetition (all tokens of the set ÷ all decode time).
    pub tok_s: Spread,
    /// Ratio to target-only's tok/s in the same repetition.
    pub speedup: Option<Spread>,
    /// Acceptance rate over the set.
    pub alpha: Option<f64>,
    /// Tokens per target call (edgespec modes).
    pub tau: Option<f64>,
    /// Mean c (time) over runs.
    pub c_time: Option<f64>,
    /// c (bytes).
    pub c_bytes: Option<f64>,
    /// Mean memory-bound speed-up.
    pub mbsu: Option<f64>,
    /// Median time to first token, ms.
    pub ttft_ms: Option<f64>,
    /// Runs whose tokens equal target-only's / runs compared.
    pub identical: Option<(usize, usize)>,
}

/// Memory traffic and the speed limit it sets.
#[derive(Debug, Clone, Serialize)]
pub struct Roofline {
    /// Measured read bandwidth, bytes per second.
    pub bandwidth_bytes_s: f64,
    /// Target weight bytes read per decoded token.
    pub target_bytes_per_token: u64,
    /// bandwidth ÷ bytes per token: the most tok/s target-only decoding could reach.
    pub target_only_bound_tok_s: f64,
    /// Peak resident memory of the benchmark process, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Bytes of model files memory-mapped (target + drafters).
    pub mapped_model_bytes: u64,
}

/// Everything a benchmark produced.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Where it ran.
    pub machine: MachineInfo,
    /// The command line.
    pub command: String,
    /// Target model file and its sha256.
    pub target: (String, String),
    /// Drafter model file and its sha256.
    pub draft: Option<(String, String)>,
    /// Bandwidth bound and memory use.
    pub roofline: Roofline,
    /// Per set and mode.
    pub summaries: Vec<ModeSummary>,
    /// Every run.
    pub runs: Vec<RunRecord>,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Summarises runs per (set, mode), in the order sets and modes first appear.
pub fn summarize(runs: &[RunRecord]) -> Vec<ModeSummary> {
    let mut order: Vec<(String, String)> = Vec::new();
    for r in runs {
        let key = (r.set.clone(), r.mode.clone());
        if !order.contains(&key) {
            order.push(key);
        }
    }
    // Aggregate rate per (set, mode, rep).
    let mut rate: BTreeMap<(String, String, usize), (f64, f64)> = BTreeMap::new();
    for r in runs {
        let e = rate
            .entry((r.set.clone(), r.mode.clone(), r.rep))
            .or_default();
        e.0 += r.tokens.saturating_sub(1) as f64;
        e.1 += r.decode_s;
    }
    let per_rep = |set: &str, mode: &str| -> Vec<(usize, f64)> {
        rate.iter()
            .filter(|((s, m, _), _)| s == set && m == mode)
            .filter(|(_, (_, secs))| *secs > 0.0)
            .map(|((_, _, rep), (tokens, secs))| (*rep, tokens / secs))
            .collect()
    };
    order
        .iter()
        .filter_map(|(set, mode)| {
            let mine: Vec<&RunRecord> = runs
                .iter()
                .filter(|r| &r.set == set && &r.mode == mode)
                .collect();
            let rates = per_rep(set, mode);
            let tok_s = Spread::of(&rates.iter().map(|r| r.1).collect::<Vec<_>>())?;
            let base: BTreeMap<usize, f64> = per_rep(set, "target").into_iter().collect();
            let ratios: Vec<f64> = rates
                .iter()
                .filter_map(|(rep, v)| base.get(rep).map(|b| v / b))
                .collect();
            let drafted: usize = mine.iter().filter_map(|r| r.drafted).sum();
            let accepted: usize = mine.iter().filter_map(|r| r.accepted).sum();
            let calls: usize = mine.iter().filter_map(|r| r.target_calls).sum();
            let tokens: usize = mine.iter().map(|r| r.tokens).sum();
            let compared: Vec<bool> = mine.iter().filter_map(|r| r.identical).collect();
            let ttft: Vec<f64> = mine.iter().filter_map(|r| r.ttft_ms).collect();
            Some(ModeSummary {
                set: set.clone(),
                mode: mode.clone(),
                tok_s,
                speedup: Spread::of(&ratios),
                alpha: mine.iter().any(|r| r.drafted.is_some()).then(|| {
                    if drafted == 0 {
                        0.0
                    } else {
                        accepted as f64 / drafted as f64
                    }
                }),
                tau: (calls > 0).then(|| tokens.saturating_sub(mine.len()) as f64 / calls as f64),
                c_time: mean(mine.iter().filter_map(|r| r.c_time)),
                c_bytes: mean(mine.iter().filter_map(|r| r.c_bytes)),
                mbsu: mean(mine.iter().filter_map(|r| r.mbsu)),
                ttft_ms: Spread::of(&ttft).map(|s| s.median),
                identical: (!compared.is_empty())
                    .then(|| (compared.iter().filter(|&&b| b).count(), compared.len())),
            })
        })
        .collect()
}

impl BenchReport {
    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        out.push_str("# edgespec bench\n\n");
        out.push_str(&format!(
            "Machine: {} ({} cores), {} threads; backend: {}; edgespec {}, ggml {}.\n\n",
            m.cpu, m.cores, m.threads, m.backend, m.edgespec, m.ggml
        ));
        out.push_str(&format!(
            "Target: `{}` (sha256 {}…)",
            self.target.0,
            &self.target.1[..12.min(self.target.1.len())]
        ));
        if let Some((d, sha)) = &self.draft {
            out.push_str(&format!(
                "; drafter: `{d}` (sha256 {}…)",
                &sha[..12.min(sha.len())]
            ));
        }
        out.push_str(&format!(".\n\nCommand: `{}`\n\n", self.command));
        let r = &self.roofline;
        out.push_str(&format!(
            "Memory: read bandwidth {:.1} GB/s; the target reads {:.1} MB per token, so target-only decoding is bounded by {:.1} tok/s. Peak RSS {}; model files mapped {:.0} MB.\n\n",
            r.bandwidth_bytes_s / 1e9,
            r.target_bytes_per_token as f64 / 1e6,
            r.target_only_bound_tok_s,
            r.peak_rss_bytes.map_or("unknown".into(), |b| format!("{:.0} MB", b as f64 / 1e6)),
            r.mapped_model_bytes as f64 / 1e6
        ));
        out.push_str(&summary_table(&self.summaries, r.target_only_bound_tok_s));
        out.push_str(
            "\ntok/s: decode tokens per second over the whole set, median (min–max) over repetitions. \
             ×target: ratio to target-only in the same repetition. α: accepted/drafted. τ: tokens per \
             target call (after the first token). c: drafter/target cost per token by time and by bytes. \
             MBSU: τ/(γ·c_bytes+1). same: runs whose tokens equal target-only's. of bound: tok/s as a \
             share of the bandwidth limit for target-only decoding. llama-* rows are \
             llama.cpp's own tools on the same prompts (their tok/s as they report it).\n",
        );
        out
    }
}

/// The summary as a Markdown table; `bound` is the target-only bandwidth
/// limit in tok/s (0 to leave the roofline column out).
pub fn summary_table(summaries: &[ModeSummary], bound: f64) -> String {
    let opt = |v: Option<f64>, d: usize| v.map_or("–".to_owned(), |v| format!("{v:.d$}"));
    let mut out = String::from(
        "| set | mode | tok/s | ×target | α | τ | c time | c bytes | MBSU | TTFT ms | same | of bound |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.set,
            s.mode,
            s.tok_s.display(1),
            s.speedup.map_or("–".into(), |x| x.display(2)),
            opt(s.alpha, 2),
            opt(s.tau, 2),
            opt(s.c_time, 2),
            opt(s.c_bytes, 2),
            opt(s.mbsu, 2),
            opt(s.ttft_ms, 0),
            s.identical.map_or("–".into(), |(a, b)| format!("{a}/{b}")),
            if bound > 0.0 {
                format!("{:.0}%", 100.0 * s.tok_s.median / bound)
            } else {
                "–".into()
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(set: &str, mode: &str, rep: usize, tokens: usize, secs: f64) -> RunRecord {
        RunRecord {
            set: set.into(),
            prompt: 0,
            rep,
            mode: mode.into(),
            tokens,
            decode_tok_s: (tokens - 1) as f64 / secs,
            decode_s: secs,
            prompt_tok_s: None,
            ttft_ms: Some(10.0),
            drafted: (mode != "target").then_some(10),
            accepted: (mode != "target").then_some(8),
            target_calls: (mode != "target").then_some(5),
            c_time: None,
            c_bytes: None,
            mbsu: None,
            identical: Some(true),
        }
    }

    #[test]
    fn speedups_pair_repetitions() {
        let runs = vec![
            run("code", "target", 0, 11, 1.0),
            run("code", "lookup", 0, 11, 0.5),
            run("code", "target", 1, 11, 2.0),
            run("code", "lookup", 1, 11, 0.5),
        ];
        let s = summarize(&runs);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].mode, "target");
        assert_eq!(s[0].tok_s.median, 7.5);
        let lookup = &s[1];
        // Rep 0: 20 vs 10 tok/s, rep 1: 20 vs 5.
        let sp = lookup.speedup.unwrap();
        assert_eq!((sp.min, sp.max, sp.median), (2.0, 4.0, 3.0));
        assert_eq!(lookup.alpha, Some(0.8));
        assert_eq!(lookup.tau, Some(2.0));
        assert_eq!(lookup.identical, Some((2, 2)));
        let table = summary_table(&s, 40.0);
        assert!(
            table.contains("| code | lookup | 20.0 | 3.00 (2.00–4.00) | 0.80 |"),
            "{table}"
        );
    }
}
