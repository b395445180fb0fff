//! What the tests of edgespec's crates share: where the manifest's models
//! are, synthetic models and sessions of every draft kind, and the
//! statistical assertions the lossless tests make. A dev-dependency only.

use std::path::PathBuf;
use std::sync::Arc;

use edgespec::draft::{DraftLength, DraftModel};
use edgespec::engine::{Context, ContextParams, Logits, Model, ModelParams, Sequence, Token};
use edgespec::generate::GenerateParams;
use edgespec::gguf::ValueType;
use edgespec::sampling::{History, Mirostat, Penalties, Sampler, SamplingParams};
use edgespec::synthetic::SyntheticSpec;
use edgespec::synthetic::BOS;
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};

/// The workspace root (this crate is two folders below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Path of a manifest model under models/, or None with a printed reason.
/// Under CI (CI=true) a missing model is a failure, not a skip: .ci/run
/// fetches every model first.
pub fn manifest_model(file: &str) -> Option<PathBuf> {
    let path = workspace_root().join("models").join(file);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing in CI: .ci/run must fetch it (models/fetch.py)",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: {} not present; run `python3 models/fetch.py` to fetch it",
        path.display()
    );
    None
}

/// The test model (SmolLM2-135M-Instruct Q4_1).
pub fn smollm2() -> Option<PathBuf> {
    manifest_model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Writes a synthetic model into a fresh temporary folder.
pub fn synthetic(spec: &SyntheticSpec) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("synthetic.gguf");
    spec.write(&path).expect("write synthetic model");
    (dir, path)
}

/// A copy of the model at `path` whose `<arch>.vocab_size` claims
/// `vocab_size` while its tokenizer keeps its own token list (llama.cpp
/// sizes logits by the token list): written beside it as `crafted.gguf`.
pub fn with_crafted_vocab_size(path: &std::path::Path, vocab_size: u32) -> PathBuf {
    use edgespec::gguf::{GgufFile, GgufWriter, Value};
    let file = GgufFile::open(path).expect("open model");
    let arch = file.architecture().expect("architecture").to_owned();
    let out = path.with_file_name("crafted.gguf");
    GgufWriter::from_file(&file)
        .set(&format!("{arch}.vocab_size"), Value::U32(vocab_size))
        .write_to(&out)
        .expect("write crafted model");
    out
}

/// Two threads: tests run in parallel, so each context uses few.
pub fn ctx_params(n_ctx: u32) -> ContextParams {
    ContextParams {
        n_ctx,
        n_batch: 512,
        n_threads: 2,
        n_threads_batch: 2,
        ..ContextParams::default()
    }
}

/// Loads a model and makes a sequence (a context that tracks its tokens) on it.
pub fn load_sequence(path: &std::path::Path, n_ctx: u32) -> (Arc<Model>, Sequence) {
    let (model, ctx) = load(path, n_ctx);
    (model, Sequence::new(ctx))
}

/// Loads a model and makes a context on it.
pub fn load(path: &std::path::Path, n_ctx: u32) -> (Arc<Model>, Context) {
    let model = Model::load(path, &ModelParams::default()).expect("load model");
    let ctx = Context::new(model.clone(), &ctx_params(n_ctx)).expect("context");
    (model, ctx)
}

/// Two synthetic models with one vocabulary: a target and a different,
/// smaller drafter.
pub fn synthetic_pair() -> (tempfile::TempDir, Arc<Model>, Arc<Model>) {
    let dir = tempfile::tempdir().unwrap();
    let (target_path, draft_path) = synthetic_pair_files(dir.path());
    let load = |p: &std::path::Path| Model::load(p, &ModelParams::default()).unwrap();
    (dir, load(&target_path), load(&draft_path))
}

/// The files of [`synthetic_pair`], written into `dir`: the target and
/// its drafter.
pub fn synthetic_pair_files(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let target_path = dir.join("target.gguf");
    let draft_path = dir.join("draft.gguf");
    // Peaky logits: top-2 margins far above the ~1e-3 difference between
    // llama.cpp's batched and single-token f32 kernels, so greedy choices
    // are decided by the algorithm, not by rounding.
    let spec = SyntheticSpec {
        weight_scale: 3.0,
        ..SyntheticSpec::default()
    };
    SyntheticSpec {
        seed: 1,
        ..spec.clone()
    }
    .write(&target_path)
    .unwrap();
    // A different, smaller drafter with the same vocabulary.
    SyntheticSpec {
        seed: 2,
        n_layer: 1,
        ..spec
    }
    .write(&draft_path)
    .unwrap();
    (target_path, draft_path)
}

