//! The engine on synthetic models our own writer produces.

use edgespec_testing as common;

use edgespec::engine::{Context, EngineError, Logits, Model, ModelParams, Sequence};
use edgespec::generate::{generate_target_only, GenerateParams, StopReason};
use edgespec::gguf::{GgufFile, GgufWriter, ModelSummary};
use edgespec::synthetic::{SyntheticSpec, BOS};

fn greedy(ctx: &mut Sequence, prompt: &[i32], n: usize) -> edgespec::generate::Generation {
    generate_target_only(ctx, prompt, &GenerateParams::greedy(n), |_, _| true).expect("generate")
}

#[test]
fn llama_cpp_loads_our_synthetic_model_and_generates_deterministically() {
    let spec = SyntheticSpec::default();
    let (_dir, path) = common::synthetic(&spec);
    let (model, mut ctx) = common::load_sequence(&path, 256);
    assert_eq!(model.n_vocab() as usize, spec.n_vocab());
    assert_eq!(model.n_embd() as u64, spec.n_embd);
    let prompt = [BOS, 300, 301, 302];
    let a = greedy(&mut ctx, &prompt, 40);
    let b = greedy(&mut ctx, &prompt, 40);
    assert_eq!(a.tokens, b.tokens);
    assert!(!a.tokens.is_empty());
    // A different prompt leads elsewhere: the weights matter.
    let c = greedy(&mut ctx, &[BOS, 310, 311], 40);
    assert_ne!(a.tokens, c.tokens);
}

#[test]
fn rollback_gives_the_logits_of_a_fresh_context() {
    let (_dir, path) = common::synthetic(&SyntheticSpec::default());
    let (model, mut ctx) = common::load(&path, 128);
    let base = [BOS, 270, 280, 290];
    ctx.decode(&base, Logits::None).unwrap();
    ctx.decode(&[300, 301, 302], Logits::All).unwrap();
    ctx.truncate(base.len()).unwrap();
    ctx.decode(&[305], Logits::Last).unwrap();
    let rolled = ctx.logits(0).unwrap().to_vec();

    let mut fresh = Context::new(model, &common::ctx_params(128)).unwrap();
    fresh
        .decode(&[BOS, 270, 280, 290, 305], Logits::Last)
        .unwrap();
    let expected = fresh.logits(0).unwrap();
    let max_diff = rolled
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-4, "max |diff| = {max_diff}");
}

#[test]
fn batch_logits_equal_one_by_one_logits() {
    let (_dir, path) = common::synthetic(&SyntheticSpec::default());
    let (model, mut ctx) = common::load(&path, 128);
    let tokens = [BOS, 271, 272, 273, 274];
    ctx.decode(&tokens, Logits::All).unwrap();
    let batch: Vec<Vec<f32>> = (0..tokens.len())
        .map(|i| ctx.logits(i).unwrap().to_vec())
        .collect();
    assert!(matches!(
        ctx.logits(tokens.len()),
        Err(EngineError::NoLogits { .. })
    ));
    let mut single = Context::new(model, &common::ctx_params(128)).unwrap();
    for (i, t) in tokens.iter().enumerate() {
        single.decode(&[*t], Logits::Last).unwrap();
        let one = single.logits(0).unwrap();
        let diff = one
            .iter()
            .zip(&batch[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-3, "position {i}: max |diff| = {diff}");
    }
}

#[test]
fn context_limits_are_typed_errors_or_clean_stops() {
    let (_dir, path) = common::synthetic(&SyntheticSpec::default());
    let (_model, mut ctx) = common::load_sequence(&path, 16);
    let long: Vec<i32> = (0..17).map(|i| 270 + i).collect();
    assert!(matches!(
        ctx.decode(&long, Logits::Last),
        Err(EngineError::ContextFull {
            needed: 17,
            n_ctx: 16
        })
    ));
    assert_eq!(
        ctx.context().n_past(),
        0,
        "a refused decode must not change the cache"
    );
    // Generation stops cleanly when the window fills: 10 prompt + 7 generated
    // = 17 tokens, the last one sampled but never decoded.
    let prompt: Vec<i32> = (0..10).map(|i| 270 + i).collect();
    let g =
        generate_target_only(&mut ctx, &prompt, &GenerateParams::greedy(100), |_, _| true).unwrap();
    if g.stop == StopReason::ContextFull {
        assert_eq!(g.tokens.len(), 7);
    } else {
        assert_eq!(g.stop, StopReason::EndOfGeneration);
    }
    assert!(matches!(
        ctx.decode(&[100_000], Logits::Last),
        Err(EngineError::TokenOutOfRange { token: 100_000, .. })
    ));
    assert!(matches!(
        generate_target_only(&mut ctx, &[], &GenerateParams::greedy(4), |_, _| true),
        Err(EngineError::InvalidParam { name: "prompt", .. })
    ));
}

#[test]
fn invalid_context_params_are_rejected_before_llama_cpp() {
    let (_dir, path) = common::synthetic(&SyntheticSpec::default());
    let model = Model::load(&path, &ModelParams::default()).unwrap();
    for (n_ctx, threads) in [(0, 2), (64, 0), (64, -3)] {
        let mut p = common::ctx_params(n_ctx);
        p.n_threads = threads;
        assert!(matches!(
            Context::new(model.clone(), &p),
            Err(EngineError::InvalidParam { .. })
        ));
    }
}

#[test]
fn malformed_and_missing_models_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    assert!(matches!(
        Model::load(&missing, &ModelParams::default()),
        Err(EngineError::ModelNotFound { .. })
    ));
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    assert!(matches!(
        Model::load(&bad, &ModelParams::default()),
        Err(EngineError::Gguf(_))
    ));
}

