//! The central property: greedy speculative output equals greedy
//! target-only output token for token, for every drafter kind and at every
//! limit; sampling keeps the target's distribution.

use edgespec_testing as common;

use std::sync::Arc;

use edgespec::draft::{DraftLength, DraftModel, LookupDrafter, Trees, VocabError};
use edgespec::engine::{Model, Token};
use edgespec::error::GenerateError;
use edgespec::generate::{prompt_tokens, GenerateParams, Generation, Piece, StopReason};
use edgespec::sampling::{Penalties, SamplingParams};
use edgespec::synthetic::BOS;
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};

const KINDS: [DraftKind; 3] = [DraftKind::Model, DraftKind::Lookup, DraftKind::Hybrid];

/// A session of `kind` drafting with `drafter`, the way every front end builds one.
fn session(
    target: &Arc<Model>,
    kind: DraftKind,
    drafter: Option<DraftModel>,
    length: DraftLength,
    n_ctx: u32,
    params: &GenerateParams,
) -> Result<Session, GenerateError> {
    Session::new(SessionConfig {
        lookup: LookupDrafter::new(1, 3),
        hybrid_min_ngram: 2,
        policy: PolicyConfig {
            length,
            ..PolicyConfig::default()
        },
        sampling: params.sampling,
        ignore_eos: params.ignore_eos,
        ..SessionConfig::new(target.clone(), common::ctx_params(n_ctx)).with_drafter(kind, drafter)
    })
}

fn speculate(
    target: &Arc<Model>,
    draft_model: &Arc<Model>,
    kind: DraftKind,
    length: DraftLength,
    n_ctx: u32,
    prompt: &[Token],
    params: &GenerateParams,
) -> (Generation, edgespec::metrics::SpecStats) {
    let drafter = Some(DraftModel::Full(draft_model.clone()));
    let mut s = session(target, kind, drafter, length, n_ctx, params).unwrap();
    let mut streamed = Vec::new();
    let r = s
        .generate(prompt, params.max_tokens, |piece, _| {
            if let Piece::Token(t) = piece {
                streamed.push(t);
            }
            true
        })
        .unwrap();
    // What the callback saw is exactly what was generated: nothing lost or repeated.
    assert_eq!(streamed, r.generation.tokens);
    (r.generation, r.speculation.expect("a speculative session"))
}

fn target_only(
    target: &Arc<Model>,
    n_ctx: u32,
    prompt: &[Token],
    params: &GenerateParams,
) -> Generation {
    let mut s = session(
        target,
        DraftKind::None,
        None,
        DraftLength::Fixed(0),
        n_ctx,
        params,
    )
    .unwrap();
    let r = s.generate(prompt, params.max_tokens, |_, _| true).unwrap();
    assert!(r.speculation.is_none() && r.ead.is_none());
    r.generation
}

/// Every kind and draft length against target-only, on one prompt.
fn assert_all_equal(
    target: &Arc<Model>,
    draft_model: &Arc<Model>,
    n_ctx: u32,
    prompt: &[Token],
    max_tokens: usize,
) -> Generation {
    let params = GenerateParams::greedy(max_tokens);
    assert_all_equal_with(target, draft_model, n_ctx, prompt, &params)
}

/// [`assert_all_equal`] with other (greedy) settings.
fn assert_all_equal_with(
    target: &Arc<Model>,
    draft_model: &Arc<Model>,
    n_ctx: u32,
    prompt: &[Token],
    params: &GenerateParams,
) -> Generation {
    let params = params.clone();
    let expected = target_only(target, n_ctx, prompt, &params);
    for kind in KINDS {
        for length in [
            DraftLength::Fixed(1),
            DraftLength::Fixed(4),
            DraftLength::Fixed(7),
            DraftLength::Auto { max: 8 },
        ] {
            let (got, spec) = speculate(target, draft_model, kind, length, n_ctx, prompt, &params);
            assert_eq!(
                got.tokens, expected.tokens,
                "{kind:?} {length:?}: tokens differ"
            );
            assert_eq!(got.text, expected.text, "{kind:?} {length:?}");
            assert_eq!(got.stop, expected.stop, "{kind:?} {length:?}");
            assert!(spec.accepted <= spec.drafted);
            assert!(spec.target_calls <= got.tokens.len().max(1));
        }
    }
    expected
}

