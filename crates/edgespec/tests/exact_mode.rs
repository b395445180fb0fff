//! Exact mode: greedy speculative output is the target's byte for byte
//! whatever batches verify it (a lone position padded, drafts of at most
//! six tokens, the first prompt read as plain decoding reads it), at every
//! KV cache type; a repacked target is refused.

use edgespec_testing as common;

use std::sync::Arc;

use edgespec::draft::{DraftLength, DraftModel, LookupDrafter};
use edgespec::engine::{
    CacheType, Context, ContextParams, EngineError, FlashAttention, Logits, Model, ModelParams,
};
use edgespec::error::GenerateError;
use edgespec::generate::prompt_tokens;
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};

const KINDS: [DraftKind; 4] = [
    DraftKind::None,
    DraftKind::Lookup,
    DraftKind::Model,
    DraftKind::Hybrid,
];

/// Greedy tokens of `kind` (the model drafting for itself where a drafter
/// is needed) for `prompt`.
fn greedy(
    model: &Arc<Model>,
    kind: DraftKind,
    context: &ContextParams,
    exact: bool,
    prompt: &[i32],
    max_tokens: usize,
) -> Result<Vec<i32>, GenerateError> {
    let drafter = kind.needs_model().then(|| DraftModel::Full(model.clone()));
    let mut session = Session::new(SessionConfig {
        lookup: LookupDrafter::new(1, 3),
        policy: PolicyConfig {
            length: DraftLength::Auto { max: 8 },
            exact,
            ..PolicyConfig::default()
        },
        ..SessionConfig::new(model.clone(), context.clone()).with_drafter(kind, drafter)
    })?;
    Ok(session
        .generate(prompt, max_tokens, |_, _| true)?
        .generation
        .tokens)
}

/// Prompts past 512 cached positions (where flash attention computes a
/// lone query another way) and short ones.
fn prompts(model: &Arc<Model>) -> Vec<Vec<i32>> {
    let mut long = String::from("Here are notes from a week of a small bakery.\n");
    for day in [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ] {
        long.push_str(&format!(
            "{day}: the oven was lit at five, {n} loaves of rye and {m} of wheat were baked, \
             the flour delivery came {when}, and the till closed with {k} sales; a customer \
             asked about gluten-free bread and another about the opening hours on holidays.\n",
            n = day.len() * 7,
            m = day.len() * 5,
            when = if day.len() % 2 == 0 {
                "late"
            } else {
                "on time"
            },
            k = day.len() * 31,
        ));
    }
    long.push_str("Summarize the week in a few sentences, then list the open questions.");
    let texts = [
        long.repeat(2),
        "Write a Python function that checks whether a string is a palindrome, with a docstring."
            .to_owned(),
        "Explain in four sentences why the sky is blue.".to_owned(),
    ];
    let mut prompts: Vec<Vec<i32>> = texts
        .iter()
        .map(|t| prompt_tokens(model, t, true).unwrap())
        .collect();
    // Just past 512 cells: prefill is most of these tests' time.
    prompts[0].truncate(560);
    prompts
}

fn unrepacked(path: &std::path::Path) -> Arc<Model> {
    Model::load(
        path,
        &ModelParams {
            repack: false,
            ..ModelParams::default()
        },
    )
    .unwrap()
}

/// The logits of positions decoded one by one, and of the same positions
/// verified in one batch of `batch` after `prompt`: (single, batched).
fn single_and_batched(
    model: &Arc<Model>,
    context: &ContextParams,
    prompt: &[i32],
    batch: &[i32],
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut one = Context::new(model.clone(), context).unwrap();
    one.decode(prompt, Logits::Last).unwrap();
    let read = one.save_state().unwrap();
    let single = batch
        .iter()
        .map(|&t| {
            one.decode(&[t], Logits::Last).unwrap();
            one.last_logits().unwrap().to_vec()
        })
        .collect();
    let mut all = Context::new(model.clone(), context).unwrap();
    all.restore_state(&read, prompt.len()).unwrap();
    all.decode(batch, Logits::All).unwrap();
    let batched = (0..batch.len())
        .map(|i| all.logits(i).unwrap().to_vec())
        .collect();
    (single, batched)
}

/// The kernel property exact mode rests on: with a lone position padded,
/// a position's logits are bit for bit the same whether it is decoded
/// alone or in a verification batch of 2 to 7, past 512 cached positions
/// too (where flash attention splits the cache over threads for a lone
/// query and the logits of plain decoding differ from a batch's).
#[test]
fn a_padded_lone_position_computes_as_a_short_batch_does() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = unrepacked(&path);
    let prompts = prompts(&model);
    let long = &prompts[0];
    assert!(long.len() > 512, "the long prompt passes 512 cells");
    let draft: Vec<i32> = long[100..107].to_vec();
    let padded = ContextParams {
        pad_single: true,
        ..common::ctx_params(2048)
    };
    for n in [2, 7] {
        let (single, batched) = single_and_batched(&model, &padded, long, &draft[..n]);
        assert_eq!(single, batched, "a batch of {n}");
    }
    let plain = common::ctx_params(2048);
    let (single, batched) = single_and_batched(&model, &plain, long, &draft[..4]);
    eprintln!(
        "unpadded, past 512 cells: single-token logits {} a batch's",
        if single == batched {
            "equal"
        } else {
            "differ from"
        }
    );
}

#[test]
fn exact_greedy_output_is_the_targets_for_every_kind_and_cache_type() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = unrepacked(&path);
    let long = prompts(&model).swap_remove(0);
    // Every kind at f16; the hybrid (lookup and model drafts) at q8_0.
    for (type_k, type_v, kinds) in [
        (CacheType::F16, CacheType::F16, &KINDS[1..]),
        (CacheType::Q8_0, CacheType::Q8_0, &[DraftKind::Hybrid][..]),
    ] {
        let context = ContextParams {
            type_k,
            type_v,
            ..common::ctx_params(2048)
        };
        let reference = greedy(&model, DraftKind::None, &context, true, &long, 48).unwrap();
        for &kind in kinds {
            let tokens = greedy(&model, kind, &context, true, &long, 48).unwrap();
            assert_eq!(tokens, reference, "{kind} at {type_k:?}/{type_v:?}");
        }
    }
}

#[test]
fn exact_mode_refuses_a_repacked_target_and_a_quantized_value_cache_without_flash_attention() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let repacked = Model::load(&path, &ModelParams::default()).unwrap();
    let prompt = prompt_tokens(&repacked, "Hello", true).unwrap();
    let context = common::ctx_params(256);
    for kind in KINDS {
        let err = greedy(&repacked, kind, &context, true, &prompt, 4).unwrap_err();
        assert!(
            matches!(
                err,
                GenerateError::Engine(EngineError::InvalidParam { name: "exact", .. })
            ),
            "{kind}: {err}"
        );
    }
    let context = ContextParams {
        flash_attn: FlashAttention::Off,
        type_v: CacheType::Q8_0,
        ..context
    };
    let err = greedy(
        &unrepacked(&path),
        DraftKind::Lookup,
        &context,
        false,
        &prompt,
        4,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            GenerateError::Engine(EngineError::InvalidParam { name: "type_v", .. })
        ),
        "{err}"
    );
}
