//! The regret test (pure, no model, deterministic): on the recorded traces
//! of the shipped prompt sets (benches/traces/tuning/), replayed under each
//! shipped cost profile (profiles/), the automatic draft-length policy of
//! every drafter reaches at least 0.97× the best fixed setting chosen in
//! hindsight for that set and profile (fixed γ 1..=8, and γ 8 with p_min
//! cut-offs), and at least 0.98× the target alone where no setting beats it
//! — in a fresh process and in one that served the code set first. On the
//! same traces, the default (hybrid) keeps up with llama.cpp's own n-gram
//! modes replayed at the same lengths and costs.

use std::path::{Path, PathBuf};

use edgespec::draft::DraftLength;
use edgespec::draft::{Trees, MAX_DRAFT};
use edgespec::speculative::PolicyConfig;
use edgespec_tools::profile::CostProfile;
use edgespec_tools::replay::{regret, replay, LlamaNgram, ReplayDrafter, ReplayRun, Setting};
use edgespec_tools::trace::{load_traces, Trace};

/// The workspace root (profiles/, benches/).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every shipped profile: a board's profile added to profiles/ joins the test.
fn profiles() -> Vec<CostProfile> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("profiles"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 3, "shipped profiles missing: {paths:?}");
    paths
        .iter()
        .map(|p| CostProfile::load(p).unwrap())
        .collect()
}

fn traces(set: &str) -> Vec<Trace> {
    let path = root().join(format!("benches/traces/tuning/{set}.jsonl"));
    load_traces(Path::new(&path)).unwrap()
}

/// The Spec-Bench development traces, one file a category.
fn specbench_sets() -> Vec<PathBuf> {
    let dir = root().join("benches/traces/tuning/specbench");
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    sets.sort();
    assert_eq!(sets.len(), 6, "Spec-Bench traces missing: {sets:?}");
    sets
}

const DRAFTERS: [&str; 4] = ["lookup", "model", "trimmed", "hybrid"];

fn drafter(name: &str) -> ReplayDrafter {
    match name {
        "lookup" => ReplayDrafter::Lookup,
        "hybrid" => ReplayDrafter::Hybrid("model".into()),
        kind => ReplayDrafter::Model(kind.into()),
    }
}