#[test]
fn synthetic_pair_greedy_equals_target_only() {
    let (_dir, target, draft) = common::synthetic_pair();
    for prompt in [
        vec![BOS, 300, 301, 302, 300, 301],
        vec![BOS, 270],
        vec![BOS, 310, 311, 312, 313, 314, 310, 311],
    ] {
        assert_all_equal(&target, &draft, 256, &prompt, 60);
    }
}

#[test]
fn clearing_a_speculator_empties_its_caches_and_keeps_its_output() {
    let (_dir, target, draft) = common::synthetic_pair();
    let params = GenerateParams::greedy(20);
    let prompt = [BOS, 300, 301, 302];
    let drafter = Some(DraftModel::Full(draft.clone()));
    let auto = DraftLength::Auto { max: 8 };
    let mut s = session(&target, DraftKind::Model, drafter, auto, 256, &params).unwrap();
    let first = s.generate(&prompt, params.max_tokens, |_, _| true).unwrap();
    assert!(s.target().n_past() > 0);
    s.clear();
    assert_eq!(s.target().n_past(), 0);
    let again = s.generate(&prompt, params.max_tokens, |_, _| true).unwrap();
    assert_eq!(again.generation.tokens, first.generation.tokens);
}

#[test]
fn synthetic_drafting_for_itself_accepts_everything() {
    let (_dir, target, _) = common::synthetic_pair();
    let params = GenerateParams::greedy(40);
    let (g, spec) = speculate(
        &target,
        &target,
        DraftKind::Model,
        DraftLength::Fixed(4),
        256,
        &[BOS, 300, 301],
        &params,
    );
    assert_eq!(
        g.tokens,
        target_only(&target, 256, &[BOS, 300, 301], &params).tokens
    );
    assert_eq!(spec.accepted, spec.drafted);
    assert!(spec.drafted > 0);
}

#[test]
fn limits_token_count_and_context_match_target_only() {
    let (_dir, target, draft) = common::synthetic_pair();
    let prompt = [BOS, 300, 301, 302, 300, 301, 302, 300];
    // -n limits that fall inside a draft, and 0 (no token in any mode).
    for n in [0, 1, 2, 3, 5, 9] {
        let g = assert_all_equal(&target, &draft, 256, &prompt, n);
        assert!(g.tokens.len() <= n);
    }
    // A context window that fills mid-draft: 8 prompt tokens in 20 positions.
    let g = assert_all_equal(&target, &draft, 20, &prompt, 100);
    if g.stop == StopReason::ContextFull {
        assert_eq!(g.tokens.len(), 20 - prompt.len() + 1);
    }
}

#[test]
fn smollm2_greedy_equals_target_only_for_every_drafter() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = Model::load(&path, &Default::default()).unwrap();
    let prompts = [
        "What is the capital of France? Answer in one word.",
        "Write a Python function that returns the n-th Fibonacci number, then call it for n = 10.",
        "Repeat exactly: the quick brown fox jumps over the lazy dog. the quick brown fox jumps over the lazy dog.",
    ];
    for (i, text) in prompts.iter().enumerate() {
        let prompt = prompt_tokens(&model, text, true).unwrap();
        let g = assert_all_equal(&model, &model, 1024, &prompt, 48);
        if i == 0 {
            // Drafts ran into the end-of-generation token.
            assert_eq!(g.stop, StopReason::EndOfGeneration);
        }
    }
    // A context window that fills during generation.
    let prompt = prompt_tokens(&model, prompts[1], true).unwrap();
    let n_ctx = prompt.len() as u32 + 10;
    let g = assert_all_equal(&model, &model, n_ctx, &prompt, 100);
    assert_eq!(g.stop, StopReason::ContextFull);
    assert_eq!(g.tokens.len(), 11);
}

