//! Conversations: each turn reads only what the caches do not hold, and a
//! conversation's greedy output equals re-running each turn from scratch
//! on the full history, for every drafter kind and for EAD.

use edgespec::draft::{DraftLength, DraftModel};
use edgespec::session::{Conversation, DraftKind, Session, SessionConfig, WhenFull};

use edgespec_testing as common;

use edgespec_testing::{pair_session as session, KINDS};

#[test]
fn every_turn_equals_the_full_history_from_scratch_and_reads_only_what_is_new() {
    let (_dir, target, drafter) = common::synthetic_pair();
    let turns = [
        "kalo mine suta",
        "ro vika lomi",
        "neta kalo",
        "suta suta ro",
    ];
    for kind in KINDS {
        let mut conversation =
            Conversation::new(session(&target, &drafter, kind, 1024), WhenFull::Error);
        conversation.add("system", "lomi neta");
        let mut scratch = session(&target, &drafter, kind, 1024);
        for (t, text) in turns.iter().enumerate() {
            let outcome = conversation.respond(text, 12, |_, _| true).unwrap();
            // The same history, rendered and read whole by a session that
            // starts from empty caches.
            let history = &conversation.messages()[..conversation.messages().len() - 1];
            let model = scratch.model().clone();
            let prompt = model
                .tokenize(&model.apply_chat_template(history).unwrap(), true, true)
                .unwrap();
            let expected = scratch.generate(&prompt, 12, |_, _| true).unwrap();
            assert_eq!(
                outcome.generation.tokens, expected.generation.tokens,
                "{kind:?} turn {t}"
            );
            let stats = &outcome.generation.stats;
            assert_eq!(stats.prompt_tokens, prompt.len());
            if t > 0 {
                // Everything up to the new user message was in the cache.
                assert!(
                    stats.prompt_tokens_cached * 2 > stats.prompt_tokens,
                    "{kind:?} turn {t}: {} of {} cached",
                    stats.prompt_tokens_cached,
                    stats.prompt_tokens
                );
            } else {
                assert_eq!(stats.prompt_tokens_cached, 0);
            }
        }
        assert_eq!(conversation.messages().len(), 1 + 2 * turns.len());
    }
}

#[test]
fn regenerating_and_editing_roll_back_instead_of_starting_over() {
    let (_dir, target, drafter) = common::synthetic_pair();
    for kind in [DraftKind::None, DraftKind::Model, DraftKind::Ead] {
        let mut c = Conversation::new(session(&target, &drafter, kind, 1024), WhenFull::Error);
        c.respond("kalo mine suta", 10, |_, _| true).unwrap();
        let first = c.respond("ro vika", 10, |_, _| true).unwrap();
        let again = c.regenerate(10, |_, _| true).unwrap();
        assert_eq!(again.generation.tokens, first.generation.tokens, "{kind:?}");
        assert!(
            again.generation.stats.prompt_tokens_cached + 1 >= again.generation.stats.prompt_tokens
        );
        let edited = c.edit_last("neta lomi", 10, |_, _| true).unwrap();
        assert!(edited.generation.stats.prompt_tokens_cached > 0, "{kind:?}");
        let texts: Vec<&str> = c.messages().iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts.len(), 4);
        assert_eq!(texts[2], "neta lomi");
        c.reset();
        assert!(c.messages().is_empty());
    }
}

#[test]
fn a_full_context_is_an_error_or_drops_the_oldest_turns() {
    let (_dir, target, drafter) = common::synthetic_pair();
    let long = "kalo mine suta ro";
    let mut strict = Conversation::new(
        session(&target, &drafter, DraftKind::None, 128),
        WhenFull::Error,
    );
    let mut dropping = Conversation::new(
        session(&target, &drafter, DraftKind::None, 128),
        WhenFull::DropOldest,
    );
    for c in [&mut strict, &mut dropping] {
        c.add("system", "neta");
    }
    let mut strict_failed = false;
    for turn in 0..6 {
        if strict.respond(long, 8, |_, _| true).is_err() {
            strict_failed = true;
            // The failed turn left the history as it was.
            assert_eq!(strict.messages().len(), 1 + 2 * turn);
            break;
        }
    }
    assert!(strict_failed, "the history outgrew 128 positions");
    for _ in 0..6 {
        dropping.respond(long, 8, |_, _| true).unwrap();
    }
    let roles: Vec<&str> = dropping
        .messages()
        .iter()
        .map(|m| m.role.as_str())
        .collect();
    assert_eq!(roles[0], "system", "the system prompt stays");
    assert!(
        roles.len() < 1 + 2 * 6,
        "older turns were dropped: {roles:?}"
    );
    assert_eq!(
        dropping.messages().last().map(|m| m.role.as_str()),
        Some("assistant")
    );
}

/// Issue 17: a session given the costs an earlier one measured skips its
/// timing passes on its first prompt and generates the same greedy output.
#[test]
fn costs_from_an_earlier_session_skip_calibration() {
    let (_dir, target, drafter) = common::synthetic_pair();
    let config = || SessionConfig {
        policy: edgespec::PolicyConfig {
            length: DraftLength::Auto { max: 8 },
            ..Default::default()
        },
        ..SessionConfig::new(target.clone(), common::ctx_params(256))
            .with_drafter(DraftKind::Model, Some(DraftModel::Full(drafter.clone())))
    };
    let mut first = Session::new(config()).unwrap();
    assert!(first.costs().is_none(), "nothing measured yet");
    let prompt = [edgespec::synthetic::BOS, 300, 301, 302];
    let a = first.generate(&prompt, 24, |_, _| true).unwrap();
    assert!(a.speculation.unwrap().calibration_time > std::time::Duration::ZERO);
    let costs = first.costs().expect("measured");
    assert!(!costs.costs.verify.is_empty() && costs.costs.draft.is_some());
    let mut second = Session::new(SessionConfig {
        costs: Some(costs),
        ..config()
    })
    .unwrap();
    let b = second.generate(&prompt, 24, |_, _| true).unwrap();
    assert_eq!(
        b.speculation.unwrap().calibration_time,
        std::time::Duration::ZERO
    );
    assert_eq!(a.generation.tokens, b.generation.tokens);
}
