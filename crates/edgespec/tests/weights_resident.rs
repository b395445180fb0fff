//! Weights resident once (issue 34): after a mapped model loads, the pages
//! of llama.cpp's mapping of the file have left the process's resident set
//! (the copies ggml repacked live on; tensors read from the mapping fault
//! back in on use), and what the model computes is unchanged. Its own test
//! binary: no other test maps the file meanwhile.

use edgespec::engine::{Context, Model, ModelParams, Sequence};
use edgespec::generate::{generate_target_only, prompt_tokens, GenerateParams};
use edgespec_testing as common;

/// Resident kilobytes of every mapping of `path` in this process.
#[cfg(target_os = "linux")]
fn mapped_resident_kb(path: &std::path::Path) -> u64 {
    let path = std::fs::canonicalize(path).unwrap();
    let path = path.to_str().unwrap();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut total = 0;
    let mut ours = false;
    for line in smaps.lines() {
        let first = line.split_ascii_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            ours = line.ends_with(path);
        } else if ours && first == "Rss:" {
            total += line
                .split_ascii_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    total
}

#[cfg(target_os = "linux")]
#[test]
fn a_loaded_models_mapping_leaves_the_resident_set_and_computes_the_same() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let file_kb = std::fs::metadata(&path).unwrap().len() / 1024;
    let generate = |params: &ModelParams| {
        let model = Model::load(&path, params).unwrap();
        let resident_after_load = mapped_resident_kb(&path);
        let ctx = Context::new(model.clone(), &common::ctx_params(256)).unwrap();
        let mut seq = Sequence::new(ctx);
        let prompt = prompt_tokens(&model, "Write a haiku about the sea.", true).unwrap();
        let out = generate_target_only(&mut seq, &prompt, &GenerateParams::greedy(32), |_, _| true)
            .unwrap();
        (out.tokens, resident_after_load)
    };
    // llama.cpp maps the file with MAP_POPULATE: all of it was resident
    // before the release.
    let (mapped, after_load) = generate(&ModelParams::default());
    assert!(
        after_load < file_kb / 20,
        "{after_load} kB of a {file_kb} kB file still resident after loading"
    );
    // Read into memory instead of mapped: the same tokens.
    let read = ModelParams {
        use_mmap: false,
        ..ModelParams::default()
    };
    let (in_memory, _) = generate(&read);
    assert_eq!(mapped, in_memory);
    // Locked pages are the user's to keep: nothing is released.
    let locked = ModelParams {
        use_mlock: true,
        ..ModelParams::default()
    };
    if let Ok(model) = Model::load(&path, &locked) {
        let kb = mapped_resident_kb(&path);
        drop(model);
        assert!(kb > file_kb / 2, "locked: {kb} of {file_kb} kB resident");
    }
}