/// Greedy decoding with repetition penalties: every draft token is judged
/// after the committed tokens and the draft tokens before it, as plain
/// decoding would have seen them (a verification that forgot the draft's
/// own tokens would pick other tokens where a draft repeats itself).
#[test]
fn greedy_with_penalties_equals_target_only_for_every_drafter() {
    // A short window: whether a token counts depends on the draft tokens
    // just before it, not only on committed ones.
    let penalised = |max_tokens, last_n| GenerateParams {
        sampling: SamplingParams {
            penalties: Penalties {
                repeat: 1.5,
                frequency: 0.5,
                presence: 0.5,
                last_n,
            },
            ..SamplingParams::greedy()
        },
        ..GenerateParams::greedy(max_tokens)
    };
    let changes_output = |target: &Arc<Model>, prompt: &[Token], g: &Generation| {
        let plain = target_only(
            target,
            1024,
            prompt,
            &GenerateParams::greedy(g.tokens.len()),
        );
        assert_ne!(plain.tokens, g.tokens, "the penalties changed nothing");
    };
    let (_dir, target, draft) = common::synthetic_pair();
    let prompt = [BOS, 300, 301, 302, 300, 301, 302, 300, 301];
    let g = assert_all_equal_with(&target, &draft, 256, &prompt, &penalised(60, 8));
    changes_output(&target, &prompt, &g);
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = Model::load(&path, &Default::default()).unwrap();
    let text = "Repeat exactly: the quick brown fox jumps over the lazy dog. the quick brown fox jumps over the lazy dog.";
    let prompt = prompt_tokens(&model, text, true).unwrap();
    // A window of 8 tokens leaves this copy's output as it is, but drafts
    // judged without their own earlier tokens would change it; a window of
    // 16 changes the output.
    assert_all_equal_with(&model, &model, 1024, &prompt, &penalised(48, 8));
    let g = assert_all_equal_with(&model, &model, 1024, &prompt, &penalised(48, 16));
    changes_output(&model, &prompt, &g);
}

/// Sampling with every stage of the chain (penalties, top-k, min-p,
/// temperature) keeps the target's distribution through verification.
#[test]
fn speculative_sampling_with_the_full_chain_keeps_the_target_distribution() {
    let (_dir, target, draft) = common::synthetic_pair();
    let params = GenerateParams {
        max_tokens: 2,
        sampling: common::full_chain_sampling(0),
        ignore_eos: true,
        reuse_prefix: false,
        grammar: None,
        stops: Vec::new(),
    };
    for kind in [DraftKind::Model, DraftKind::Hybrid] {
        let drafter = Some(DraftModel::Full(draft.clone()));
        let fixed = DraftLength::Fixed(3);
        let mut s = session(&target, kind, drafter, fixed, 64, &params).unwrap();
        common::assert_session_keeps_target_distribution(
            &target,
            &mut s,
            &common::full_chain_sampling,
        );
    }
}

/// Mirostat 2.0 keeps the target's distribution through verification:
/// μ advances along the accepted draft tokens as plain decoding would move
/// it. The third token is checked: the second one verified in a round, its
/// row computed after the first draft token was accepted (η = 1 makes its
/// distribution depend on that).
#[test]
fn speculative_mirostat_keeps_the_target_distribution() {
    let (_dir, target, _) = common::synthetic_pair();
    let params = GenerateParams {
        max_tokens: 3,
        sampling: common::mirostat_sampling(0),
        ignore_eos: true,
        reuse_prefix: false,
        grammar: None,
        stops: Vec::new(),
    };
    // The target drafting for itself: drafts are often accepted, so the
    // third token's row often follows an accepted draft token.
    let drafter = Some(DraftModel::Full(target.clone()));
    let fixed = DraftLength::Fixed(4);
    let mut s = session(&target, DraftKind::Model, drafter, fixed, 64, &params).unwrap();
    common::assert_session_keeps_nth_token_distribution(
        &target,
        &mut s,
        &common::mirostat_sampling,
        None,
        3,
        3000,
    );
}

