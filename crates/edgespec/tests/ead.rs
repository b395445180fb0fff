//! Entropy-adaptive decoding: every token comes from the model the policy
//! put in charge, switching loses and repeats nothing, catch-up leaves each
//! context as a fresh one, and ead-spec is lossless in large-model regions.

use edgespec_testing as common;

use std::sync::Arc;

use edgespec::draft::{DraftLength, DraftLengthError};
use edgespec::ead::{Ead, EadConfig, EadConfigError, EadGeneration, Who};
use edgespec::engine::{Context, Logits, Model, Sequence, Token};
use edgespec::error::GenerateError;
use edgespec::generate::{generate_target_only, prompt_tokens, GenerateParams, Piece, StopReason};
use edgespec::sampling::argmax;
use edgespec::speculative::PolicyError;
use edgespec::synthetic::BOS;

fn ead(
    small: &Arc<Model>,
    large: &Arc<Model>,
    config: EadConfig,
    length: DraftLength,
    n_ctx: u32,
    prompt: &[Token],
    params: &GenerateParams,
) -> (EadGeneration, (Vec<Token>, String), Ead) {
    let s = Context::new(small.clone(), &common::ctx_params(n_ctx)).unwrap();
    let l = Context::new(large.clone(), &common::ctx_params(n_ctx)).unwrap();
    let mut engine = Ead::new(s, l, config, length).unwrap();
    let mut streamed = (Vec::new(), String::new());
    let g = engine
        .generate(prompt, params, |piece, text| {
            // The end carries the text stream's final flush, not a token.
            if let Piece::Token(t) = piece {
                streamed.0.push(t);
            }
            streamed.1.push_str(text);
            true
        })
        .unwrap();
    (g, streamed, engine)
}

/// Each model's greedy choice after every prefix of `sequence` from
/// `from` on, fed one token at a time to a fresh context.
fn greedy_choices(model: &Arc<Model>, sequence: &[Token], from: usize) -> Vec<Token> {
    let mut ctx = Context::new(model.clone(), &common::ctx_params(512)).unwrap();
    ctx.decode(&sequence[..from], Logits::Last).unwrap();
    let mut out = vec![argmax(ctx.logits(0).unwrap())];
    for &t in &sequence[from..sequence.len() - 1] {
        ctx.decode(&[t], Logits::Last).unwrap();
        out.push(argmax(ctx.logits(0).unwrap()));
    }
    out
}

/// Thresholds from 0 (large model as soon as anything is uncertain) to
/// unreachable, with several around the small model's own mean entropy on
/// `prompt` (measured with the small model alone) so both models take turns.
fn thresholds(small: &Arc<Model>, large: &Arc<Model>, prompt: &[Token]) -> Vec<f64> {
    let params = GenerateParams::greedy(60);
    let (g, _, _) = ead(
        small,
        large,
        config(1e9),
        DraftLength::Fixed(0),
        256,
        prompt,
        &params,
    );
    let h = g.stats.mean_entropy_bits;
    assert!(h > 0.0);
    let mut t = vec![0.0, 1e9];
    t.extend([0.8, 0.9, 0.95, 1.0, 1.05, 1.1].map(|f| f * h));
    t
}

fn config(threshold_bits: f64) -> EadConfig {
    EadConfig {
        threshold_bits,
        window: 3,
        min_dwell: 2,
        large_share: None,
        fallback: false,
    }
}