#[test]
fn auto_is_within_three_percent_of_the_best_fixed_setting_everywhere() {
    let code = traces("code");
    let chat = traces("chat");
    let scenarios: [(&str, &[Trace], &[Trace]); 3] = [
        ("code", &[], &code),
        ("chat", &[], &chat),
        ("chat after code", &code, &chat),
    ];
    let mut failures = Vec::new();
    for profile in profiles() {
        for (name, warm_up, set) in scenarios {
            for d in DRAFTERS {
                let r = regret(&drafter(d), 8, &profile, warm_up, set).unwrap();
                let line = format!(
                    "{} / {name} / {d}: auto {:.3}, best {} {:.3}, ratio {:.3}",
                    profile.name,
                    r.auto,
                    r.best,
                    r.best_speedup,
                    r.ratio()
                );
                println!("{line}");
                let ok = if r.best == "target" {
                    r.auto >= 0.98
                } else {
                    r.ratio() >= 0.97
                };
                if !ok {
                    failures.push(line);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Hybrid drafting is about as fast as the better of its parts alone under
/// the automatic policy, within 5 %. It was 8 % behind lookup alone on
/// code under the board-like profile (2.85× against 3.09×), most of it in
/// the first request, where the untried model drafter caught up on the
/// whole prompt, repaid over the token limit, before the policy saw that
/// lookup takes every other round. Beside free drafts, the model drafter
/// now repays its catch-up only over what the request is expected to run
/// from what it has run (issue 32), and hybrid equals lookup there.
#[test]
fn hybrid_is_at_least_as_fast_as_lookup_and_the_model_alone() {
    let auto = |d: &str| Setting {
        drafter: drafter(d),
        config: PolicyConfig {
            length: DraftLength::Auto { max: 8 },
            p_min: None,
            ..PolicyConfig::default()
        },
    };
    let mut failures = Vec::new();
    for profile in profiles() {
        for set in ["code", "chat"] {
            let t = traces(set);
            let speedup =
                |d: &str| ReplayRun::total(&replay(&auto(d), &profile, &t).unwrap()).speedup();
            let (hybrid, lookup, model) = (speedup("hybrid"), speedup("lookup"), speedup("model"));
            let line = format!(
                "{} / {set}: hybrid {hybrid:.3}, lookup {lookup:.3}, model {model:.3}",
                profile.name
            );
            println!("{line}");
            if hybrid < 0.95 * lookup.max(model) {
                failures.push(line);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Spec-Bench's six categories (three development questions each, MT-bench
/// both turns; benches/traces/tuning/specbench/, recorded with `bench
/// --trace` on the Xeon VM): under every shipped profile, in a fresh
/// process, the default (hybrid) and lookup reach at least 0.94× the
/// target alone on every category, and hybrid's worst prompt at least 0.80×.
/// The issue-32 bars are 0.98 and 0.90: QA is the gap (answers of 15-30
/// tokens, where two failed copy rounds cost 5 %, and under the board-like
/// profile an untried model drafter's first rounds in one answer cost 16 %).
#[test]
fn spec_bench_categories_stay_near_the_target_alone() {
    let sets = specbench_sets();
    let mut failures = Vec::new();
    for profile in profiles() {
        for path in &sets {
            let t = load_traces(path).unwrap();
            for d in ["hybrid", "lookup"] {
                let setting = Setting {
                    drafter: drafter(d),
                    config: PolicyConfig::default(),
                };
                let runs = replay(&setting, &profile, &t).unwrap();
                let total = ReplayRun::total(&runs).speedup();
                let worst = runs
                    .iter()
                    .map(ReplayRun::speedup)
                    .fold(f64::INFINITY, f64::min);
                let line = format!(
                    "{} / {} / {d}: {total:.3}, worst prompt {worst:.3}",
                    profile.name,
                    path.file_stem().unwrap().to_string_lossy()
                );
                println!("{line}");
                if total < 0.94 || worst < 0.80 {
                    failures.push(line);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The default against llama.cpp's own n-gram speculation (`ngram-mod`,
/// `ngram-map-k`, their default settings, replayed on the same tokens,
/// never past the token limit) on every tuning set and profile: its set
/// total is at least 0.94× the better of the two (QA, where neither drafts
/// and short answers leave a wrong draft no time to be repaid, is the
/// closest), and on code, where copying pays, at least as fast.
#[test]
fn the_default_keeps_up_with_llama_cpp_ngram_modes() {
    let mut sets: Vec<PathBuf> = ["code", "chat"]
        .iter()
        .map(|s| root().join(format!("benches/traces/tuning/{s}.jsonl")))
        .collect();
    sets.extend(specbench_sets());
    let speedup = |setting: &Setting, profile: &CostProfile, t: &[Trace]| {
        ReplayRun::total(&replay(setting, profile, t).unwrap()).speedup()
    };
    let mut failures = Vec::new();
    for profile in profiles() {
        for path in &sets {
            let set = path.file_stem().unwrap().to_string_lossy().into_owned();
            let t = load_traces(path).unwrap();
            let ours = speedup(
                &Setting {
                    drafter: drafter("hybrid"),
                    config: PolicyConfig::default(),
                },
                &profile,
                &t,
            );
            let llama = [LlamaNgram::Mod, LlamaNgram::MapK]
                .map(|mode| {
                    let setting = Setting {
                        drafter: ReplayDrafter::Llama(mode),
                        config: PolicyConfig {
                            length: DraftLength::Fixed(MAX_DRAFT),
                            p_min: None,
                            trees: Trees::Off,
                            exact: false,
                        },
                    };
                    speedup(&setting, &profile, &t)
                })
                .into_iter()
                .fold(0.0, f64::max);
            let line = format!(
                "{} / {set}: default {ours:.3}, llama.cpp's best n-gram mode {llama:.3}",
                profile.name
            );
            println!("{line}");
            let floor = if set == "code" { 1.0 } else { 0.94 };
            if ours < floor * llama {
                failures.push(line);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A remote target (issue 35): on every shipped profile with its target a
/// round trip away, the default's speed-up over the remote target alone
/// grows from 0 to 30 ms on code, and so do its tokens a target pass
/// (round trip): the policy prices the network through the passes it
/// measures, so a dearer pass makes longer drafts pay. Where batches are
/// dear (the compute-bound profile) they grow by more than 5 %; where
/// copies already run as long as their matches allow they stay within 1 %.
#[test]
fn drafts_grow_with_a_remote_targets_round_trip() {
    let code = traces("code");
    let setting = Setting {
        drafter: drafter("hybrid"),
        config: PolicyConfig::default(),
    };
    let mut growth = Vec::new();
    for profile in profiles() {
        let at = |ms: f64| {
            let far = profile.clone().with_round_trip(ms).unwrap();
            let run = ReplayRun::total(&replay(&setting, &far, &code).unwrap());
            (run.tokens as f64 / run.rounds as f64, run.speedup())
        };
        let ((near_len, near_speedup), (far_len, far_speedup)) = (at(0.0), at(30.0));
        assert!(
            far_len >= 0.99 * near_len && far_speedup > near_speedup,
            "{}: {near_len:.2} tokens a pass and {near_speedup:.2}x at 0 ms, \
             {far_len:.2} and {far_speedup:.2}x at 30 ms",
            profile.name
        );
        growth.push((profile.name.clone(), far_len / near_len));
    }
    assert!(
        growth
            .iter()
            .any(|(name, g)| name.contains("compute-bound") && *g > 1.05),
        "{growth:?}"
    );
}