#[test]
fn ignore_eos_speculation_equals_target_only() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = Model::load(&path, &Default::default()).unwrap();
    let prompt = prompt_tokens(&model, "Say hi.", true).unwrap();
    let params = GenerateParams {
        ignore_eos: true,
        ..GenerateParams::greedy(40)
    };
    let expected = target_only(&model, 512, &prompt, &params);
    assert_eq!(expected.tokens.len(), 40);
    for kind in KINDS {
        let (g, _) = speculate(
            &model,
            &model,
            kind,
            DraftLength::Fixed(4),
            512,
            &prompt,
            &params,
        );
        assert_eq!(g.tokens, expected.tokens, "{kind:?}");
    }
}

#[test]
fn mismatched_vocabularies_are_rejected() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let smol = Model::load(&path, &Default::default()).unwrap();
    let (_dir, synthetic, _) = common::synthetic_pair();
    let params = GenerateParams::greedy(4);
    let auto = DraftLength::Auto { max: 8 };
    let err = session(
        &synthetic,
        DraftKind::Model,
        Some(DraftModel::Full(smol.clone())),
        auto,
        64,
        &params,
    )
    .err()
    .unwrap();
    assert!(
        matches!(
            err,
            GenerateError::Vocab(VocabError::TooLarge { drafter: 49152, .. })
        ),
        "{err}"
    );
    let err = session(
        &smol,
        DraftKind::Hybrid,
        Some(DraftModel::Full(synthetic.clone())),
        auto,
        64,
        &params,
    )
    .err()
    .unwrap();
    match err {
        GenerateError::Vocab(VocabError::Mismatch { id, .. }) => {
            assert_eq!(id, 0, "first differing id")
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn bad_settings_are_rejected_before_anything_runs() {
    let (_dir, target, draft) = common::synthetic_pair();
    let params = GenerateParams::greedy(4);
    let draft = Some(DraftModel::Full(draft));
    let err = |kind, drafter: Option<DraftModel>, length| {
        session(&target, kind, drafter, length, 64, &params)
            .err()
            .unwrap()
    };
    assert!(matches!(
        err(DraftKind::Lookup, None, DraftLength::Fixed(1_000_000)),
        GenerateError::Policy(_)
    ));
    assert!(matches!(
        err(
            DraftKind::EadSpec,
            draft.clone(),
            DraftLength::Auto { max: 0 }
        ),
        GenerateError::Policy(_)
    ));
    for kind in [
        DraftKind::Model,
        DraftKind::Hybrid,
        DraftKind::Trimmed,
        DraftKind::Ead,
    ] {
        assert!(matches!(
            err(kind, None, DraftLength::Fixed(2)),
            GenerateError::MissingDrafter(k) if k == kind
        ));
    }
    assert!(matches!(
        err(DraftKind::Trimmed, draft, DraftLength::Fixed(2)),
        GenerateError::NotTrimmed
    ));
    let huge = Session::new(SessionConfig::new(
        target.clone(),
        common::ctx_params(u32::MAX),
    ));
    assert!(matches!(huge.err(), Some(GenerateError::Engine(_))));
}

/// End to end with sampling: the second generated token (the first one that
/// goes through draft verification) follows the target's own distribution.
/// (The same with a VocabTrim drafter is in the tools' VocabTrim tests.)
#[test]
fn speculative_sampling_keeps_the_target_distribution_end_to_end() {
    let (_dir, target, draft) = common::synthetic_pair();
    let params = GenerateParams {
        max_tokens: 2,
        sampling: common::top4_sampling(0),
        ignore_eos: true,
        reuse_prefix: false,
        grammar: None,
        stops: Vec::new(),
    };
    let drafter = Some(DraftModel::Full(draft));
    let fixed = DraftLength::Fixed(3);
    let mut s = session(&target, DraftKind::Model, drafter, fixed, 64, &params).unwrap();
    common::assert_session_keeps_target_distribution(&target, &mut s, &common::top4_sampling);
}

#[test]
fn long_lookup_drafts_stay_lossless() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = Model::load(&path, &Default::default()).unwrap();
    // Copying text: lookup finds long spans. A fixed length of 24 makes
    // every match draft up to 24 tokens on any machine (how long the
    // automatic policy drafts depends on the measured costs; its choices
    // are tested on the pure policy and in replay).
    let text = "Copy this paragraph three times, word for word: Speculative decoding \
                lets a small drafter propose several tokens that the large model \
                checks in one batch, keeping every token the large model agrees with.";
    let prompt = prompt_tokens(&model, text, true).unwrap();
    let params = GenerateParams::greedy(120);
    let expected = target_only(&model, 1024, &prompt, &params);
    let (got, spec) = speculate(
        &model,
        &model,
        DraftKind::Lookup,
        DraftLength::Fixed(24),
        1024,
        &prompt,
        &params,
    );
    assert_eq!(got.tokens, expected.tokens);
    assert!(
        spec.longest_draft > 8,
        "longest draft {}: no long draft was verified",
        spec.longest_draft
    );
    assert_eq!(spec.lookup.drafted, spec.drafted);
}

/// Free drafts from the memory of earlier outputs and from recycled target
/// candidates: the same greedy output as the target alone, request after
/// request of one session (the memory and the successor table grow), and
/// each source drafted and was accepted.
#[test]
fn drafts_from_earlier_outputs_and_recycled_candidates_stay_lossless() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = Model::load(&path, &Default::default()).unwrap();
    let params = GenerateParams::greedy(64);
    // Matches of two tokens or more (the default): recycled candidates
    // draft where there is none.
    let mut s = Session::new(SessionConfig {
        policy: PolicyConfig {
            length: DraftLength::Fixed(6),
            ..PolicyConfig::default()
        },
        ..SessionConfig::new(model.clone(), common::ctx_params(1024))
            .with_drafter(DraftKind::Lookup, None)
    })
    .unwrap();
    let mut totals = edgespec::metrics::SpecStats::default();
    // The second request asks the first again: its answer is in the memory.
    for text in [
        "Name three colours of the rainbow and say one thing about each.",
        "Name three colours of the rainbow and say one thing about each.",
        "Write a haiku about a quiet harbour at dawn.",
    ] {
        let prompt = prompt_tokens(&model, text, true).unwrap();
        let expected = target_only(&model, 1024, &prompt, &params);
        let r = s.generate(&prompt, params.max_tokens, |_, _| true).unwrap();
        assert_eq!(r.generation.tokens, expected.tokens, "{text}");
        let spec = r.speculation.unwrap();
        for (total, source) in [
            (&mut totals.memory, spec.memory),
            (&mut totals.recycled, spec.recycled),
        ] {
            total.add_round(source.drafted, source.accepted, source.verify_time);
        }
    }
    assert!(totals.memory.accepted > 0, "memory: {:?}", totals.memory);
    assert!(
        totals.recycled.accepted > 0,
        "recycled: {:?}",
        totals.recycled
    );
    // The memory holds the outputs; forgetting empties it.
    let held = s.lookup_memory().unwrap().tokens().len();
    assert!(held > 64, "{held} tokens remembered");
    s.forget_outputs();
    assert!(s.lookup_memory().unwrap().tokens().is_empty());
}

