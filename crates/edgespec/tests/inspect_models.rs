//! `inspect` values for every model in the manifest, checked against the
//! models' published shapes.

use edgespec_testing as common;

use edgespec::gguf::{GgufFile, ModelSummary};

struct Expected {
    file: &'static str,
    arch: &'static str,
    vocab: u64,
    layers: u64,
    width: u64,
    tied: bool,
}

const MODELS: &[Expected] = &[
    Expected {
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        arch: "llama",
        vocab: 49152,
        layers: 30,
        width: 576,
        tied: true,
    },
    Expected {
        file: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        arch: "qwen2",
        vocab: 151936,
        layers: 28,
        width: 1536,
        tied: false,
    },
    Expected {
        file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        arch: "qwen2",
        vocab: 151936,
        layers: 24,
        width: 896,
        tied: false,
    },
    Expected {
        file: "gemma-3-270m-q4_k_m.gguf",
        arch: "gemma3",
        vocab: 262144,
        layers: 18,
        width: 640,
        tied: true,
    },
];

#[test]
fn manifest_models_inspect_as_published() {
    for e in MODELS {
        let Some(path) = common::manifest_model(e.file) else {
            continue;
        };
        let file = GgufFile::open(&path).unwrap();
        let s = ModelSummary::of(&file).unwrap();
        assert_eq!(s.architecture, e.arch, "{}", e.file);
        assert_eq!(s.vocab_size, Some(e.vocab), "{}", e.file);
        assert_eq!(s.block_count, Some(e.layers), "{}", e.file);
        assert_eq!(s.embedding_length, Some(e.width), "{}", e.file);
        assert_eq!(s.tied_head, e.tied, "{}", e.file);
        assert_eq!(s.head_rows, Some(e.vocab), "{}", e.file);
        // Bytes per token: all tensor bytes, minus the embedding unless it is the head.
        let all: u64 = file.tensors().iter().map(|t| t.size).sum();
        let embd = file.tensor("token_embd.weight").unwrap().size;
        assert_eq!(
            s.bytes_per_token,
            if e.tied { all } else { all - embd },
            "{}",
            e.file
        );
        assert!(s.head_share > 0.0 && s.head_share < 1.0);
        assert!(all <= s.file_bytes);
    }
}
