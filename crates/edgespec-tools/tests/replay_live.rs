//! The replay simulator against the live loop: on a trace recorded from a
//! synthetic target/drafter pair, replaying a fixed draft length drafts and
//! accepts exactly what the live speculator does on the same prompt, for
//! the model, lookup and hybrid drafters and lookup trees (the trace's
//! top-3 tokens feeding recycled drafts); and the recorded drafts are what
//! the drafter proposes from each position.

use edgespec_testing as common;

use std::collections::BTreeMap;

use edgespec::draft::{Draft, DraftLength, DraftModel, Drafter, ModelDrafter, Trees};
use edgespec::engine::{Context, Sequence, Token};
use edgespec::generate::{generate_target_only, GenerateParams};
use edgespec::sampling::SamplingParams;
use edgespec::speculative::PolicyConfig;
use edgespec::synthetic::BOS;
use edgespec::{Session, SessionConfig};
use edgespec_tools::profile::{CostProfile, ModelCosts, PROFILE_VERSION};
use edgespec_tools::replay::{replay, ReplayDrafter, Setting};
use edgespec_tools::trace::{record_trace, DraftAll};

fn costs(points: &[(usize, f64)]) -> ModelCosts {
    ModelCosts {
        model: "synthetic".into(),
        batch_ms: points.iter().copied().collect::<BTreeMap<_, _>>(),
        step_ms: None,
    }
}

#[test]
fn replayed_fixed_lengths_draft_and_accept_what_the_live_loop_does() {
    let (_dir, target, small) = common::synthetic_pair();
    let prompt: Vec<Token> = vec![BOS, 310, 311, 312, 313, 314, 310, 311, 312];
    let n = 60;
    let greedy = SamplingParams::greedy();
    let new_drafter =
        || ModelDrafter::new(small.clone(), &common::ctx_params(400), greedy).unwrap();
    let mut ctx = Sequence::new(Context::new(target.clone(), &common::ctx_params(320)).unwrap());
    let mut recorder = new_drafter();
    let mut drafters: Vec<(String, String, &mut dyn Drafter)> =
        vec![("model".into(), "small".into(), &mut recorder)];
    let trace = record_trace(&mut ctx, &mut drafters, &prompt, n, 8).unwrap();
    trace.validate().unwrap();
    let expected =
        generate_target_only(&mut ctx, &prompt, &GenerateParams::greedy(n), |_, _| true).unwrap();
    assert_eq!(trace.output, expected.tokens);

    // Every 7th position: the drafter's own 8-token draft from there.
    let mut direct = new_drafter();
    for i in (0..trace.output.len() - 1).step_by(7) {
        let history: Vec<Token> = prompt.iter().chain(&trace.output[..=i]).copied().collect();
        let mut draft = Draft::default();
        direct.reset();
        direct
            .propose(&history, &mut DraftAll(8), &mut draft)
            .unwrap();
        let recorded: Vec<Token> = trace.drafters["model"].drafts[i]
            .tokens(&trace.output[i + 1..])
            .collect();
        assert_eq!(draft.tokens(), &recorded[..], "position {i}");
    }

    let profile = CostProfile {
        version: PROFILE_VERSION,
        name: "test".into(),
        machine: "test".into(),
        threads: 2,
        source: "test".into(),
        note: String::new(),
        target: costs(&[(1, 10.0), (2, 12.0), (4, 15.0), (9, 30.0), (65, 200.0)]),
        drafters: [("model".to_owned(), costs(&[(1, 3.0), (4, 5.0)]))].into(),
    };
    let (mut checked_model_rounds, mut checked_trees) = (false, false);
    for g in [1, 2, 3, 5] {
        for (kind, trees) in [
            ("model", Trees::Auto),
            ("lookup", Trees::Auto),
            ("hybrid", Trees::Auto),
            ("lookup", Trees::Always),
        ] {
            let mut live = Session::new(SessionConfig {
                policy: PolicyConfig {
                    length: DraftLength::Fixed(g),
                    trees,
                    ..PolicyConfig::default()
                },
                ..SessionConfig::new(target.clone(), common::ctx_params(320))
                    .with_drafter(kind.parse().unwrap(), Some(DraftModel::Full(small.clone())))
            })
            .unwrap();
            let run = live.generate(&prompt, n, |_, _| true).unwrap();
            assert_eq!(run.generation.tokens, trace.output, "{kind}:{g} {trees:?}");
            let setting = Setting {
                drafter: match kind {
                    "model" => ReplayDrafter::Model("model".into()),
                    "lookup" => ReplayDrafter::Lookup,
                    _ => ReplayDrafter::Hybrid("model".into()),
                },
                config: PolicyConfig {
                    length: DraftLength::Fixed(g),
                    p_min: None,
                    trees,
                    exact: false,
                },
            };
            let replayed = replay(&setting, &profile, std::slice::from_ref(&trace)).unwrap()[0];
            let spec = run.speculation.expect("a speculative session");
            let live_stats = (spec.drafted, spec.accepted, spec.target_calls);
            let replay_stats = (replayed.drafted, replayed.accepted, replayed.rounds);
            assert_eq!(
                live_stats, replay_stats,
                "{kind}:{g} {trees:?} (drafted, accepted, rounds)"
            );
            checked_model_rounds |= kind == "model" && replayed.model_drafted > 0;
            checked_trees |= spec.tree.rounds > 0;
        }
    }
    assert!(checked_model_rounds);
    assert!(checked_trees, "no tree was drafted");
}