/// Draft trees (every branch the lookup drafter offers): the same greedy
/// output as the target alone, with tokens accepted on branches.
#[test]
fn draft_trees_stay_lossless() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = Model::load(&path, &Default::default()).unwrap();
    let params = GenerateParams::greedy(96);
    let mut s = Session::new(SessionConfig {
        lookup: LookupDrafter::new(1, 3),
        policy: PolicyConfig {
            trees: Trees::Always,
            ..PolicyConfig::default()
        },
        ..SessionConfig::new(model.clone(), common::ctx_params(1024))
            .with_drafter(DraftKind::Lookup, None)
    })
    .unwrap();
    let (mut trees, mut branch_accepted) = (0, 0);
    for text in [
        "List the days of the week, then list them again in reverse order.",
        "Write a Python function that returns the squares of 1 to 10, and a second one for the cubes.",
        "Name three colours of the rainbow and say one thing about each.",
    ] {
        let prompt = prompt_tokens(&model, text, true).unwrap();
        let expected = target_only(&model, 1024, &prompt, &params);
        let r = s.generate(&prompt, params.max_tokens, |_, _| true).unwrap();
        assert_eq!(r.generation.tokens, expected.tokens, "{text}");
        let spec = r.speculation.unwrap();
        trees += spec.tree.rounds;
        branch_accepted += spec.branch_accepted;
    }
    assert!(trees > 0, "no tree was drafted");
    assert!(
        branch_accepted > 0,
        "nothing accepted on a branch in {trees} trees"
    );
}

