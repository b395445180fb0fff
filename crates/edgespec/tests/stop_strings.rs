//! Stop strings end the output in every engine (the target alone, lookup,
//! model and hybrid drafts, EAD and ead-spec) at the same place: the text
//! before the first occurrence, the string left out, nothing of it
//! streamed, the stop reported, and the session's next generation whole.

use edgespec::generate::StopReason;
use edgespec::session::DraftKind;
use edgespec_testing::{pair_session, synthetic_pair, KINDS};

#[test]
fn every_engine_stops_at_the_first_stop_string_and_streams_none_of_it() {
    let (_dir, target, drafter) = synthetic_pair();
    let prompt = [edgespec::synthetic::BOS, 300, 301, 302];
    let mut whole = pair_session(&target, &drafter, DraftKind::None, 256);
    let full = whole.generate(&prompt, 32, |_, _| true).unwrap();
    let text = full.generation.text.clone();
    assert_eq!(full.generation.stop, StopReason::MaxTokens);
    // A stop string from the middle of the output (characters, not bytes).
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 8, "{text:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let expected = &text[..text.find(&stop).unwrap()];
    for kind in KINDS {
        let mut session = pair_session(&target, &drafter, kind, 256);
        // EAD's output is its own (not the target's): its whole output is
        // the reference for where its stop string falls.
        let reference = session.generate(&prompt, 32, |_, _| true).unwrap();
        let reference = reference.generation.text;
        let Some(at) = reference.find(&stop) else {
            assert_ne!(reference, text, "{kind}: the target's text holds {stop:?}");
            continue;
        };
        if !matches!(kind, DraftKind::Ead | DraftKind::EadSpec) {
            assert_eq!(&reference[..at], expected, "{kind}");
        }
        session.set_stop_strings(vec![stop.clone()]);
        let mut streamed = String::new();
        let cut = session
            .generate(&prompt, 32, |_, piece| {
                streamed.push_str(piece);
                true
            })
            .unwrap();
        assert_eq!(cut.generation.stop, StopReason::StopString, "{kind}");
        assert_eq!(cut.generation.text, &reference[..at], "{kind}");
        assert_eq!(streamed, cut.generation.text, "{kind}: streamed");
        assert_eq!(
            cut.generation.stats.generated_tokens,
            cut.generation.tokens.len(),
            "{kind}"
        );
        // The strings stay for the next generation; cleared, it runs whole.
        session.set_stop_strings(Vec::new());
        let again = session.generate(&prompt, 32, |_, _| true).unwrap();
        assert_eq!(again.generation.text, reference, "{kind}");
    }
}
