//! `edgespec replay`: what draft-length policies would reach on recorded
//! traces under cost profiles, without running a model.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use edgespec::draft::Trees;
use edgespec::ead::EadStats;
use edgespec::speculative::PolicyConfig;
use edgespec::DraftKind;
use edgespec_tools::bench::{load_runs, Mode, PeerMode};
use edgespec_tools::profile::CostProfile;
use edgespec_tools::replay::{regret, LlamaNgram, ReplayDrafter, ReplayRun, Replayer, Setting};
use edgespec_tools::trace::{load_traces, Trace};

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Trace file (`.jsonl` from `generate --trace` or `bench --trace`); one
    /// set per file. Repeatable.
    #[arg(short, long = "traces", required_unless_present = "runs")]
    traces: Vec<PathBuf>,
    /// Instead of traces: a benchmark's runs.jsonl whose EAD runs are priced
    /// under each profile (same decisions, the profile's pass times).
    #[arg(long, conflicts_with = "traces")]
    runs: Option<PathBuf>,
    /// Cost profile (JSON from `edgespec profile`, or profiles/*.json). Repeatable.
    #[arg(short = 'P', long = "profile", required = true)]
    profiles: Vec<PathBuf>,
    /// Comma-separated settings: target, model:N|auto, trimmed:N|auto,
    /// lookup:N|auto, hybrid:N|auto; `@pX` adds a p-min cut-off (model:8@p0.7);
    /// llama-ngram-mod and llama-ngram-map-k draft as llama.cpp's own n-gram
    /// modes do (default settings), never past the token limit; oracle-copy
    /// is the ceiling of copying the request's text, knowing the output.
    #[arg(
        short,
        long,
        default_value = "model:auto,model:3,trimmed:auto,trimmed:3,lookup:auto,hybrid:auto"
    )]
    modes: String,
    /// The target on a server this many milliseconds away: each profile's
    /// target passes cost one round trip more (its curve stands for the
    /// server's), its drafters stay on the board.
    #[arg(long, value_name = "MS", conflicts_with = "runs")]
    round_trip: Option<f64>,
    /// Longest model draft of the auto settings.
    #[arg(long, default_value_t = 8)]
    gamma_max: usize,
    /// Replay this trace file first in the same process (not reported): a
    /// long-running process that served other requests before.
    #[arg(long)]
    after: Option<PathBuf>,
    /// Also compare each drafter's automatic policy with its best fixed
    /// setting in hindsight.
    #[arg(long)]
    regret: bool,
    /// Print every prompt's row, not only each set's.
    #[arg(long)]
    per_prompt: bool,
}

fn parse_setting(text: &str, gamma_max: usize) -> anyhow::Result<Setting> {
    if text == "oracle-copy" {
        return Ok(Setting {
            drafter: ReplayDrafter::OracleCopy,
            config: PolicyConfig::default(),
        });
    }
    let (mode, p_min) = match text.split_once("@p") {
        Some((m, p)) => {
            let p: f32 = p
                .parse()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| anyhow::anyhow!("{text:?}: @p needs a probability in [0, 1]"))?;
            (m, Some(p))
        }
        None => (text, None),
    };
    let (drafter, length, trees) = match Mode::parse(mode, gamma_max)? {
        Mode::Target => (
            ReplayDrafter::None,
            edgespec::draft::DraftLength::Fixed(0),
            Trees::Off,
        ),
        Mode::Spec(kind, length, trees) => (
            match kind {
                DraftKind::Model => ReplayDrafter::Model("model".into()),
                DraftKind::Trimmed => ReplayDrafter::Model("trimmed".into()),
                DraftKind::Lookup => ReplayDrafter::Lookup,
                DraftKind::Hybrid => ReplayDrafter::Hybrid("model".into()),
                _ => anyhow::bail!(
                    "{text:?}: replay handles target, model, trimmed, lookup, hybrid, llama-ngram-mod, llama-ngram-map-k and oracle-copy"
                ),
            },
            length,
            trees,
        ),
        // llama.cpp's n-gram modes draft as the tool does, whatever the length.
        Mode::Peer(PeerMode::NgramMod) => (
            ReplayDrafter::Llama(LlamaNgram::Mod),
            edgespec::draft::DraftLength::Fixed(edgespec::draft::MAX_DRAFT),
            Trees::Off,
        ),
        Mode::Peer(PeerMode::NgramMapK) => (
            ReplayDrafter::Llama(LlamaNgram::MapK),
            edgespec::draft::DraftLength::Fixed(edgespec::draft::MAX_DRAFT),
            Trees::Off,
        ),
        _ => anyhow::bail!(
            "{text:?}: replay handles target, model, trimmed, lookup, hybrid, llama-ngram-mod, llama-ngram-map-k and oracle-copy"
        ),
    };
    let config = PolicyConfig {
        length,
        p_min,
        trees,
        exact: false,
    };
    config.validate()?;
    Ok(Setting { drafter, config })
}

fn set_name(path: &std::path::Path) -> String {
    path.file_stem()
        .map_or_else(|| "traces".into(), |s| s.to_string_lossy().into_owned())
}