/// The sampling settings of the distribution tests: temperature 1, top-k 4.
pub fn top4_sampling(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_k: 4,
        top_p: 1.0,
        seed,
        ..SamplingParams::greedy()
    }
}

/// [`top4_sampling`] with every other stage of the chain on: repetition,
/// frequency and presence penalties over the prompt and the first token,
/// min-p, and a temperature below 1.
pub fn full_chain_sampling(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        min_p: 0.02,
        penalties: Penalties {
            repeat: 1.5,
            frequency: 0.3,
            presence: 0.4,
            last_n: 64,
        },
        ..top4_sampling(seed)
    }
}

/// Mirostat 2.0 at temperature 1 with τ = 1.5 bits and η = 1, so μ moves
/// a lot with every token: a verification that did not advance μ along the
/// draft would sample later tokens from other distributions (chi-square
/// 1413 against 2.3 on the synthetic pair when it was left out).
pub fn mirostat_sampling(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        mirostat: Some(Mirostat { tau: 1.5, eta: 1.0 }),
        seed,
        ..SamplingParams::greedy()
    }
}

/// The p = 0.001 critical value of chi-square with `df` degrees of freedom (1..=7).
pub fn chi_square_critical_001(df: usize) -> f64 {
    [10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32][df.clamp(1, 7) - 1]
}

/// Asserts that a session sampling with `sampling` (reseeded per run: the
/// session must have been made with `sampling(0)`) keeps `target`'s
/// distribution at the second token: chi-square below the p = 0.001
/// critical value for its degrees of freedom.
pub fn assert_session_keeps_target_distribution(
    target: &Arc<Model>,
    session: &mut Session,
    sampling: &dyn Fn(u64) -> SamplingParams,
) {
    assert_session_keeps_nth_token_distribution(target, session, sampling, None, 2, 1500);
}

/// [`assert_session_keeps_target_distribution`] at the `n`-th token over
/// `runs` runs, against the distribution under `grammar` when given (the
/// session must have been made with it).
pub fn assert_session_keeps_nth_token_distribution(
    target: &Arc<Model>,
    session: &mut Session,
    sampling: &dyn Fn(u64) -> SamplingParams,
    grammar: Option<&str>,
    n: usize,
    runs: usize,
) {
    let (chi2, samples, df) =
        nth_token_chi_square(target, sampling, grammar, n, runs, |prompt, params| {
            session.reseed(params.sampling.seed);
            session
                .generate(prompt, params.max_tokens, |_, _| true)
                .unwrap()
                .generation
                .tokens
        });
    let critical = chi_square_critical_001(df);
    assert!(
        chi2 < critical,
        "chi2 = {chi2} over {samples} samples, {df} df"
    );
}

/// Chi-square statistic of the second generated token (conditioned on the
/// most frequent first token) against `target`'s own sampling distribution
/// (a sampler that produced the first token first, so stateful ones have
/// moved on), over 1500 seeded runs of `generate`; the number of samples
/// and the degrees of freedom (at most 7).
pub fn second_token_chi_square(
    target: &Arc<Model>,
    sampling: &dyn Fn(u64) -> SamplingParams,
    generate: impl FnMut(&[Token], &GenerateParams) -> Vec<Token>,
) -> (f64, usize, usize) {
    nth_token_chi_square(target, sampling, None, 2, 1500, generate)
}