#[test]
fn every_token_comes_from_the_model_in_charge() {
    let (_dir, large, small) = common::synthetic_pair();
    let prompt = [BOS, 300, 301, 302, 300, 301];
    let params = GenerateParams::greedy(60);
    let mut mixed = 0;
    for tau in thresholds(&small, &large, &prompt) {
        for gamma in [0, 1, 4] {
            let (g, streamed, _) = ead(
                &small,
                &large,
                config(tau),
                DraftLength::Fixed(gamma),
                256,
                &prompt,
                &params,
            );
            let tokens = &g.generation.tokens;
            // What the user received is the committed sequence, once each.
            assert_eq!(&streamed.0, tokens, "τ {tau} γ {gamma}");
            assert_eq!(streamed.1, g.generation.text);
            assert_eq!(g.sources.len(), tokens.len());
            let large_n = g.sources.iter().filter(|&&w| w == Who::Large).count();
            assert_eq!(g.stats.large_tokens, large_n);
            assert_eq!(g.stats.small_tokens, tokens.len() - large_n);
            let sequence: Vec<Token> = prompt.iter().chain(tokens).copied().collect();
            let by_small = greedy_choices(&small, &sequence, prompt.len());
            let by_large = greedy_choices(&large, &sequence, prompt.len());
            for (i, &t) in tokens.iter().enumerate() {
                let expected = match g.sources[i] {
                    Who::Small => by_small[i],
                    Who::Large => by_large[i],
                };
                assert_eq!(
                    t, expected,
                    "τ {tau} γ {gamma} token {i} by {:?}",
                    g.sources[i]
                );
            }
            if tau == 1e9 {
                assert_eq!(large_n, 0, "an unreachable threshold keeps the small model");
            }
            if large_n > 0 && large_n < tokens.len() {
                mixed += 1;
                assert!(g.stats.switches > 0);
            }
            if gamma > 0 {
                assert!(g.stats.accepted <= g.stats.drafted);
            }
        }
    }
    assert!(mixed > 0, "no threshold mixed the two models");
}

#[test]
fn ead_spec_equals_plain_ead_and_large_regions_equal_large_only() {
    let (_dir, large, small) = common::synthetic_pair();
    let prompt = [BOS, 310, 311, 312, 313, 314, 310, 311];
    let params = GenerateParams::greedy(50);
    for tau in thresholds(&small, &large, &prompt) {
        let (plain, _, _) = ead(
            &small,
            &large,
            config(tau),
            DraftLength::Fixed(0),
            256,
            &prompt,
            &params,
        );
        for length in [
            DraftLength::Fixed(1),
            DraftLength::Fixed(3),
            DraftLength::Fixed(8),
            DraftLength::Auto { max: 4 },
        ] {
            let (spec, _, _) = ead(&small, &large, config(tau), length, 256, &prompt, &params);
            assert_eq!(
                spec.generation.tokens, plain.generation.tokens,
                "τ {tau} {length:?}"
            );
            assert_eq!(spec.sources, plain.sources, "τ {tau} {length:?}");
            assert_eq!(spec.stats.switches, plain.stats.switches);
        }
    }
    // τ = 0 puts the large model in charge from the first uncertain position
    // on for good; the output then equals large-only decoding from there.
    let (g, _, _) = ead(
        &small,
        &large,
        config(0.0),
        DraftLength::Fixed(4),
        256,
        &prompt,
        &params,
    );
    let first_large = g.sources.iter().position(|&w| w == Who::Large);
    if let Some(k) = first_large {
        assert!(g.sources[k..].iter().all(|&w| w == Who::Large));
        let head: Vec<Token> = prompt
            .iter()
            .chain(&g.generation.tokens[..k])
            .copied()
            .collect();
        let mut ctx = Sequence::new(Context::new(large.clone(), &common::ctx_params(256)).unwrap());
        let rest =
            generate_target_only(&mut ctx, &head, &GenerateParams::greedy(50 - k), |_, _| {
                true
            })
            .unwrap();
        assert_eq!(&g.generation.tokens[k..], &rest.tokens[..]);
    }
}

#[test]
fn same_model_as_small_and_large_equals_that_model() {
    let (_dir, model, _) = common::synthetic_pair();
    let prompt = [BOS, 300, 301, 302, 300, 301];
    for n in [1, 2, 7, 60] {
        let params = GenerateParams::greedy(n);
        let mut ctx = Sequence::new(Context::new(model.clone(), &common::ctx_params(256)).unwrap());
        let expected = generate_target_only(&mut ctx, &prompt, &params, |_, _| true).unwrap();
        for tau in thresholds(&model, &model, &prompt) {
            for gamma in [0, 4] {
                let (g, _, _) = ead(
                    &model,
                    &model,
                    config(tau),
                    DraftLength::Fixed(gamma),
                    256,
                    &prompt,
                    &params,
                );
                assert_eq!(
                    g.generation.tokens, expected.tokens,
                    "n {n} τ {tau} γ {gamma}"
                );
                assert_eq!(g.generation.stop, expected.stop);
                assert_eq!(g.generation.text, expected.text);
            }
        }
    }
    // A context window that fills during generation stops where
    // target-only decoding stops.
    let params = GenerateParams::greedy(100);
    let mut ctx = Sequence::new(Context::new(model.clone(), &common::ctx_params(20)).unwrap());
    let expected = generate_target_only(&mut ctx, &prompt, &params, |_, _| true).unwrap();
    assert_eq!(expected.stop, StopReason::ContextFull);
    for gamma in [0, 4] {
        let tau = thresholds(&model, &model, &prompt)[2];
        let (g, _, _) = ead(
            &model,
            &model,
            config(tau),
            DraftLength::Fixed(gamma),
            20,
            &prompt,
            &params,
        );
        assert_eq!(g.generation.tokens, expected.tokens, "γ {gamma}");
        assert_eq!(g.generation.stop, StopReason::ContextFull);
    }
}

