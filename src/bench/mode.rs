//! Benchmark modes and their names on the command line.

use super::peer::PeerMode;
use crate::spec::DraftLength;

/// Which drafter a speculative mode uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftKind {
    /// The drafter model.
    Model,
    /// Prompt lookup.
    Lookup,
    /// Lookup on confident matches, else the model.
    Hybrid,
    /// A VocabTrim drafter (`--trimmed`).
    Trimmed,
}

/// One column of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Target alone.
    Target,
    /// edgespec speculative decoding.
    Spec(DraftKind, DraftLength),
    /// A llama.cpp tool.
    Peer(PeerMode),
}

/// An unknown mode name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown mode {0:?}: use target, model:N|auto, trimmed:N|auto, lookup:N|auto, hybrid:N|auto, llama-completion, llama-draft, llama-ngram")]
pub struct ModeError(pub String);

impl Mode {
    /// Parses `target`, `model:4`, `model:auto`, `lookup`, `hybrid:auto`,
    /// `llama-completion`, `llama-draft`, `llama-ngram`. `auto_max` caps auto drafts.
    pub fn parse(s: &str, auto_max: usize) -> Result<Self, ModeError> {
        let err = || ModeError(s.to_owned());
        let (kind, arg) = s.split_once(':').map_or((s, None), |(k, a)| (k, Some(a)));
        let length = |arg: Option<&str>| match arg {
            None | Some("auto") => Ok(DraftLength::Auto { max: auto_max }),
            Some(n) => n.parse().map(DraftLength::Fixed).map_err(|_| err()),
        };
        Ok(match (kind, arg) {
            ("target", None) => Mode::Target,
            ("model", a) => Mode::Spec(DraftKind::Model, length(a)?),
            ("lookup", a) => Mode::Spec(DraftKind::Lookup, length(a)?),
            ("trimmed", a) => Mode::Spec(DraftKind::Trimmed, length(a)?),
            ("hybrid", a) => Mode::Spec(DraftKind::Hybrid, length(a)?),
            ("llama-completion", None) => Mode::Peer(PeerMode::Completion),
            ("llama-draft", None) => Mode::Peer(PeerMode::DraftSimple),
            ("llama-ngram", None) => Mode::Peer(PeerMode::NgramMod),
            _ => return Err(err()),
        })
    }

    /// The name used in tables and JSON.
    pub fn name(&self) -> String {
        let length = |l: &DraftLength| match l {
            DraftLength::Fixed(g) => g.to_string(),
            DraftLength::Auto { .. } => "auto".into(),
        };
        match self {
            Mode::Target => "target".into(),
            Mode::Spec(DraftKind::Model, l) => format!("model:{}", length(l)),
            Mode::Spec(DraftKind::Lookup, l) => format!("lookup:{}", length(l)),
            Mode::Spec(DraftKind::Trimmed, l) => format!("trimmed:{}", length(l)),
            Mode::Spec(DraftKind::Hybrid, l) => format!("hybrid:{}", length(l)),
            Mode::Peer(PeerMode::Completion) => "llama-completion".into(),
            Mode::Peer(PeerMode::DraftSimple) => "llama-draft".into(),
            Mode::Peer(PeerMode::NgramMod) => "llama-ngram".into(),
        }
    }

    /// True when the mode needs the drafter model.
    pub fn needs_draft_model(&self) -> bool {
        matches!(
            self,
            Mode::Spec(DraftKind::Model | DraftKind::Hybrid, _) | Mode::Peer(PeerMode::DraftSimple)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "target",
            "model:3",
            "model:auto",
            "lookup:auto",
            "hybrid:5",
            "llama-completion",
            "llama-draft",
            "llama-ngram",
        ] {
            assert_eq!(Mode::parse(name, 8).unwrap().name(), name);
        }
        assert_eq!(Mode::parse("lookup", 8).unwrap().name(), "lookup:auto");
        assert_eq!(Mode::parse("model:x", 8), Err(ModeError("model:x".into())));
        assert!(Mode::parse("medusa", 8).is_err());
        assert!(Mode::parse("target:1", 8).is_err());
    }
}
