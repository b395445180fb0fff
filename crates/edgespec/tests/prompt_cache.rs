//! Prompt caches on disk: a session restored from a saved prefix generates
//! exactly what a session reading the whole prompt generates, for every
//! drafter kind and for EAD, reading only the tokens after the prefix; a
//! cache from another model, a damaged one, a file that is no cache and a
//! context too small are refused with typed errors and leave a session that
//! still generates correctly.

use std::path::Path;
use std::sync::Arc;

use edgespec::engine::{EngineError, Model, Token};
use edgespec::session::{DraftKind, Outcome, PromptCacheError, Session, SessionConfig};
use edgespec::GenerateError;

use edgespec_testing as common;

use edgespec_testing::{pair_session as session, KINDS};

fn tokens(model: &Model, text: &str) -> Vec<Token> {
    model.tokenize(text, true, false).unwrap()
}

/// A long shared prefix (a "document") and a question after it.
fn prompts(model: &Model) -> (Vec<Token>, Vec<Token>) {
    let document = "kalo mine suta ro vika lomi neta ".repeat(4);
    let prefix = tokens(model, &document);
    let full = tokens(model, &format!("{document}suta ro kalo"));
    assert!(full.starts_with(&prefix) && full.len() > prefix.len());
    (prefix, full)
}

fn saved_prefix(session: &mut Session, prefix: &[Token], path: &Path) {
    session.prefill(prefix).unwrap();
    assert_eq!(session.save_prompt_cache(path).unwrap(), prefix.len());
}

/// Greedy tokens of `full` read whole by a fresh session of `kind`.
fn whole(target: &Arc<Model>, drafter: &Arc<Model>, kind: DraftKind, full: &[Token]) -> Vec<Token> {
    session(target, drafter, kind, 1024)
        .generate(full, 16, |_, _| true)
        .unwrap()
        .generation
        .tokens
}

/// A session of `kind` restored from `cache`, as another process would
/// make it, and its outcome on `full`.
fn restored(
    target: &Arc<Model>,
    drafter: &Arc<Model>,
    kind: DraftKind,
    cache: &Path,
    full: &[Token],
) -> (Session, Outcome) {
    let mut s = session(target, drafter, kind, 1024);
    s.load_prompt_cache(cache).unwrap();
    let outcome = s.generate_from_cache(full, 16, |_, _| true).unwrap();
    (s, outcome)
}

#[test]
fn a_restored_prefix_generates_what_the_whole_prompt_does_for_every_kind() {
    let (_models, target, drafter) = common::synthetic_pair();
    let dir = tempfile::tempdir().unwrap();
    let (prefix, full) = prompts(&target);
    for kind in KINDS {
        let path = dir.path().join(format!("{kind:?}.cache"));
        saved_prefix(&mut session(&target, &drafter, kind, 1024), &prefix, &path);
        let expected = whole(&target, &drafter, kind, &full);
        let (mut restored, outcome) = restored(&target, &drafter, kind, &path, &full);
        assert_eq!(outcome.generation.tokens, expected, "{kind:?}");
        assert_eq!(
            outcome.generation.stats.prompt_tokens_cached,
            prefix.len(),
            "{kind:?}: only the question is read"
        );
        // Loading again replaces what the caches hold (the answer is gone).
        assert_eq!(restored.load_prompt_cache(&path).unwrap(), prefix.len());
        assert_eq!(restored.cached_tokens(), prefix);
        let again = restored
            .generate_from_cache(&full, 16, |_, _| true)
            .unwrap();
        assert_eq!(again.generation.tokens, expected);
    }
}

#[test]
fn a_drafter_saved_with_another_model_catches_up_itself() {
    let (_models, target, drafter) = common::synthetic_pair();
    let dir = tempfile::tempdir().unwrap();
    let (prefix, full) = prompts(&target);
    // Saved by a lookup session: the target's cache only.
    let path = dir.path().join("target-only.cache");
    saved_prefix(
        &mut session(&target, &drafter, DraftKind::Lookup, 1024),
        &prefix,
        &path,
    );
    for kind in [DraftKind::Hybrid, DraftKind::Ead] {
        let (_, outcome) = restored(&target, &drafter, kind, &path, &full);
        assert_eq!(
            outcome.generation.tokens,
            whole(&target, &drafter, kind, &full),
            "{kind:?}"
        );
    }
}

