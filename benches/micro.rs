//! Criterion micro-benchmarks: `cargo bench --bench micro`. CI compiles them
//! (`cargo bench --no-run`); numbers come from running them on the device.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};

use edgespec::draft::{Drafter, LookupDrafter};
use edgespec::engine::{Context, ContextParams, EmbeddingTable, Model};
use edgespec::generate::GenerateParams;
use edgespec::gguf::GgufFile;
use edgespec::sampling::{Sampler, SamplingParams};
use edgespec::spec::verify::residual;
use edgespec::spec::{DraftLength, PolicyConfig, Speculator};
use edgespec::synthetic::{SyntheticSpec, BOS};

fn models() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
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
        b.iter(|| greedy.sample(black_box(&logits)))
    });
    let mut hot = Sampler::new(SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        seed: 1,
    });
    c.bench_function("sample temp+top-k+top-p 151936", |b| {
        b.iter(|| hot.sample(black_box(&logits)))
    });
    let mut p = Vec::new();
    let mut q = Vec::new();
    hot.distribution(&logits, &mut p);
    Sampler::new(SamplingParams {
        temperature: 1.0,
        top_k: 40,
        top_p: 1.0,
        seed: 2,
    })
    .distribution(&logits, &mut q);
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
    };
    let prompt = [BOS, 300, 301, 302, 300, 301, 302];
    let gen = GenerateParams {
        ignore_eos: true,
        ..GenerateParams::greedy(64)
    };
    let mut target_only = Context::new(model.clone(), &params).unwrap();
    c.bench_function("64 tokens target-only (tiny model)", |b| {
        b.iter(|| {
            edgespec::generate::generate_target_only(&mut target_only, &prompt, &gen, |_, _| true)
                .unwrap()
        })
    });
    let lookup: Box<dyn Drafter> = Box::new(LookupDrafter::default());
    let config = PolicyConfig {
        length: DraftLength::Fixed(0),
        p_min: None,
    };
    let mut spec = Speculator::new(
        Context::new(model, &params).unwrap(),
        Some(lookup),
        None,
        config,
    )
    .unwrap();
    c.bench_function("64 tokens speculative loop, gamma 0 (tiny model)", |b| {
        b.iter(|| spec.generate(&prompt, &gen, |_, _| true).unwrap())
    });
}

criterion_group!(benches, gguf_open, maths, loop_overhead);
criterion_main!(benches);
