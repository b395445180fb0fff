//! End-to-end on the test model, SmolLM2-135M-Instruct Q4_1.

use edgespec_testing as common;

use edgespec::engine::ChatMessage;
use edgespec::generate::{generate_target_only, prompt_tokens, GenerateParams, StopReason};
use edgespec::gguf::{GgufFile, GgufWriter};
use edgespec::sampling::SamplingParams;

#[test]
fn greedy_generation_is_deterministic_and_stops_at_eog() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let (model, mut ctx) = common::load_sequence(&path, 1024);
    let prompt = prompt_tokens(
        &model,
        "What is the capital of France? Answer in one word.",
        true,
    )
    .unwrap();
    let run = |ctx: &mut edgespec::engine::Sequence| {
        generate_target_only(ctx, &prompt, &GenerateParams::greedy(64), |_, _| true).unwrap()
    };
    let a = run(&mut ctx);
    let b = run(&mut ctx);
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.text, b.text);
    assert!(a.text.contains("Paris"), "got {:?}", a.text);
    assert_eq!(a.stop, StopReason::EndOfGeneration);
    assert_eq!(model.detokenize(&a.tokens).unwrap(), a.text);
}

#[test]
fn sampling_is_reproducible_per_seed() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let (model, mut ctx) = common::load_sequence(&path, 512);
    let prompt = prompt_tokens(&model, "Once upon a time", false).unwrap();
    let params = |seed| SamplingParams {
        temperature: 1.0,
        top_k: 40,
        top_p: 0.95,
        seed,
        ..SamplingParams::greedy()
    };
    let mut run = |seed| {
        generate_target_only(
            &mut ctx,
            &prompt,
            &GenerateParams {
                sampling: params(seed),
                ..GenerateParams::greedy(24)
            },
            |_, _| true,
        )
        .unwrap()
        .tokens
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn chat_template_is_applied() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let (model, _ctx) = common::load(&path, 64);
    let text = model
        .apply_chat_template(&[ChatMessage::user("Hi there")])
        .unwrap();
    assert!(
        text.contains("<|im_start|>user\nHi there<|im_end|>"),
        "{text:?}"
    );
    assert!(text.ends_with("<|im_start|>assistant\n"), "{text:?}");
    let tokens = prompt_tokens(&model, "Hi there", true).unwrap();
    let im_start = model.tokenize("<|im_start|>", false, true).unwrap();
    assert_eq!(im_start.len(), 1, "<|im_start|> is one special token");
    assert!(tokens.contains(&im_start[0]));
    // Without --chat the special-token text is not parsed as a token.
    assert!(!prompt_tokens(&model, "<|im_start|>", false)
        .unwrap()
        .contains(&im_start[0]));
}

#[test]
fn tokenize_detokenize_round_trip() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let (model, _ctx) = common::load(&path, 64);
    for text in [
        "Hello, world!",
        "fn main() { println!(\"hi\"); }\n",
        "naïve café — 東京 🦀",
        "  spaces\tand\nlines  ",
    ] {
        let tokens = model.tokenize(text, false, false).unwrap();
        assert_eq!(model.detokenize(&tokens).unwrap(), text);
    }
}

#[test]
fn rewritten_model_generates_the_same_tokens() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.gguf");
    let original = GgufFile::open(&path).unwrap();
    GgufWriter::from_file(&original).write_to(&copy).unwrap();
    let reread = GgufFile::open(&copy).unwrap();
    assert_eq!(original.metadata(), reread.metadata());
    assert_eq!(original.tensors().len(), reread.tensors().len());
    for (a, b) in original.tensors().iter().zip(reread.tensors()) {
        assert_eq!(
            (&a.name, a.ggml_type, &a.dims),
            (&b.name, b.ggml_type, &b.dims)
        );
        assert_eq!(
            original.tensor_data(a),
            reread.tensor_data(b),
            "tensor {}",
            a.name
        );
    }
    let (m1, mut c1) = common::load_sequence(&path, 256);
    let (_m2, mut c2) = common::load_sequence(&copy, 256);
    let prompt = prompt_tokens(&m1, "Write a haiku about the sea.", true).unwrap();
    let gen = |c: &mut edgespec::engine::Sequence| {
        generate_target_only(c, &prompt, &GenerateParams::greedy(32), |_, _| true)
            .unwrap()
            .tokens
    };
    assert_eq!(gen(&mut c1), gen(&mut c2));
}
