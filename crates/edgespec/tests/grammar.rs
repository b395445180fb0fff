//! Constrained output: a grammar keeps greedy speculative output equal to
//! greedy target-only output under the same grammar, and sampled
//! speculative output distributed as the constrained target's.

use edgespec_testing as common;

use std::sync::Arc;

use edgespec::draft::{DraftLength, DraftModel};
use edgespec::engine::{EngineError, Model, Token};
use edgespec::error::GenerateError;
use edgespec::generate::{Generation, StopReason};
use edgespec::sampling::SamplingParams;
use edgespec::synthetic::BOS;
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};

/// A prompt that repeats itself, so lookup drafts too.
const PROMPT: [Token; 9] = [BOS, 300, 301, 302, 300, 301, 302, 300, 301];

fn session(
    target: &Arc<Model>,
    drafter: &Arc<Model>,
    kind: DraftKind,
    length: DraftLength,
    grammar: Option<&str>,
    sampling: SamplingParams,
) -> Result<Session, GenerateError> {
    Session::new(SessionConfig {
        policy: PolicyConfig {
            length,
            ..PolicyConfig::default()
        },
        sampling,
        ignore_eos: true,
        grammar: grammar.map(str::to_owned),
        ..SessionConfig::new(target.clone(), common::ctx_params(256))
            .with_drafter(kind, Some(DraftModel::Full(drafter.clone())))
    })
}

fn run(session: &mut Session, n: usize) -> (Generation, usize) {
    let r = session.generate(&PROMPT, n, |_, _| true).unwrap();
    let drafted = r.speculation.map_or(0, |s| s.drafted);
    (r.generation, drafted)
}

/// Words (" " then lower-case letters) that do not start with `banned`.
fn grammar_without(banned: char) -> String {
    let first: String = ('a'..='z').filter(|&c| c != banned).collect();
    format!("root ::= (\" \" [{first}] [a-z]*)+")
}

/// The first letter of the target's first unconstrained greedy word: a
/// grammar banning it changes the output from the first token on.
fn first_letter(target: &Arc<Model>, drafter: &Arc<Model>) -> (char, Generation) {
    let greedy = SamplingParams::greedy();
    let mut plain = session(
        target,
        drafter,
        DraftKind::None,
        DraftLength::Fixed(0),
        None,
        greedy,
    )
    .unwrap();
    let (g, _) = run(&mut plain, 40);
    let text = target.token_text(g.tokens[0]).unwrap();
    let letter = text.trim_start_matches(['▁', ' ']).chars().next().unwrap();
    (letter, g)
}

#[test]
fn greedy_with_a_grammar_equals_target_only_for_every_drafter() {
    let (_dir, target, drafter) = common::synthetic_pair();
    let (banned, plain) = first_letter(&target, &drafter);
    let grammar = grammar_without(banned);
    let greedy = SamplingParams::greedy();
    let mut alone = session(
        &target,
        &drafter,
        DraftKind::None,
        DraftLength::Fixed(0),
        Some(&grammar),
        greedy,
    )
    .unwrap();
    let (expected, _) = run(&mut alone, 40);
    assert_eq!(expected.tokens.len(), 40);
    assert_ne!(expected.tokens, plain.tokens, "the grammar changed nothing");
    // Every word follows the grammar.
    for word in expected.text.split(' ').skip(1) {
        assert!(
            !word.is_empty() && !word.starts_with(banned),
            "{:?}",
            expected.text
        );
        assert!(
            word.chars().all(|c| c.is_ascii_lowercase()),
            "{:?}",
            expected.text
        );
    }
    assert!(expected.text.starts_with(' '), "{:?}", expected.text);
    for kind in [DraftKind::Model, DraftKind::Lookup, DraftKind::Hybrid] {
        let mut drafted_any = 0;
        for length in [DraftLength::Fixed(3), DraftLength::Auto { max: 8 }] {
            let mut s = session(&target, &drafter, kind, length, Some(&grammar), greedy).unwrap();
            let (got, drafted) = run(&mut s, 40);
            assert_eq!(got.tokens, expected.tokens, "{kind} {length:?}");
            assert_eq!(got.text, expected.text);
            drafted_any += drafted;
        }
        assert!(drafted_any > 0, "{kind} never drafted");
    }
}

/// Sampling under a grammar whose second word depends on the first (it
/// starts with a to m, the next with n to z): the third token (the second
/// of the first round, verified after its first draft token was accepted
/// — the target drafting for itself often is — or sampled after a
/// rejection) keeps the constrained target distribution, so the grammar
/// advanced along the accepted draft.
#[test]
fn sampling_with_a_grammar_keeps_the_constrained_target_distribution() {
    let (_dir, target, drafter) = common::synthetic_pair();
    let grammar = "root ::= \" \" [a-m] [a-z]* \" \" [n-z] [a-z]* (\" \" [a-z]+)*";
    for (kind, drafter) in [(DraftKind::Model, &target), (DraftKind::Hybrid, &drafter)] {
        let mut s = session(
            &target,
            drafter,
            kind,
            DraftLength::Fixed(3),
            Some(grammar),
            common::top4_sampling(0),
        )
        .unwrap();
        common::assert_session_keeps_nth_token_distribution(
            &target,
            &mut s,
            &common::top4_sampling,
            Some(grammar),
            3,
            3000,
        );
    }
}

/// A grammar that cannot parse is a typed error before anything runs; EAD
/// refuses one; a complete grammar with end-of-generation banned stops
/// with its own reason, and without the ban ends the output there.
#[test]
fn grammar_errors_and_ends_are_clear() {
    let (_dir, target, drafter) = common::synthetic_pair();
    let greedy = SamplingParams::greedy();
    for bad in [
        "root ::= undefined",
        "root ::= \"open",
        "",
        "other ::= \"a\"",
    ] {
        match session(
            &target,
            &drafter,
            DraftKind::Model,
            DraftLength::Fixed(3),
            Some(bad),
            greedy,
        ) {
            Err(GenerateError::Engine(EngineError::InvalidParam {
                name: "grammar", ..
            })) => {}
            Err(e) => panic!("{bad:?}: {e}"),
            Ok(_) => panic!("{bad:?} accepted"),
        }
    }
    // One word, then nothing more.
    let one_word = |kind| {
        session(
            &target,
            &drafter,
            kind,
            DraftLength::Fixed(3),
            Some("root ::= \" kalo\""),
            greedy,
        )
    };
    for kind in [DraftKind::Ead, DraftKind::EadSpec] {
        let e = one_word(kind).err().unwrap();
        assert!(
            matches!(e, GenerateError::GrammarWithEad(k) if k == kind),
            "{e}"
        );
    }
    for kind in [DraftKind::None, DraftKind::Model, DraftKind::Lookup] {
        let mut s = one_word(kind).unwrap();
        let (g, _) = run(&mut s, 20);
        assert_eq!(g.text, " kalo", "{kind}");
        assert_eq!(g.stop, StopReason::Grammar, "{kind}");
        // A grammar can be set and removed between generations.
        s.set_grammar(None).unwrap();
        assert_eq!(run(&mut s, 20).0.tokens.len(), 20);
        assert!(s.set_grammar(Some("root ::= (")).is_err());
    }
}
