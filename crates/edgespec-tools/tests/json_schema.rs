//! JSON schemas as grammars, end to end: what a model writes under a
//! schema's grammar is JSON the schema accepts, speculative or not.

use edgespec_testing as common;

use edgespec::draft::{DraftLength, DraftModel};
use edgespec::generate::StopReason;
use edgespec::sampling::SamplingParams;
use edgespec::synthetic::BOS;
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};
use edgespec_tools::json_schema::json_schema_to_gbnf;

/// A JSON schema's grammar: sampled output (the synthetic model writes
/// JSON byte by byte) is JSON the schema accepts, speculative or not.
#[test]
fn a_json_schema_yields_json_it_accepts() {
    let (_dir, target, drafter) = common::synthetic_pair();
    let schema = r#"{"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        "ok": {"type": "boolean"}}, "required": ["name", "age"]}"#;
    let grammar = json_schema_to_gbnf(schema).unwrap();
    let keys = ["name", "age", "tags", "ok"];
    for (kind, seed) in [
        (DraftKind::None, 1),
        (DraftKind::Model, 2),
        (DraftKind::Hybrid, 3),
    ] {
        for run_seed in 0..4 {
            let sampling = SamplingParams {
                seed: seed * 100 + run_seed,
                ..common::top4_sampling(0)
            };
            let mut s = Session::new(SessionConfig {
                policy: PolicyConfig {
                    length: DraftLength::Fixed(3),
                    ..PolicyConfig::default()
                },
                sampling,
                ignore_eos: true,
                grammar: Some(grammar.clone()),
                ..SessionConfig::new(target.clone(), common::ctx_params(512))
                    .with_drafter(kind, Some(DraftModel::Full(drafter.clone())))
            })
            .unwrap();
            let g = s
                .generate(&[BOS, 300, 301, 302], 400, |_, _| true)
                .unwrap()
                .generation;
            assert_eq!(g.stop, StopReason::Grammar, "{kind}: {:?}", g.text);
            let v: serde_json::Value =
                serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {:?}", g.text));
            let o = v.as_object().unwrap();
            assert!(o.keys().all(|k| keys.contains(&k.as_str())), "{v}");
            // At most 6 characters (where the synthetic model's byte tokens
            // made invalid UTF-8, the text holds a U+FFFD per bad byte).
            let name = o["name"].as_str().unwrap();
            assert!(
                name.contains('\u{fffd}') || name.chars().count() <= 6,
                "{v}"
            );
            assert!(o["age"].is_i64(), "{v}");
            if let Some(tags) = o.get("tags") {
                let tags = tags.as_array().unwrap();
                assert!(
                    tags.len() <= 3 && tags.iter().all(|t| t == "a" || t == "b"),
                    "{v}"
                );
            }
            assert!(o.get("ok").is_none_or(serde_json::Value::is_boolean), "{v}");
        }
    }
}