#[test]
fn smollm2_as_small_and_large_equals_smollm2() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = Model::load(&path, &Default::default()).unwrap();
    let prompt = prompt_tokens(
        &model,
        "Write a Python function that checks whether a number is prime.",
        true,
    )
    .unwrap();
    let params = GenerateParams::greedy(64);
    let mut ctx = Sequence::new(Context::new(model.clone(), &common::ctx_params(1024)).unwrap());
    let expected = generate_target_only(&mut ctx, &prompt, &params, |_, _| true).unwrap();
    for tau in [0.3, 1.0, 2.0] {
        for gamma in [0, 4] {
            let (g, _, _) = ead(
                &model,
                &model,
                config(tau),
                DraftLength::Fixed(gamma),
                1024,
                &prompt,
                &params,
            );
            assert_eq!(g.generation.tokens, expected.tokens, "τ {tau} γ {gamma}");
        }
    }
}

#[test]
fn catch_up_leaves_each_context_as_a_fresh_one() {
    let (_dir, large, small) = common::synthetic_pair();
    let prompt = [BOS, 300, 301, 302, 300, 301];
    let params = GenerateParams::greedy(40);
    for gamma in [0, 4] {
        let tau = thresholds(&small, &large, &prompt)[5];
        let (g, _, mut engine) = ead(
            &small,
            &large,
            config(tau),
            DraftLength::Fixed(gamma),
            256,
            &prompt,
            &params,
        );
        assert!(g.stats.switches > 0 && g.stats.large_catch_up_tokens > 0);
        let sequence: Vec<Token> = prompt.iter().chain(&g.generation.tokens).copied().collect();
        engine.sync_both(&sequence).unwrap();
        for (model, ctx) in [(&small, engine.small()), (&large, engine.large())] {
            let mut fresh = Context::new(model.clone(), &common::ctx_params(256)).unwrap();
            fresh.decode(&sequence, Logits::Last).unwrap();
            assert_eq!(ctx.n_past(), fresh.n_past());
            let (a, b) = (ctx.logits(0).unwrap(), fresh.logits(0).unwrap());
            let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                diff <= 1e-4 * scale.max(1.0),
                "γ {gamma}: logits differ by {diff}"
            );
            assert_eq!(argmax(a), argmax(b));
        }
    }
}

#[test]
fn bad_settings_are_rejected() {
    let (_dir, large, small) = common::synthetic_pair();
    let make = |config: EadConfig, gamma: usize, small: &Arc<Model>| {
        let s = Context::new(small.clone(), &common::ctx_params(64)).unwrap();
        let l = Context::new(large.clone(), &common::ctx_params(64)).unwrap();
        Ead::new(s, l, config, DraftLength::Fixed(gamma)).err()
    };
    let ok = EadConfig::default();
    assert!(matches!(
        make(EadConfig { window: 0, ..ok }, 0, &small),
        Some(GenerateError::Ead(EadConfigError::ZeroWindow(0)))
    ));
    assert!(matches!(
        make(
            EadConfig {
                threshold_bits: -1.0,
                ..ok
            },
            0,
            &small
        ),
        Some(GenerateError::Ead(EadConfigError::BadThreshold(_)))
    ));
    assert!(matches!(
        make(ok, 10_000, &small),
        Some(GenerateError::Policy(PolicyError::Length(
            DraftLengthError::Fixed(10_000)
        )))
    ));
    let s = Context::new(small.clone(), &common::ctx_params(64)).unwrap();
    let l = Context::new(large.clone(), &common::ctx_params(64)).unwrap();
    assert!(matches!(
        Ead::new(s, l, ok, DraftLength::Auto { max: 0 }).err(),
        Some(GenerateError::Policy(PolicyError::Length(
            DraftLengthError::AutoCap(0)
        )))
    ));
    if let Some(path) = common::smollm2() {
        let smol = Model::load(&path, &Default::default()).unwrap();
        let err = make(ok, 0, &smol).unwrap();
        assert!(matches!(err, GenerateError::Vocab(_)), "{err}");
        assert!(err.to_string().contains("vocabulary"), "{err}");
    }
    // An empty prompt is an error, not a panic.
    let s = Context::new(small.clone(), &common::ctx_params(64)).unwrap();
    let l = Context::new(large.clone(), &common::ctx_params(64)).unwrap();
    let mut engine = Ead::new(s, l, ok, DraftLength::Fixed(0)).unwrap();
    assert!(engine
        .generate(&[], &GenerateParams::greedy(4), |_, _| true)
        .is_err());
}