/// Prices a benchmark's EAD runs under each profile: the small model's
/// passes on the profile's `model` drafter curve, the large model's on its
/// target curve, against large-only decoding of as many tokens.
fn price_ead_runs(path: &std::path::Path, profiles: &[CostProfile]) -> anyhow::Result<()> {
    let runs = load_runs(path)?.runs;
    println!("| profile | set | mode | ×large-only | worst prompt | large share |");
    println!("|---|---|---|---|---|---|");
    for profile in profiles {
        let small = profile.drafter("model")?.curve();
        let large = profile.target.curve();
        let mut cells: Vec<(String, String)> = Vec::new();
        for r in &runs {
            let key = (r.set.clone(), r.mode.clone());
            if r.ead_batches.is_some() && !cells.contains(&key) {
                cells.push(key);
            }
        }
        for (set, mode) in cells {
            let (mut ms, mut base, mut tokens, mut large_tokens) = (0.0, 0.0, 0, 0);
            let mut worst = f64::INFINITY;
            for r in runs.iter().filter(|r| r.set == set && r.mode == mode) {
                let Some([s, l]) = &r.ead_batches else {
                    continue;
                };
                let stats = EadStats {
                    small_batches: s.clone(),
                    large_batches: l.clone(),
                    small_tokens: r.tokens - r.large_tokens.unwrap_or(0),
                    large_tokens: r.large_tokens.unwrap_or(0),
                    ..EadStats::default()
                };
                let (run_ms, run_base) = stats.priced_ms(&small, &large);
                ms += run_ms;
                base += run_base;
                tokens += r.tokens;
                large_tokens += stats.large_tokens;
                if run_ms > 0.0 {
                    worst = worst.min(run_base / run_ms);
                }
            }
            println!(
                "| {} | {set} | {mode} | {:.2} | {worst:.2} | {:.0}% |",
                profile.name,
                if ms > 0.0 { base / ms } else { 0.0 },
                100.0 * large_tokens as f64 / tokens.max(1) as f64
            );
        }
    }
    Ok(())
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.runs {
        let profiles = args
            .profiles
            .iter()
            .map(|p| CostProfile::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        return price_ead_runs(path, &profiles);
    }
    let settings = args
        .modes
        .split(',')
        .map(|m| parse_setting(m.trim(), args.gamma_max))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let profiles = args
        .profiles
        .iter()
        .map(|p| {
            let profile = CostProfile::load(p)?;
            match args.round_trip {
                Some(ms) => profile.with_round_trip(ms),
                None => Ok(profile),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sets: Vec<(String, Vec<Trace>)> = args
        .traces
        .iter()
        .map(|p| Ok((set_name(p), load_traces(p)?)))
        .collect::<anyhow::Result<_>>()?;
    let warm_up = match &args.after {
        Some(p) => load_traces(p).with_context(|| format!("--after {}", p.display()))?,
        None => Vec::new(),
    };
    let after = args
        .after
        .as_deref()
        .map(|p| format!(" (after {})", set_name(p)))
        .unwrap_or_default();
    println!("| profile | set | setting | ×target | worst prompt | α | drafted | by model | drafting ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for profile in &profiles {
        for (set, traces) in &sets {
            for setting in &settings {
                let mut replayer = Replayer::new(setting, profile)?;
                for t in &warm_up {
                    replayer.run(t)?;
                }
                let runs = traces
                    .iter()
                    .map(|t| replayer.run(t))
                    .collect::<Result<Vec<_>, _>>()?;
                if args.per_prompt {
                    for (i, r) in runs.iter().enumerate() {
                        println!(
                            "|   | {set}#{i} | {} | {:.2} | | {:.2} | {} | {} | {:.0} |",
                            setting.name(),
                            r.speedup(),
                            r.accepted as f64 / r.drafted.max(1) as f64,
                            r.drafted,
                            r.model_drafted,
                            r.draft_ms
                        );
                    }
                }
                let total = ReplayRun::total(&runs);
                let (worst_i, worst) = runs.iter().map(ReplayRun::speedup).enumerate().fold(
                    (0, f64::INFINITY),
                    |a, (i, s)| if s < a.1 { (i, s) } else { a },
                );
                let alpha = if total.drafted > 0 {
                    format!("{:.2}", total.accepted as f64 / total.drafted as f64)
                } else {
                    "–".into()
                };
                println!(
                    "| {} | {set}{after} | {} | {:.2} | {:.2} (#{worst_i}) | {alpha} | {} | {} | {:.0} |",
                    profile.name,
                    setting.name(),
                    total.speedup(),
                    worst,
                    total.drafted,
                    total.model_drafted,
                    total.draft_ms
                );
            }
        }
    }
    if args.regret {
        println!();
        println!("| profile | set | drafter | auto | auto worst prompt | best fixed | its ×target | auto ÷ best |");
        println!("|---|---|---|---|---|---|---|---|");
        let drafters = [
            ReplayDrafter::Lookup,
            ReplayDrafter::Model("model".into()),
            ReplayDrafter::Model("trimmed".into()),
            ReplayDrafter::Hybrid("model".into()),
        ];
        for profile in &profiles {
            for (set, traces) in &sets {
                for drafter in &drafters {
                    let recorded = |kind: &str| {
                        profile.drafter(kind).is_ok()
                            && traces
                                .iter()
                                .chain(&warm_up)
                                .all(|t| t.drafters.contains_key(kind))
                    };
                    let available = match drafter {
                        ReplayDrafter::Model(kind) | ReplayDrafter::Hybrid(kind) => recorded(kind),
                        _ => true,
                    };
                    if !available {
                        continue;
                    }
                    let r = regret(drafter, args.gamma_max, profile, &warm_up, traces)?;
                    let name = Setting {
                        drafter: drafter.clone(),
                        config: PolicyConfig::default(),
                    }
                    .name();
                    println!(
                        "| {} | {set}{after} | {} | {:.3} | {:.3} | {} | {:.3} | {:.3} |",
                        profile.name,
                        name.trim_end_matches(":auto"),
                        r.auto,
                        r.auto_worst,
                        r.best,
                        r.best_speedup,
                        r.ratio()
                    );
                }
            }
        }
    }
    Ok(())
}
