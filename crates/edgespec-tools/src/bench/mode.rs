//! Benchmark modes and their names on the command line.

use super::peer::PeerMode;
use edgespec::draft::{DraftLength, Trees};
use edgespec::DraftKind;

/// One column of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Target alone.
    Target,
    /// The drafter model alone (the small model of EAD).
    Small,
    /// Entropy-adaptive decoding with the drafter as small model; `spec`:
    /// the small model drafts inside large-model regions.
    Ead {
        /// Switching threshold, bits (where an adaptive one starts).
        threshold_bits: f64,
        /// Adaptive: the large model's share of tokens to hold.
        share: Option<f64>,
        /// ead-spec.
        spec: bool,
    },
    /// edgespec speculative decoding (lookup, model, hybrid, trimmed), and
    /// whether free drafts may be trees (`/chain`: off, `/tree`: always).
    Spec(DraftKind, DraftLength, Trees),
    /// Speculative decoding with a VocabTrim drafter of K ids, trimmed by
    /// the benchmark itself (`--sweep k=…` with `--counts`).
    TrimmedK(u32, DraftLength),
    /// A llama.cpp tool.
    Peer(PeerMode),
}

/// An unknown mode name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown mode {0:?}: use target, small, model:N|auto, trimmed:N|auto, trimmed@K:N|auto, lookup:N|auto, hybrid:N|auto (each may end in /chain or /tree), ead:BITS|share=S, ead-spec:BITS|share=S, llama-completion, llama-draft, llama-ngram-mod, llama-ngram-map-k, llama-ngram-cache")]
pub struct ModeError(pub String);