#[test]
fn foreign_damaged_and_oversized_caches_are_refused_and_the_session_goes_on() {
    let (_models, target, drafter) = common::synthetic_pair();
    let dir = tempfile::tempdir().unwrap();
    let (prefix, full) = prompts(&target);
    let good = dir.path().join("good.cache");
    saved_prefix(
        &mut session(&target, &drafter, DraftKind::Hybrid, 1024),
        &prefix,
        &good,
    );
    let bytes = std::fs::read(&good).unwrap();
    let write = |name: &str, contents: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    // The drafter's cache as the target's: another model.
    let foreign = dir.path().join("foreign.cache");
    saved_prefix(
        &mut session(&drafter, &target, DraftKind::None, 1024),
        &prefix,
        &foreign,
    );
    type IsExpected = fn(&PromptCacheError) -> bool;
    let cases: Vec<(std::path::PathBuf, IsExpected)> = vec![
        (write("flipped.cache", &flipped), |e| {
            matches!(e, PromptCacheError::Corrupt { .. })
        }),
        (write("short.cache", &bytes[..bytes.len() - 100]), |e| {
            matches!(e, PromptCacheError::Corrupt { .. })
        }),
        (write("model.gguf", b"GGUF\x03\0\0\0 and more"), |e| {
            matches!(e, PromptCacheError::NotACache { .. })
        }),
        (foreign, |e| {
            matches!(e, PromptCacheError::OtherModel { .. })
        }),
        (dir.path().join("missing.cache"), |e| {
            matches!(e, PromptCacheError::Io { .. })
        }),
    ];
    let expected = whole(&target, &drafter, DraftKind::Hybrid, &full);
    for (path, is_expected) in &cases {
        let mut s = session(&target, &drafter, DraftKind::Hybrid, 1024);
        let err = s.load_prompt_cache(path).unwrap_err();
        let GenerateError::PromptCache(cache_err) = &err else {
            panic!("{}: not a prompt cache error: {err}", path.display());
        };
        assert!(is_expected(cache_err), "{}: {err}", path.display());
        assert!(s.cached_tokens().is_empty());
        let outcome = s.generate_from_cache(&full, 16, |_, _| true).unwrap();
        assert_eq!(outcome.generation.tokens, expected);
    }
    // A context smaller than the saved prefix.
    let mut small = session(&target, &drafter, DraftKind::Hybrid, 64);
    assert!(prefix.len() > 64);
    let err = small.load_prompt_cache(&good).unwrap_err();
    assert!(
        matches!(
            err,
            GenerateError::PromptCache(PromptCacheError::Engine {
                source: EngineError::ContextFull { .. },
                ..
            })
        ),
        "{err}"
    );
    assert!(small.cached_tokens().is_empty());
    // Saving over a file that is not a prompt cache is refused.
    let notes = write("notes.txt", b"my notes");
    let mut s = session(&target, &drafter, DraftKind::None, 1024);
    s.prefill(&prefix).unwrap();
    assert!(matches!(
        s.save_prompt_cache(&notes),
        Err(GenerateError::PromptCache(
            PromptCacheError::NotACache { .. }
        ))
    ));
    assert_eq!(std::fs::read(&notes).unwrap(), b"my notes");
}

/// A real model's cache (a sliding-window one when Gemma 3 is fetched)
/// restores to the same greedy output.
#[test]
fn real_models_restore_exactly() {
    let models: Vec<_> = [
        "gemma-3-270m-q4_k_m.gguf",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ]
    .into_iter()
    .filter_map(common::manifest_model)
    .collect();
    if models.is_empty() {
        eprintln!("skipped: no real model fetched (python3 models/fetch.py)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for path in models {
        let model = Model::load(&path, &edgespec::engine::ModelParams::default()).unwrap();
        let new =
            || Session::new(SessionConfig::new(model.clone(), common::ctx_params(1024))).unwrap();
        let document = "The harbour town kept its boats painted in bright colours. ".repeat(20);
        let prefix = tokens(&model, &document);
        let full = tokens(&model, &format!("{document}The boats were"));
        let cache = dir.path().join("real.cache");
        saved_prefix(&mut new(), &prefix, &cache);
        let expected = new().generate(&full, 24, |_, _| true).unwrap();
        let mut restored = new();
        restored.load_prompt_cache(&cache).unwrap();
        let outcome = restored
            .generate_from_cache(&full, 24, |_, _| true)
            .unwrap();
        assert_eq!(
            outcome.generation.tokens,
            expected.generation.tokens,
            "{}",
            path.display()
        );
    }
}
