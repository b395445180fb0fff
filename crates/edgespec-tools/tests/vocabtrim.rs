//! VocabTrim: calibration, trimming, and the trimmed drafter in the loop.

use edgespec_testing as common;

use std::path::{Path, PathBuf};

use edgespec::draft::{DraftLength, DraftModel, TrimmedSource};
use edgespec::engine::{Context, Logits, Model, ModelParams, Token};
use edgespec::error::GenerateError;
use edgespec::gguf::{GgufFile, GgufWriter, Value, OUTPUT, TOKEN_EMBD};
use edgespec::synthetic::{SyntheticSpec, BOS};
use edgespec::vocabtrim::{TrimError, TrimInfo, KEY_IDS, KEY_SOURCE_VOCAB};
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};
use edgespec_tools::vocabtrim::*;

/// Counts that make the ids `k_ids` the most frequent.
fn counts_favouring(model: &Model, favoured: &[Token]) -> TokenCounts {
    let mut c = TokenCounts::new(model, CountSource::RawText, 1);
    for (rank, &t) in favoured.iter().enumerate() {
        c.counts[t as usize] = 1000 - rank as u64;
    }
    c
}

fn trim_with(source: &Path, counts: &TokenCounts, k: usize, out: &Path) -> Vec<Token> {
    let vocab = Model::load(
        source,
        &ModelParams {
            vocab_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let specials: Vec<Token> = (0..vocab.n_vocab())
        .filter(|&t| vocab.is_eog(t) || vocab.is_control(t))
        .collect();
    let ids = select_ids(counts, None, k, &specials).unwrap();
    trim_drafter(
        &GgufFile::open(source).unwrap(),
        source,
        &vocab_fingerprint(&vocab),
        &ids,
        out,
    )
    .unwrap();
    ids
}

/// The trimmed drafter's logits equal the full drafter's on the kept ids,
/// over a multi-token sequence with rollbacks.
fn assert_logits_match(source: &Path, trimmed: &Path, sequence: &[Token]) {
    let params = common::ctx_params(256);
    let full = Model::load(source, &Default::default()).unwrap();
    let mut full_ctx = Context::new(full, &params).unwrap();
    let src = TrimmedSource::open(trimmed, Some(source), &Default::default()).unwrap();
    let ids = src.info.ids.clone();
    let n_embd = src.table.n_embd();
    let mut trim_ctx = Context::new(src.model.clone(), &params).unwrap();
    let embed = |tokens: &[Token]| -> Vec<f32> {
        let mut v = vec![0.0; tokens.len() * n_embd];
        for (row, &t) in v.chunks_exact_mut(n_embd).zip(tokens) {
            src.table.row_into(t, row).unwrap();
        }
        v
    };
    let mut max_diff = 0.0f32;
    let mut compare = |a: &Context, b: &Context, n: usize| {
        for i in 0..n {
            let (fa, tb) = (a.logits(i).unwrap(), b.logits(i).unwrap());
            assert_eq!(tb.len(), ids.len(), "trimmed logits are K wide");
            for (j, &id) in ids.iter().enumerate() {
                max_diff = max_diff.max((fa[id as usize] - tb[j]).abs());
            }
        }
    };
    let (head, tail) = sequence.split_at(sequence.len() / 2);
    full_ctx.decode(head, Logits::All).unwrap();
    trim_ctx
        .decode_embeddings(&embed(head), Logits::All)
        .unwrap();
    compare(&full_ctx, &trim_ctx, head.len());
    // Roll both back by three and continue.
    let keep = head.len() - 3;
    full_ctx.truncate(keep).unwrap();
    trim_ctx.truncate(keep).unwrap();
    full_ctx.decode(tail, Logits::All).unwrap();
    trim_ctx
        .decode_embeddings(&embed(tail), Logits::All)
        .unwrap();
    compare(&full_ctx, &trim_ctx, tail.len());
    assert!(
        max_diff <= 1e-4,
        "max |logit diff| on kept ids = {max_diff}"
    );
}

fn synthetic_pair(dir: &Path, tied: bool, f16: bool) -> (PathBuf, PathBuf) {
    let base = SyntheticSpec {
        weight_scale: 3.0,
        tied_head: tied,
        f16_weights: f16,
        ..SyntheticSpec::default()
    };
    let target = dir.join("target.gguf");
    let draft = dir.join("draft.gguf");
    SyntheticSpec {
        seed: 1,
        ..base.clone()
    }
    .write(&target)
    .unwrap();
    SyntheticSpec {
        seed: 2,
        n_layer: 1,
        ..base
    }
    .write(&draft)
    .unwrap();
    (target, draft)
}

#[test]
fn trimmed_logits_equal_full_logits_on_kept_ids() {
    for (tied, f16) in [(false, false), (true, true)] {
        let dir = tempfile::tempdir().unwrap();
        let (_, draft) = synthetic_pair(dir.path(), tied, f16);
        let vocab = Model::load(&draft, &Default::default()).unwrap();
        let favoured: Vec<Token> = (259..300).collect();
        let trimmed = dir.path().join("draft.trim.gguf");
        trim_with(&draft, &counts_favouring(&vocab, &favoured), 48, &trimmed);
        assert_logits_match(
            &draft,
            &trimmed,
            &[BOS, 260, 261, 262, 300, 301, 10, 263, 264, 265, 266, 267],
        );
    }
}

#[test]
fn smollm2_trimmed_logits_and_greedy_output() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(&path, &Default::default()).unwrap();
    let text = "def add(a, b):\n    return a + b\nThe quick brown fox jumps over the lazy dog. Paris is the capital of France.";
    let corpus: Vec<String> = text.lines().map(str::to_owned).collect();
    let counts = count_raw_text(&model, &corpus).unwrap();
    let trimmed = dir.path().join("smol.trim.gguf");
    let ids = trim_with(&path, &counts, 2048, &trimmed);
    assert_eq!(ids.len(), 2048);
    let tokens = model.tokenize(text, true, false).unwrap();
    assert_logits_match(&path, &trimmed, &tokens[..24]);

    // Greedy speculation with the trimmed drafter equals target-only.
    let prompt = edgespec::generate::prompt_tokens(
        &model,
        "Write a Python function that adds two numbers.",
        true,
    )
    .unwrap();
    let base = SessionConfig::new(model.clone(), common::ctx_params(512));
    let expected = Session::new(base.clone())
        .unwrap()
        .generate(&prompt, 40, |_, _| true)
        .unwrap()
        .generation;
    let drafter = DraftModel::open(&trimmed, None, &Default::default()).unwrap();
    assert!(drafter.is_trimmed());
    for length in [DraftLength::Fixed(3), DraftLength::Auto { max: 8 }] {
        let mut s = Session::new(SessionConfig {
            policy: PolicyConfig {
                length,
                ..PolicyConfig::default()
            },
            ..base
                .clone()
                .with_drafter(DraftKind::Trimmed, Some(drafter.clone()))
        })
        .unwrap();
        let got = s.generate(&prompt, 40, |_, _| true).unwrap();
        assert_eq!(got.generation.tokens, expected.tokens, "{length:?}");
    }
}

#[test]
fn trimming_copies_rows_of_every_manifest_quant_type() {
    for file in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "gemma-3-270m-q4_k_m.gguf",
    ] {
        let Some(path) = common::manifest_model(file) else {
            continue;
        };
        let source = GgufFile::open(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t.gguf");
        let ids: Vec<Token> = vec![0, 1, 2, 100, 1000, 4999];
        trim_drafter(&source, &path, "fp", &ids, &out).unwrap();
        let trimmed = GgufFile::open(&out).unwrap();
        let info = TrimInfo::from_gguf(&trimmed).unwrap().unwrap();
        assert_eq!(info.ids, ids);
        for name in [TOKEN_EMBD, OUTPUT] {
            let Some(src) = source.tensor(name) else {
                continue;
            };
            let dst = trimmed.tensor(name).unwrap();
            assert_eq!(
                (dst.ggml_type, dst.dims[1]),
                (src.ggml_type, ids.len() as u64),
                "{file} {name}"
            );
            for (j, &id) in ids.iter().enumerate() {
                assert_eq!(
                    trimmed.tensor_row(dst, j as u64),
                    source.tensor_row(src, id as u64),
                    "{file} {name} row {id}"
                );
            }
        }
        // Everything else is copied unchanged.
        for t in source
            .tensors()
            .iter()
            .filter(|t| t.name != TOKEN_EMBD && t.name != OUTPUT)
        {
            assert_eq!(
                trimmed.tensor_data(trimmed.tensor(&t.name).unwrap()),
                source.tensor_data(t),
                "{file} {}",
                t.name
            );
        }
        let arch = source.architecture().unwrap();
        assert_eq!(
            trimmed.get_u64(&format!("{arch}.vocab_size")).unwrap(),
            ids.len() as u64
        );
        assert_eq!(trimmed.get_str("tokenizer.ggml.model").unwrap(), "none");
    }
}

#[test]
fn greedy_calibration_is_deterministic_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _) = synthetic_pair(dir.path(), false, false);
    let model = Model::load(&target, &Default::default()).unwrap();
    let mut session = Session::new(SessionConfig::new(model, common::ctx_params(256))).unwrap();
    let prompts: Vec<String> = ["kalo mine", "suta ro", "vika lomi", "neta"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let a_path = dir.path().join("a.json");
    let a = calibrate_generations(
        &mut session,
        &prompts,
        20,
        false,
        &a_path,
        false,
        &mut |_, _, _| {},
    )
    .unwrap();
    let b = calibrate_generations(
        &mut session,
        &prompts,
        20,
        false,
        &dir.path().join("b.json"),
        false,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(a.counts, b.counts);
    assert!(a.total() > 0 && a.total() <= 80);
    assert_eq!(TokenCounts::load(&a_path).unwrap(), a);
    // An interrupted run (two prompts done) resumes to the same counts.
    let c_path = dir.path().join("c.json");
    calibrate_generations(
        &mut session,
        &prompts[..2],
        20,
        false,
        &c_path,
        false,
        &mut |_, _, _| {},
    )
    .unwrap();
    let mut partial = TokenCounts::load(&c_path).unwrap();
    partial.items_total = prompts.len();
    partial.inputs_sha256.clone_from(&a.inputs_sha256);
    partial.save(&c_path).unwrap();
    let mut seen = Vec::new();
    let c = calibrate_generations(
        &mut session,
        &prompts,
        20,
        false,
        &c_path,
        false,
        &mut |done, _, _| seen.push(done),
    )
    .unwrap();
    assert_eq!(seen, vec![3, 4], "only the remaining prompts ran");
    assert_eq!(c.counts, a.counts);
    // A finished file is returned as it is, nothing generated.
    let mut seen = Vec::new();
    let again = calibrate_generations(
        &mut session,
        &prompts,
        20,
        false,
        &a_path,
        false,
        &mut |done, _, _| seen.push(done),
    )
    .unwrap();
    assert!(seen.is_empty());
    assert_eq!(again, a);
    // Other prompts, or other settings, against an existing file: refused,
    // the file untouched; --force starts over.
    let before = std::fs::read(&a_path).unwrap();
    let other = [prompts[0].clone(), "other".to_string()];
    for (p, n) in [(&other[..], 20), (&prompts[..], 21)] {
        let e = calibrate_generations(&mut session, p, n, false, &a_path, false, &mut |_, _, _| {})
            .unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read(&a_path).unwrap(), before);
    }
    let forced = calibrate_generations(
        &mut session,
        &other,
        20,
        false,
        &a_path,
        true,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(forced.items_total, 2);
    assert_eq!(TokenCounts::load(&a_path).unwrap(), forced);
}

#[test]
fn bad_input_is_rejected_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (target, draft) = synthetic_pair(dir.path(), false, false);
    let model = Model::load(&draft, &Default::default()).unwrap();
    let counts = counts_favouring(&model, &[300, 301]);
    assert!(matches!(
        select_ids(&counts, None, 0, &[]),
        Err(TrimError::ZeroK)
    ));
    assert!(matches!(
        select_ids(&counts, None, 10_000, &[]),
        Err(TrimError::KTooLarge { k: 10_000, .. })
    ));
    assert!(matches!(
        select_ids(&counts, None, 2, &[0, 1, 2]),
        Err(TrimError::KBelowSpecials { k: 2, specials: 3 })
    ));
    let ids = select_ids(&counts, None, 4, &[2]).unwrap();
    assert_eq!(
        ids,
        vec![0, 2, 300, 301],
        "specials, then by count, ties to the lower id"
    );
    // A prior breaks the ties among ids the counts never saw.
    let prior = counts_favouring(&model, &[305, 301]);
    let ids = select_ids(&counts, Some(&prior), 4, &[2]).unwrap();
    assert_eq!(ids, vec![2, 300, 301, 305], "305 from the prior beats id 0");
    let mut other = prior.clone();
    other.vocab_size += 1;
    other.counts.push(0);
    assert!(matches!(
        select_ids(&counts, Some(&other), 4, &[2]),
        Err(TrimError::CountsVocabMismatch { .. })
    ));

    // Malformed counts files and counts for another vocabulary.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    assert!(matches!(
        TokenCounts::load(&bad),
        Err(TrimError::BadCounts { .. })
    ));
    let mut short = counts.clone();
    short.counts.pop();
    std::fs::write(&bad, serde_json::to_string(&short).unwrap()).unwrap();
    assert!(matches!(
        TokenCounts::load(&bad),
        Err(TrimError::BadCounts { .. })
    ));
    if let Some(smol) = common::smollm2() {
        let smol = Model::load(
            &smol,
            &ModelParams {
                vocab_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(matches!(
            counts.check_vocab(&smol),
            Err(TrimError::CountsVocabMismatch { .. })
        ));
        // A trimmed drafter cannot draft for a target with another vocabulary.
        let trimmed = dir.path().join("d.trim.gguf");
        trim_with(&draft, &counts, 32, &trimmed);
        let drafter = DraftModel::open(&trimmed, Some(&draft), &Default::default()).unwrap();
        let smol_full = Model::load(common::smollm2().unwrap(), &Default::default()).unwrap();
        let config = SessionConfig::new(smol_full, common::ctx_params(64))
            .with_drafter(DraftKind::Trimmed, Some(drafter));
        assert!(matches!(Session::new(config), Err(GenerateError::Vocab(_))));
    }
    let _ = target;

    // Trimmed files with missing or inconsistent metadata.
    let trimmed = dir.path().join("ok.trim.gguf");
    trim_with(&draft, &counts, 32, &trimmed);
    let file = GgufFile::open(&trimmed).unwrap();
    let broken = |edit: &dyn Fn(&mut GgufWriter)| -> TrimError {
        let mut w = GgufWriter::from_file(&file);
        edit(&mut w);
        let path = dir.path().join("broken.gguf");
        w.write_to(&path).unwrap();
        TrimmedSource::open(&path, Some(&draft), &Default::default())
            .err()
            .expect("broken file accepted")
    };
    assert!(matches!(
        broken(&|w| {
            w.remove(KEY_SOURCE_VOCAB);
        }),
        TrimError::BadTrimmedFile(_)
    ));
    assert!(matches!(
        broken(&|w| {
            w.set(
                KEY_IDS,
                Value::Array(edgespec::gguf::Array::U32(vec![5, 3])),
            );
        }),
        TrimError::BadTrimmedFile(_)
    ));
    assert!(matches!(
        broken(&|w| {
            w.set("llama.vocab_size", Value::U32(31));
        }),
        TrimError::BadTrimmedFile(_) | TrimError::Engine(_)
    ));
    // An ordinary model is not a trimmed drafter.
    assert!(matches!(
        TrimmedSource::open(&draft, None, &Default::default()),
        Err(TrimError::BadTrimmedFile(_))
    ));
}

/// End to end with sampling: the second generated token (the first one that
/// goes through draft verification) follows the target's own distribution
/// with a VocabTrim drafter (q = 0 outside its ids).
#[test]
fn speculative_sampling_with_a_trimmed_drafter_keeps_the_target_distribution() {
    let (dir, target, _) = common::synthetic_pair();
    let draft_path = dir.path().join("draft.gguf");
    let trimmed_path = dir.path().join("draft.trim.gguf");
    // Keep every word token but half of them: some target choices are
    // impossible for the drafter, so the residual path carries them.
    let ids: Vec<Token> = (0..3).chain(259..290).collect();
    let file = edgespec::gguf::GgufFile::open(&draft_path).unwrap();
    trim_drafter(&file, &draft_path, "fp", &ids, &trimmed_path).unwrap();
    let drafter = DraftModel::open(&trimmed_path, Some(&draft_path), &Default::default()).unwrap();
    assert!(drafter.is_trimmed());
    let mut s = Session::new(SessionConfig {
        policy: PolicyConfig {
            length: DraftLength::Fixed(3),
            ..PolicyConfig::default()
        },
        sampling: common::top4_sampling(0),
        ignore_eos: true,
        ..SessionConfig::new(target.clone(), common::ctx_params(64))
            .with_drafter(DraftKind::Trimmed, Some(drafter))
    })
    .unwrap();
    common::assert_session_keeps_target_distribution(&target, &mut s, &common::top4_sampling);
}

/// Issue 16: `trim` refuses to replace an existing output, and `-k auto`
/// interrupted by Ctrl-C leaves no scratch folder or partial file behind.
#[test]
fn trim_keeps_earlier_outputs_and_cleans_up_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (target, draft) = synthetic_pair(dir.path(), false, false);
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, "kalo mine suta\nro vika lomi neta\n").unwrap();
    let counts = dir.path().join("counts.json");
    let edgespec = || Command::new(env!("CARGO_BIN_EXE_edgespec"));
    let calibrate = || {
        edgespec()
            .args(["calibrate", "-m"])
            .arg(&target)
            .arg("--raw-text")
            .arg(&corpus)
            .arg("-o")
            .arg(&counts)
            .output()
            .unwrap()
    };
    let ok = calibrate();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Calibrating another corpus into the same file is refused.
    std::fs::write(&corpus, "other text\n").unwrap();
    let before = std::fs::read(&counts).unwrap();
    let refused = calibrate();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&counts).unwrap(), before);

    let out = dir.path().join("out").join("trimmed.gguf");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, "earlier").unwrap();
    let trim = |extra: &[&str]| {
        let mut c = edgespec();
        c.args(["trim", "-d"])
            .arg(&draft)
            .arg("--counts")
            .arg(&counts)
            .arg("-o")
            .arg(&out)
            .args(extra);
        c
    };
    let refused = trim(&["-k", "300"]).output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "earlier");

    let prompts = dir.path().join("heldout.txt");
    std::fs::write(&prompts, "kalo mine\nsuta ro\nvika lomi\nneta\n").unwrap();
    let mut child = trim(&["-k", "auto", "--force", "-n", "400", "--limit", "4"])
        .args(["--k-candidates", "270,280,290,300,310"])
        .arg("-m")
        .arg(&target)
        .arg("-f")
        .arg(&prompts)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the measurements have started.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("alpha") {
        line.clear();
    }
    // SAFETY: plain system call on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted, not finished");
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("trimmed.gguf")],
        "{left:?}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "earlier");
}