#[test]
fn ead_spec_sampling_keeps_the_large_distribution_in_large_regions() {
    let (_dir, large, small) = common::synthetic_pair();
    // τ = 0: every position with any uncertainty is the large model's, so
    // the whole output must follow its distribution while the small model
    // drafts (γ 3) with its own, different one.
    let s = Context::new(small.clone(), &common::ctx_params(64)).unwrap();
    let l = Context::new(large.clone(), &common::ctx_params(64)).unwrap();
    let mut engine = Ead::new(s, l, config(0.0), DraftLength::Fixed(3)).unwrap();
    let (chi2, n, df) =
        common::second_token_chi_square(&large, &common::top4_sampling, |prompt, params| {
            let g = engine.generate(prompt, params, |_, _| true).unwrap();
            assert!(g.sources.iter().all(|&w| w == Who::Large));
            assert!(g.stats.drafted > 0);
            g.generation.tokens
        });
    let critical = common::chi_square_critical_001(df);
    assert!(chi2 < critical, "chi2 = {chi2} over {n} samples, {df} df");
}

/// Where EAD runs slower than the large model alone (here: the large model
/// in charge everywhere, and the small one still scoring every position),
/// a request finishes with the large model alone; that part of the output
/// is the large model's own, and with the fallback off it never happens.
#[test]
fn ead_slower_than_the_large_model_falls_back_to_it() {
    let (_dir, large, small) = common::synthetic_pair();
    let prompt = [BOS, 310, 311, 312, 313, 314, 310, 311];
    let params = GenerateParams::greedy(200);
    let with = EadConfig {
        fallback: true,
        ..config(0.0)
    };
    let (g, streamed, _) = ead(
        &small,
        &large,
        with,
        DraftLength::Fixed(0),
        512,
        &prompt,
        &params,
    );
    let after = g.stats.fell_back_after.expect("no fallback");
    assert!(after >= 32, "fell back after {after} tokens");
    assert!(g.sources[after..].iter().all(|&w| w == Who::Large));
    assert_eq!(streamed.0, g.generation.tokens);
    // Output from the first large position on is the large model's alone.
    let k = g.sources.iter().position(|&w| w == Who::Large).unwrap();
    let head: Vec<Token> = prompt
        .iter()
        .chain(&g.generation.tokens[..k])
        .copied()
        .collect();
    let mut ctx = Sequence::new(Context::new(large.clone(), &common::ctx_params(512)).unwrap());
    let rest = generate_target_only(&mut ctx, &head, &GenerateParams::greedy(200 - k), |_, _| {
        true
    })
    .unwrap();
    assert_eq!(&g.generation.tokens[k..], &rest.tokens[..]);
    let (g, _, _) = ead(
        &small,
        &large,
        config(0.0),
        DraftLength::Fixed(0),
        512,
        &prompt,
        &params,
    );
    assert_eq!(g.stats.fell_back_after, None);
}

#[test]
fn clearing_ead_empties_both_caches_and_keeps_its_output() {
    let (_dir, large, small) = common::synthetic_pair();
    let prompt = [BOS, 300, 301, 302];
    let params = GenerateParams::greedy(20);
    let (first, _, mut engine) = ead(
        &small,
        &large,
        config(0.5),
        DraftLength::Fixed(2),
        256,
        &prompt,
        &params,
    );
    assert!(engine.small().n_past() > 0 && engine.large().n_past() > 0);
    engine.clear();
    assert_eq!((engine.small().n_past(), engine.large().n_past()), (0, 0));
    let again = engine.generate(&prompt, &params, |_, _| true).unwrap();
    assert_eq!(again.generation.tokens, first.generation.tokens);
}