/// Deterministic free drafts (earlier outputs, recycled candidates, the
/// request's own text) under sampling keep the target's distribution: the
/// session keeps its memory and successors across the 1500 runs, so the
/// third token is judged after drafts from all of them.
#[test]
fn free_drafts_keep_the_target_distribution() {
    let (_dir, target, _) = common::synthetic_pair();
    let params = GenerateParams {
        max_tokens: 3,
        sampling: common::top4_sampling(0),
        ignore_eos: true,
        reuse_prefix: false,
        grammar: None,
        stops: Vec::new(),
    };
    for trees in [Trees::Off, Trees::Always] {
        let mut s = Session::new(SessionConfig {
            lookup: LookupDrafter::new(1, 3),
            policy: PolicyConfig {
                length: DraftLength::Auto { max: 8 },
                trees,
                exact: false,
                p_min: None,
            },
            sampling: params.sampling,
            ignore_eos: true,
            ..SessionConfig::new(target.clone(), common::ctx_params(64))
                .with_drafter(DraftKind::Lookup, None)
        })
        .unwrap();
        common::assert_session_keeps_nth_token_distribution(
            &target,
            &mut s,
            &common::top4_sampling,
            None,
            3,
            1500,
        );
        let r = s
            .generate(&[edgespec::synthetic::BOS, 300, 301, 302], 8, |_, _| true)
            .unwrap();
        let spec = r.speculation.unwrap();
        assert!(
            spec.memory.rounds + spec.recycled.rounds > 0,
            "no draft from the memory or recycled candidates: {spec:?}"
        );
        if trees == Trees::Always {
            assert!(spec.tree.rounds > 0, "no tree: {spec:?}");
        }
    }
}

/// Free drafts are not samples: under sampling each position draws the
/// target's token as plain decoding does, so with the same seed the text
/// is target-only's whatever was drafted (here request after request of
/// one session, its memory and successors growing).
#[test]
fn sampling_with_free_drafts_gives_the_target_only_text_of_the_seed() {
    let (_dir, target, _) = common::synthetic_pair();
    let prompt = [edgespec::synthetic::BOS, 300, 301, 302];
    let params = |seed| GenerateParams {
        max_tokens: 40,
        sampling: common::top4_sampling(seed),
        ignore_eos: true,
        reuse_prefix: false,
        grammar: None,
        stops: Vec::new(),
    };
    for trees in [Trees::Off, Trees::Always] {
        let mut s = Session::new(SessionConfig {
            lookup: LookupDrafter::new(1, 3),
            policy: PolicyConfig {
                length: DraftLength::Auto { max: 4 },
                trees,
                exact: false,
                p_min: None,
            },
            sampling: params(0).sampling,
            ignore_eos: true,
            ..SessionConfig::new(target.clone(), common::ctx_params(128))
                .with_drafter(DraftKind::Lookup, None)
        })
        .unwrap();
        let (mut drafted, mut trees_drafted) = (0, 0);
        for seed in 0..12 {
            let expected = target_only(&target, 128, &prompt, &params(seed));
            s.reseed(seed);
            let r = s.generate(&prompt, 40, |_, _| true).unwrap();
            assert_eq!(
                r.generation.tokens, expected.tokens,
                "seed {seed} {trees:?}"
            );
            let spec = r.speculation.unwrap();
            drafted += spec.drafted;
            trees_drafted += spec.tree.rounds;
        }
        assert!(drafted > 0);
        assert_eq!(trees_drafted > 0, trees == Trees::Always);
    }
}