/// [`second_token_chi_square`] for the `n`-th generated token, conditioned
/// on the most frequent run of the tokens before it, over `runs` runs,
/// against the target's distribution under `grammar` (GBNF) when given.
pub fn nth_token_chi_square(
    target: &Arc<Model>,
    sampling: &dyn Fn(u64) -> SamplingParams,
    grammar: Option<&str>,
    n: usize,
    runs: usize,
    mut generate: impl FnMut(&[Token], &GenerateParams) -> Vec<Token>,
) -> (f64, usize, usize) {
    let prompt = [BOS, 300, 301, 302];
    let mut outputs = Vec::with_capacity(runs);
    for seed in 0..runs as u64 {
        let params = GenerateParams {
            max_tokens: n,
            sampling: sampling(seed),
            ignore_eos: true,
            reuse_prefix: false,
            grammar: None,
            stops: Vec::new(),
        };
        let tokens = generate(&prompt, &params);
        assert_eq!(tokens.len(), n);
        outputs.push(tokens);
    }
    // Condition on the most frequent run of tokens before the n-th.
    let mut prefixes: Vec<&[Token]> = outputs.iter().map(|o| &o[..n - 1]).collect();
    prefixes.sort_unstable();
    let before: Vec<Token> = prefixes
        .chunk_by(|a, b| a == b)
        .max_by_key(|c| c.len())
        .map(|c| c[0].to_vec())
        .unwrap();
    let nths: Vec<Token> = outputs
        .iter()
        .filter(|o| o[..n - 1] == before[..])
        .map(|o| o[n - 1])
        .collect();
    assert!(nths.len() > 200, "only {} samples", nths.len());

    // The target's own distribution after the prompt and those tokens,
    // from a sampler that produced them (stateful ones have moved on).
    let mut ctx = Context::new(target.clone(), &ctx_params(64)).unwrap();
    let mut sampler = Sampler::new(sampling(0));
    sampler.ban(target.eog_tokens());
    if let Some(g) = grammar {
        sampler.constrain(edgespec::engine::Grammar::new(target.clone(), g, "root").unwrap());
    }
    let mut p = Vec::new();
    let mut tokens = prompt.to_vec();
    ctx.decode(&prompt, Logits::Last).unwrap();
    for &t in &before {
        sampler.distribution(ctx.logits(0).unwrap(), History::new(&tokens), &mut p);
        sampler.observe(t, &p);
        tokens.push(t);
        ctx.decode(&[t], Logits::Last).unwrap();
    }
    sampler.distribution(ctx.logits(0).unwrap(), History::new(&tokens), &mut p);

    let mut chi2 = 0.0;
    let mut categories = 0;
    for (id, &prob) in p.iter().enumerate() {
        let observed = nths.iter().filter(|&&t| t == id as Token).count() as f64;
        if prob == 0.0 {
            assert_eq!(
                observed, 0.0,
                "token {id} has no target mass but was emitted"
            );
            continue;
        }
        let expected = nths.len() as f64 * f64::from(prob);
        chi2 += (observed - expected).powi(2) / expected;
        categories += 1;
    }
    assert!((2..=8).contains(&categories), "{categories} categories");
    (chi2, nths.len(), categories - 1)
}

/// Sparse 1.5 GiB GGUF files (a few KB on disk) whose headers claim more
/// than the parser may allocate: counts that fit in the file's length, so
/// only the memory cap stands between them and a huge reservation.
pub fn sparse_oversized_files(dir: &std::path::Path) -> Vec<(&'static str, PathBuf)> {
    fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b
    }
    // One key "k" holding an array: (element type, count) per level.
    fn array(levels: &[(ValueType, u64)]) -> Vec<u8> {
        let mut b = header(0, 1);
        b.extend(1u64.to_le_bytes());
        b.push(b'k');
        b.extend((ValueType::Array as u32).to_le_bytes());
        for &(ty, count) in levels {
            b.extend((ty as u32).to_le_bytes());
            b.extend(count.to_le_bytes());
        }
        b
    }
    let cases = [
        ("u8 array", array(&[(ValueType::U8, 1_400_000_000)])),
        ("u64 array", array(&[(ValueType::U64, 150_000_000)])),
        ("string array", array(&[(ValueType::String, 150_000_000)])),
        ("array of arrays", array(&[(ValueType::Array, 100_000_000)])),
        (
            "nested u16 array",
            array(&[(ValueType::Array, 1), (ValueType::U16, 500_000_000)]),
        ),
        ("tensor count", header(40_000_000, 0)),
        ("metadata count", header(0, 100_000_000)),
    ];
    cases
        .into_iter()
        .map(|(what, bytes)| {
            let path = dir.join(format!("{}.gguf", what.replace(' ', "-")));
            std::fs::write(&path, bytes).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(3 << 29)
                .unwrap();
            (what, path)
        })
        .collect()
}

/// Every drafter kind a full-vocabulary drafter serves, and EAD.
pub const KINDS: [DraftKind; 6] = [
    DraftKind::None,
    DraftKind::Lookup,
    DraftKind::Model,
    DraftKind::Hybrid,
    DraftKind::Ead,
    DraftKind::EadSpec,
];

/// A greedy session of `kind` on the pair, drafts of 3, EAD without its
/// fallback (so EAD runs whatever the models' speed).
pub fn pair_session(
    target: &Arc<Model>,
    drafter: &Arc<Model>,
    kind: DraftKind,
    n_ctx: u32,
) -> Session {
    Session::new(SessionConfig {
        policy: PolicyConfig {
            length: DraftLength::Fixed(3),
            ..PolicyConfig::default()
        },
        ead: edgespec::ead::EadConfig {
            fallback: false,
            ..Default::default()
        },
        ..SessionConfig::new(target.clone(), ctx_params(n_ctx))
            .with_drafter(kind, Some(DraftModel::Full(drafter.clone())))
    })
    .unwrap()
}
