//! Long prompt reads watched from outside (issue 34): progress after each
//! batch, a stop check that interrupts a read between batches or inside a
//! pass (ggml's abort callback) and leaves the cache as before it, and a
//! session that goes on afterwards. Generation is never interrupted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use edgespec::draft::{DraftLength, DraftModel};
use edgespec::engine::{ContextParams, EngineError, Logits, Sequence, Token};
use edgespec::generate::{generate_target_only, read_prompt, GenerateParams};
use edgespec::session::{DraftKind, Session, SessionConfig};
use edgespec::GenerateError;
use edgespec_testing as common;

/// Batches of 64 tokens, so a 300-token prompt is read in five.
fn small_batches() -> ContextParams {
    ContextParams {
        n_batch: 64,
        ..common::ctx_params(1024)
    }
}

/// A prompt of `n` ordinary tokens.
fn prompt(model: &edgespec::engine::Model, n: usize) -> Vec<Token> {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(n / 8 + 1);
    let mut tokens = model.tokenize(&text, true, false).unwrap();
    tokens.truncate(n);
    assert_eq!(tokens.len(), n);
    tokens
}

fn greedy(seq: &mut Sequence, prompt: &[Token]) -> Vec<Token> {
    generate_target_only(seq, prompt, &GenerateParams::greedy(16), |_, _| true)
        .unwrap()
        .tokens
}

#[test]
fn a_prompt_read_reports_progress_and_stops_when_asked() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = edgespec::engine::Model::load(&path, &Default::default()).unwrap();
    let ctx = edgespec::engine::Context::new(model.clone(), &small_batches()).unwrap();
    let mut seq = Sequence::new(ctx);
    let long = prompt(&model, 300);

    // Progress before the read and after each batch, tokens read of all.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    seq.context_mut()
        .set_prompt_progress(Some(Box::new(move |read, total| {
            s.lock().unwrap().push((read, total));
        })));
    let expected = greedy(&mut seq, &long);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (0, 300),
            (64, 300),
            (128, 300),
            (192, 300),
            (256, 300),
            (300, 300)
        ]
    );

    // A stop between batches: after the second, the read is undone.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    seq.context_mut()
        .set_prompt_progress(Some(Box::new(move |read, _| {
            if read >= 128 {
                flag.store(true, Ordering::SeqCst);
            }
        })));
    let s = stop.clone();
    seq.context_mut()
        .set_stop_check(Some(Arc::new(move || s.load(Ordering::SeqCst))));
    let err = read_prompt(&mut seq, &long, false).unwrap_err();
    assert!(matches!(err, EngineError::Interrupted), "{err:?}");
    assert_eq!((seq.len(), seq.context().n_past()), (0, 0));
    seq.context_mut().set_prompt_progress(None);

    // A stop inside a pass: the check says no before the first batch, then
    // yes when ggml asks between the graph's operations.
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    seq.context_mut().set_stop_check(Some(Arc::new(move || {
        a.fetch_add(1, Ordering::SeqCst) >= 1
    })));
    let head = &long[..100];
    seq.decode(head, Logits::Last)
        .unwrap_or_else(|e| panic!("not a read: {e}"));
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "decoding outside a read asks nothing"
    );
    let err = read_prompt(&mut seq, &long, true).unwrap_err();
    assert!(matches!(err, EngineError::Interrupted), "{err:?}");
    assert!(
        asked.load(Ordering::SeqCst) >= 2,
        "ggml asked inside the pass"
    );
    assert_eq!(seq.tokens(), head, "the cache as before the read");
    assert_eq!(seq.context().n_past(), head.len());

    // Generation is never interrupted: a check that always says stop does
    // not stop decoding after the read.
    seq.context_mut().set_stop_check(None);
    read_prompt(&mut seq, &long, true).unwrap();
    seq.context_mut().set_stop_check(Some(Arc::new(|| true)));
    seq.decode(&expected[..1], Logits::Last).unwrap();

    // The sequence goes on as new.
    seq.context_mut().set_stop_check(None);
    assert_eq!(greedy(&mut seq, &long), expected);
}

/// The session front door: a speculative session whose first read (its
/// timing passes included) is stopped generates afterwards what a fresh
/// one does.
#[test]
fn a_speculative_session_stopped_in_its_prompt_goes_on() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = edgespec::engine::Model::load(&path, &Default::default()).unwrap();
    let drafter = edgespec::engine::Model::load(&path, &Default::default()).unwrap();
    let config = || SessionConfig {
        policy: edgespec::PolicyConfig {
            length: DraftLength::Auto { max: 8 },
            ..Default::default()
        },
        ..SessionConfig::new(model.clone(), small_batches())
            .with_drafter(DraftKind::Hybrid, Some(DraftModel::Full(drafter.clone())))
    };
    let long = prompt(&model, 300);
    let expected = Session::new(config())
        .unwrap()
        .generate(&long, 24, |_, _| true)
        .unwrap()
        .generation
        .tokens;
    let mut session = Session::new(config()).unwrap();
    let stop = Arc::new(AtomicBool::new(true));
    let s = stop.clone();
    session
        .target_mut()
        .set_stop_check(Some(Arc::new(move || s.load(Ordering::SeqCst))));
    let err = session.generate(&long, 24, |_, _| true).unwrap_err();
    assert!(
        matches!(err, GenerateError::Engine(EngineError::Interrupted)),
        "{err:?}"
    );
    stop.store(false, Ordering::SeqCst);
    let again = session.generate(&long, 24, |_, _| true).unwrap();
    assert_eq!(again.generation.tokens, expected);
}