#[test]
fn tied_f16_model_loads_and_inspects() {
    let spec = SyntheticSpec {
        tied_head: true,
        f16_weights: true,
        ..SyntheticSpec::default()
    };
    let (_dir, path) = common::synthetic(&spec);
    let summary = ModelSummary::of(&GgufFile::open(&path).unwrap()).unwrap();
    assert!(summary.tied_head);
    assert_eq!(summary.vocab_size, Some(spec.n_vocab() as u64));
    let embd_bytes = 64 * spec.n_vocab() as u64 * 2;
    assert_eq!(summary.head_bytes, embd_bytes);
    let (_model, mut ctx) = common::load_sequence(&path, 64);
    assert!(!greedy(&mut ctx, &[BOS, 300], 8).tokens.is_empty());
}

#[test]
fn rewritten_file_generates_the_same_tokens() {
    let (dir, path) = common::synthetic(&SyntheticSpec::default());
    let original = GgufFile::open(&path).unwrap();
    let copy = dir.path().join("copy.gguf");
    GgufWriter::from_file(&original).write_to(&copy).unwrap();
    let reread = GgufFile::open(&copy).unwrap();
    assert_eq!(original.metadata(), reread.metadata());
    for (a, b) in original.tensors().iter().zip(reread.tensors()) {
        assert_eq!(original.tensor_data(a), reread.tensor_data(b));
    }
    let (_m1, mut c1) = common::load_sequence(&path, 128);
    let (_m2, mut c2) = common::load_sequence(&copy, 128);
    let prompt = [BOS, 290, 291];
    assert_eq!(
        greedy(&mut c1, &prompt, 30).tokens,
        greedy(&mut c2, &prompt, 30).tokens
    );
}

/// Issue 16: a file whose `vocab_size` disagrees with its token list (here
/// 4e9 against 512 tokens) must not size the logits row: it generates
/// exactly what the honest file does instead of reading past llama.cpp's
/// buffer (SIGSEGV before the fix).
#[test]
fn a_crafted_vocab_size_does_not_size_the_logits_row() {
    let (_dir, path) = common::synthetic(&SyntheticSpec::default());
    let crafted = common::with_crafted_vocab_size(&path, 4_000_000_000);
    let (honest, mut a) = common::load_sequence(&path, 128);
    let (model, mut b) = common::load_sequence(&crafted, 128);
    assert_eq!(model.n_logits(), honest.n_logits());
    assert_eq!(model.n_logits(), model.n_vocab() as usize);
    let prompt = [BOS, 300, 301, 302];
    assert_eq!(
        greedy(&mut a, &prompt, 24).tokens,
        greedy(&mut b, &prompt, 24).tokens
    );
}