impl Mode {
    /// Parses `target`, `model:4`, `model:auto`, `lookup`, `hybrid:auto`,
    /// `llama-completion`, `llama-draft`, `llama-ngram-mod` (or `llama-ngram`),
    /// `llama-ngram-map-k`, `llama-ngram-cache`. `auto_max` caps auto drafts.
    pub fn parse(s: &str, auto_max: usize) -> Result<Self, ModeError> {
        let err = || ModeError(s.to_owned());
        let (name, trees) = match s.rsplit_once('/') {
            Some((name, "chain")) => (name, Trees::Off),
            Some((name, "tree")) => (name, Trees::Always),
            Some(_) => return Err(err()),
            None => (s, Trees::Auto),
        };
        let (kind, arg) = name
            .split_once(':')
            .map_or((name, None), |(k, a)| (k, Some(a)));
        let length = |arg: Option<&str>| match arg {
            None | Some("auto") => Ok(DraftLength::Auto { max: auto_max }),
            Some(n) => n.parse().map(DraftLength::Fixed).map_err(|_| err()),
        };
        // `BITS` (a fixed threshold) or `share=S` (adaptive, 0 < S < 1).
        let ead = |arg: Option<&str>, spec: bool| {
            let arg = arg.ok_or_else(err)?;
            let (threshold_bits, share) = match arg.strip_prefix("share=") {
                Some(s) => (
                    edgespec::ead::EadConfig::default().threshold_bits,
                    Some(
                        s.parse::<f64>()
                            .ok()
                            .filter(|s| *s > 0.0 && *s < 1.0)
                            .ok_or_else(err)?,
                    ),
                ),
                None => (
                    arg.parse::<f64>()
                        .ok()
                        .filter(|t| t.is_finite() && *t >= 0.0)
                        .ok_or_else(err)?,
                    None,
                ),
            };
            Ok(Mode::Ead {
                threshold_bits,
                share,
                spec,
            })
        };
        let spec = |kind, arg| Ok::<_, ModeError>(Mode::Spec(kind, length(arg)?, trees));
        if trees != Trees::Auto && !matches!(kind, "lookup" | "hybrid") {
            return Err(err());
        }
        if let Some(k) = kind.strip_prefix("trimmed@") {
            let k = k.parse::<u32>().ok().filter(|&k| k > 0).ok_or_else(err)?;
            return Ok(Mode::TrimmedK(k, length(arg)?));
        }
        Ok(match (kind, arg) {
            ("target", None) => Mode::Target,
            ("small", None) => Mode::Small,
            ("ead", a) => ead(a, false)?,
            ("ead-spec", a) => ead(a, true)?,
            ("model", a) => spec(DraftKind::Model, a)?,
            ("lookup", a) => spec(DraftKind::Lookup, a)?,
            ("trimmed", a) => spec(DraftKind::Trimmed, a)?,
            ("hybrid", a) => spec(DraftKind::Hybrid, a)?,
            ("llama-completion", None) => Mode::Peer(PeerMode::Completion),
            ("llama-draft", None) => Mode::Peer(PeerMode::DraftSimple),
            ("llama-ngram" | "llama-ngram-mod", None) => Mode::Peer(PeerMode::NgramMod),
            ("llama-ngram-map-k", None) => Mode::Peer(PeerMode::NgramMapK),
            ("llama-ngram-cache", None) => Mode::Peer(PeerMode::NgramCache),
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
            Mode::Small => "small".into(),
            Mode::Ead {
                threshold_bits,
                share,
                spec,
            } => {
                let kind = if *spec { "ead-spec" } else { "ead" };
                match share {
                    Some(s) => format!("{kind}:share={s}"),
                    None => format!("{kind}:{threshold_bits}"),
                }
            }
            Mode::TrimmedK(k, l) => format!("trimmed@{k}:{}", length(l)),
            Mode::Spec(kind, l, trees) => {
                let shape = match trees {
                    Trees::Auto => "",
                    Trees::Off => "/chain",
                    Trees::Always => "/tree",
                };
                format!("{kind}:{}{shape}", length(l))
            }
            Mode::Peer(PeerMode::Completion) => "llama-completion".into(),
            Mode::Peer(PeerMode::DraftSimple) => "llama-draft".into(),
            Mode::Peer(PeerMode::NgramMod) => "llama-ngram-mod".into(),
            Mode::Peer(PeerMode::NgramMapK) => "llama-ngram-map-k".into(),
            Mode::Peer(PeerMode::NgramCache) => "llama-ngram-cache".into(),
        }
    }

    /// True when the mode needs the drafter model.
    pub fn needs_draft_model(&self) -> bool {
        matches!(
            self,
            Mode::Spec(DraftKind::Model | DraftKind::Hybrid, ..)
                | Mode::Peer(PeerMode::DraftSimple)
                | Mode::Small
                | Mode::Ead { .. }
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
            "lookup:auto/chain",
            "hybrid:auto/tree",
            "hybrid:5",
            "llama-completion",
            "llama-draft",
            "llama-ngram-mod",
            "llama-ngram-map-k",
            "llama-ngram-cache",
            "small",
            "ead:0.5",
            "ead-spec:1.25",
            "ead:share=0.2",
            "ead-spec:share=0.15",
            "trimmed@8192:3",
            "trimmed@4096:auto",
        ] {
            assert_eq!(Mode::parse(name, 8).unwrap().name(), name);
        }
        assert_eq!(Mode::parse("lookup", 8).unwrap().name(), "lookup:auto");
        assert_eq!(
            Mode::parse("llama-ngram", 8).unwrap().name(),
            "llama-ngram-mod"
        );
        assert_eq!(Mode::parse("model:x", 8), Err(ModeError("model:x".into())));
        assert!(Mode::parse("medusa", 8).is_err());
        // Shapes apply to free drafts only.
        for bad in ["model:auto/tree", "lookup:auto/bush", "target/chain"] {
            assert!(Mode::parse(bad, 8).is_err(), "{bad}");
        }
        assert!(Mode::parse("target:1", 8).is_err());
        for bad in [
            "ead",
            "ead:-1",
            "ead:x",
            "ead-spec:nan",
            "ead:share=1",
            "ead:share=0",
            "ead:share=x",
            "trimmed@0:3",
            "trimmed@x:3",
        ] {
            assert_eq!(Mode::parse(bad, 8), Err(ModeError(bad.into())), "{bad}");
        }
    }
}
