//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use edgespec::engine::{Context, ContextParams, Model, ModelParams};
use edgespec::synthetic::SyntheticSpec;

/// Path of a manifest model under models/, or None with a printed reason.
/// Under CI (CI=true) a missing model is a failure, not a skip: .ci/run
/// fetches every model first.
pub fn manifest_model(file: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(file);
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

/// Two threads: tests run in parallel, so each context uses few.
pub fn ctx_params(n_ctx: u32) -> ContextParams {
    ContextParams {
        n_ctx,
        n_batch: 512,
        n_threads: 2,
        n_threads_batch: 2,
    }
}

/// Loads a model and makes a context on it.
pub fn load(path: &std::path::Path, n_ctx: u32) -> (Arc<Model>, Context) {
    let model = Model::load(path, &ModelParams::default()).expect("load model");
    let ctx = Context::new(model.clone(), &ctx_params(n_ctx)).expect("context");
    (model, ctx)
}