/// Largest absolute difference between two logits rows.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// A draft tree decoded in one batch gives each node the logits of its own
/// path decoded as a chain (a node sees the prefix and its ancestors only),
/// and keeping a side branch's path leaves the cache as if that path alone
/// had been decoded (to 1e-5: rejected cells before kept ones stay taken,
/// so later tokens are not summed out of order by half-precision flash
/// attention, which differs in the third decimal).
#[test]
fn a_tree_batch_scores_each_branch_as_its_own_chain() {
    let (_dir, path) = common::synthetic(&SyntheticSpec::default());
    let (model, mut ctx) = common::load(&path, 128);
    let prefix = [BOS, 270, 280, 290];
    // root 300 → 301 → 302 (chain), root → 310 → 311, 301 → 315
    let nodes = [301, 302, 310, 311, 315];
    let parents = [0, 1, 0, 3, 1];
    ctx.decode(&prefix, Logits::None).unwrap();
    ctx.decode_tree(300, &nodes, &parents).unwrap();
    assert_eq!(ctx.n_past(), prefix.len() + 1);
    let tree_rows: Vec<Vec<f32>> = (0..=nodes.len())
        .map(|i| ctx.logits(i).unwrap().to_vec())
        .collect();
    // Nothing else decodes while the tree waits for a kept path.
    assert!(ctx.decode(&[5], Logits::Last).is_err());

    let mut chain = Context::new(model, &common::ctx_params(128)).unwrap();
    let paths: [&[i32]; 6] = [
        &[300],
        &[300, 301],
        &[300, 301, 302],
        &[300, 310],
        &[300, 310, 311],
        &[300, 301, 315],
    ];
    for (row, path) in paths.iter().enumerate() {
        chain.clear();
        chain.decode(&prefix, Logits::None).unwrap();
        chain.decode(path, Logits::Last).unwrap();
        let diff = max_diff(&tree_rows[row], chain.logits(0).unwrap());
        assert!(diff < 1e-5, "row {row} ({path:?}): max |diff| = {diff}");
    }

    // Keep root → 310 → 311 (a side branch), then decode on.
    ctx.keep_path(&[2, 3]).unwrap();
    assert_eq!(ctx.n_past(), prefix.len() + 3);
    ctx.decode(&[305], Logits::Last).unwrap();
    chain.clear();
    chain.decode(&prefix, Logits::None).unwrap();
    chain.decode(&[300, 310, 311, 305], Logits::Last).unwrap();
    let diff = max_diff(ctx.logits(0).unwrap(), chain.logits(0).unwrap());
    assert!(
        diff < 1e-5,
        "after keeping a side path: max |diff| = {diff}"
    );

    // Keep part of the chain, and nothing: the same.
    for (kept, tokens) in [(&[0usize][..], &[300, 301][..]), (&[], &[300])] {
        let base = ctx.n_past();
        ctx.decode_tree(300, &nodes, &parents).unwrap();
        ctx.keep_path(kept).unwrap();
        ctx.decode(&[306], Logits::Last).unwrap();
        let after = ctx.logits(0).unwrap().to_vec();
        ctx.truncate(base).unwrap();
        ctx.decode(tokens, Logits::None).unwrap();
        ctx.decode(&[306], Logits::Last).unwrap();
        let diff = max_diff(&after, ctx.logits(0).unwrap());
        assert!(diff < 1e-5, "kept {kept:?}: max |diff| = {diff}");
        ctx.truncate(base).unwrap();
    }

    // A tree dropped by truncation leaves the prefix.
    ctx.decode_tree(300, &nodes, &parents).unwrap();
    ctx.truncate(prefix.len()).unwrap();
    ctx.decode(&[300, 301, 302], Logits::Last).unwrap();
    let diff = max_diff(ctx.logits(0).unwrap(), &tree_rows[2]);
    assert!(diff < 1e-5, "after dropping a tree: max |diff| = {diff}");

    // Malformed trees are typed errors, the cache untouched.
    let n = ctx.n_past();
    for (nodes, parents) in [
        (&[1, 2][..], &[0, 3][..]),
        (&[1, 2, 3, 4, 5], &[0, 0, 0, 0, 0]),
        (&[1], &[0, 0]),
    ] {
        assert!(matches!(
            ctx.decode_tree(300, nodes, parents),
            Err(EngineError::InvalidParam { .. })
        ));
        assert_eq!(ctx.n_past(), n);
    }
}
