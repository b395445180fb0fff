//! Criterion micro-benchmarks: `cargo bench --bench micro`. CI compiles them
//! (`cargo bench --no-run`); numbers come from running them on the device.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};

use edgespec::draft::{DraftLength, TrimmedSource};
use edgespec::engine::{Context, ContextParams, EmbeddingTable, Logits, Model, Token};
use edgespec::gguf::GgufFile;
use edgespec::sampling::{History, Sampler, SamplingParams};
use edgespec::speculative::verify::residual;
use edgespec::synthetic::{SyntheticSpec, BOS};
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};
use edgespec_tools::vocabtrim::{CountSource, TokenCounts, Trimmer};

fn models() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect()
        })
        .unwrap_or_default()
}

fn gguf_open(c: &mut Criterion) {
    for path in models() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        c.bench_function(&format!("gguf open+validate {name}"), |b| {
            b.iter(|| GgufFile::open(black_box(&path)).unwrap())
        });
        let table = EmbeddingTable::new(GgufFile::open(&path).unwrap()).unwrap();
        let mut row = vec![0.0f32; table.n_embd()];
        c.bench_function(&format!("embedding row dequantize {name}"), |b| {
            b.iter(|| table.row_into(black_box(1234), &mut row).unwrap())
        });
    }
}

fn maths(c: &mut Criterion) {
    let n = 151_936;
    let logits: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
    let mut greedy = Sampler::new(SamplingParams::greedy());
    c.bench_function("sample greedy 151936", |b| {
        b.iter(|| greedy.sample(black_box(&logits), History::default()))
    });
    let mut hot = Sampler::new(SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        seed: 1,
        ..SamplingParams::greedy()
    });
    c.bench_function("sample temp+top-k+top-p 151936", |b| {
        b.iter(|| hot.sample(black_box(&logits), History::default()))
    });
    let mut p = Vec::new();
    let mut q = Vec::new();
    hot.distribution(&logits, History::default(), &mut p);
    Sampler::new(SamplingParams {
        temperature: 1.0,
        top_k: 40,
        top_p: 1.0,
        seed: 2,
        ..SamplingParams::greedy()
    })
    .distribution(&logits, History::default(), &mut q);
    let mut out = Vec::new();
    c.bench_function("residual max(0,p-q) 151936", |b| {
        b.iter(|| residual(black_box(&p), black_box(&q), &mut out))
    });
    // EAD scores every position with this.
    c.bench_function("EAD entropy (bits) 151936", |b| {
        b.iter(|| edgespec::ead::entropy_bits(black_box(&logits)))
    });
}

/// The loop's own cost per round: a tiny model, so llama.cpp's share is small.
fn loop_overhead(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    SyntheticSpec {
        n_embd: 32,
        n_layer: 1,
        n_head: 2,
        n_head_kv: 1,
        n_ff: 32,
        ..Default::default()
    }
    .write(&path)
    .unwrap();
    let model = Model::load(&path, &Default::default()).unwrap();
    let params = ContextParams {
        n_ctx: 512,
        n_batch: 512,
        n_threads: 1,
        n_threads_batch: 1,
        ..ContextParams::default()
    };
    let prompt = [BOS, 300, 301, 302, 300, 301, 302];
    let target_only = SessionConfig {
        ignore_eos: true,
        ..SessionConfig::new(model, params)
    };
    let mut session = Session::new(target_only.clone()).unwrap();
    c.bench_function("64 tokens target-only (tiny model)", |b| {
        b.iter(|| session.generate(&prompt, 64, |_, _| true).unwrap())
    });
    let mut spec = Session::new(SessionConfig {
        policy: PolicyConfig {
            length: DraftLength::Fixed(0),
            ..PolicyConfig::default()
        },
        ..target_only.with_drafter(DraftKind::Lookup, None)
    })
    .unwrap();
    c.bench_function("64 tokens speculative loop, gamma 0 (tiny model)", |b| {
        b.iter(|| spec.generate(&prompt, 64, |_, _| true).unwrap())
    });
}

/// One drafter step (one position in, its logits out, greedy pick, rolled
/// back) of each manifest drafter that has a trimmable head, full and
/// VocabTrim-trimmed to several K: the cost ratio VocabTrim is after. The
/// kept ids do not change the step's cost, so the counts are left empty
/// (ids kept in id order); acceptance is the bench command's business.
fn drafter_step(c: &mut Criterion) {
    let drafters = [
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "gemma-3-270m-q4_k_m.gguf",
    ];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
    let params = ContextParams {
        n_ctx: 256,
        n_batch: 256,
        n_threads: threads,
        n_threads_batch: threads,
        ..ContextParams::default()
    };
    let prefix: Vec<Token> = (0..64).map(|i| 1000 + i).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("drafter step");
    group.sample_size(30);
    for path in models().into_iter().filter(|p| {
        p.file_name()
            .is_some_and(|n| drafters.iter().any(|d| n == std::ffi::OsStr::new(d)))
    }) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let model = Model::load(&path, &Default::default()).unwrap();
        let mut ctx = Context::new(model.clone(), &params).unwrap();
        ctx.decode(&prefix, Logits::None).unwrap();
        group.bench_function(format!("{name} full"), |b| {
            b.iter(|| {
                ctx.decode(&[4242], Logits::Last).unwrap();
                let pick = argmax(ctx.logits(0).unwrap());
                ctx.truncate(prefix.len()).unwrap();
                pick
            })
        });
        let counts = TokenCounts::new(&model, CountSource::RawText, 0);
        let trimmer = Trimmer::new(&path, counts, None).unwrap();
        for k in [16_384usize, 32_768, 65_536] {
            let out = dir.path().join(format!("{name}.k{k}.gguf"));
            trimmer.write(k, &out).unwrap();
            let src = TrimmedSource::open(&out, Some(&path), &Default::default()).unwrap();
            let n_embd = src.table.n_embd();
            let mut row = vec![0.0f32; n_embd];
            let mut prefix_rows = vec![0.0f32; prefix.len() * n_embd];
            for (r, &t) in prefix_rows.chunks_exact_mut(n_embd).zip(&prefix) {
                src.table.row_into(t, r).unwrap();
            }
            let mut ctx = Context::new(src.model.clone(), &params).unwrap();
            ctx.decode_embeddings(&prefix_rows, Logits::None).unwrap();
            group.bench_function(format!("{name} trimmed K={k}"), |b| {
                b.iter(|| {
                    src.table.row_into(4242, &mut row).unwrap();
                    ctx.decode_embeddings(&row, Logits::Last).unwrap();
                    let pick = argmax(ctx.logits(0).unwrap());
                    ctx.truncate(prefix.len()).unwrap();
                    src.info.ids[pick]
                })
            });
        }
    }
    group.finish();
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

criterion_group!(benches, gguf_open, maths, loop_overhead, drafter_step);
criterion_main!(benches);
