//! Issue 16, concurrency: eight sessions on eight threads share one target
//! and one drafter (oversubscribed on a small machine), each generating in
//! a loop; every output equals the same session's output run alone.
//! `EDGESPEC_CONCURRENCY_SECS` sets how long the threads run (default 5;
//! the closing note of issue 16 reports a run of several minutes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgespec::draft::{DraftLength, DraftModel};
use edgespec::engine::{ContextParams, Model, Token};
use edgespec::synthetic::BOS;
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};

use edgespec_testing as common;

const KINDS: [DraftKind; 4] = [
    DraftKind::None,
    DraftKind::Lookup,
    DraftKind::Model,
    DraftKind::Hybrid,
];

fn session(target: &Arc<Model>, drafter: &Arc<Model>, kind: DraftKind) -> Session {
    Session::new(SessionConfig {
        policy: PolicyConfig {
            length: DraftLength::Fixed(3),
            ..PolicyConfig::default()
        },
        ..SessionConfig::new(
            target.clone(),
            ContextParams {
                n_threads: 1,
                n_threads_batch: 1,
                ..common::ctx_params(256)
            },
        )
        .with_drafter(kind, Some(DraftModel::Full(drafter.clone())))
    })
    .unwrap()
}

fn prompts() -> Vec<Vec<Token>> {
    vec![
        vec![BOS, 300, 301, 302, 300, 301],
        vec![BOS, 270],
        vec![BOS, 310, 311, 312, 313, 314, 310, 311],
        vec![BOS, 290, 291, 290, 291, 290],
    ]
}

#[test]
fn eight_sessions_on_eight_threads_equal_their_runs_alone() {
    let (_dir, target, drafter) = common::synthetic_pair();
    let secs: u64 = std::env::var("EDGESPEC_CONCURRENCY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let max_tokens = 40;
    // Alone: each kind on each prompt.
    let alone: Vec<Vec<Vec<Token>>> = KINDS
        .iter()
        .map(|&kind| {
            let mut s = session(&target, &drafter, kind);
            prompts()
                .iter()
                .map(|p| {
                    s.generate(p, max_tokens, |_, _| true)
                        .unwrap()
                        .generation
                        .tokens
                })
                .collect()
        })
        .collect();
    let alone = Arc::new(alone);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (target, drafter, alone) = (target.clone(), drafter.clone(), alone.clone());
            std::thread::spawn(move || {
                let k = i % KINDS.len();
                let mut s = session(&target, &drafter, KINDS[k]);
                let prompts = prompts();
                let mut generations = 0usize;
                while generations < prompts.len() || Instant::now() < deadline {
                    let p = (i + generations) % prompts.len();
                    let got = s.generate(&prompts[p], max_tokens, |_, _| true).unwrap();
                    assert_eq!(
                        got.generation.tokens, alone[k][p],
                        "thread {i} ({:?}), prompt {p}, generation {generations}",
                        KINDS[k]
                    );
                    generations += 1;
                }
                generations
            })
        })
        .collect();
    let counts: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!(
        "8 threads for {secs} s: {} generations ({counts:?}), all equal to their runs alone",
        counts.iter().sum::<usize>()
    );
}
