//! How a session drafts, by name: the one list every front end uses.

use std::fmt;
use std::str::FromStr;

/// How a session drafts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftKind {
    /// No drafter: the target alone.
    None,
    /// Prompt lookup: n-gram matches in the prompt and output; no model.
    Lookup,
    /// A smaller model with the target's vocabulary (full or trimmed).
    Model,
    /// Lookup on long matches, the drafter model otherwise.
    Hybrid,
    /// A VocabTrim drafter (`edgespec trim`); refuses a full model.
    Trimmed,
    /// Entropy-adaptive decoding: the drafter model is the small model and
    /// generates while confident (not lossless by design).
    Ead,
    /// EAD with the small model drafting inside target regions (lossless there).
    EadSpec,
}

/// A name that is not a draft kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown draft kind {0:?}: use none, lookup, model, hybrid, trimmed, ead or ead-spec")]
pub struct DraftKindError(pub String);

impl DraftKind {
    /// Every kind, in the order of the C API's numbers.
    pub const ALL: [DraftKind; 7] = [
        Self::None,
        Self::Model,
        Self::Lookup,
        Self::Hybrid,
        Self::Ead,
        Self::EadSpec,
        Self::Trimmed,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lookup => "lookup",
            Self::Model => "model",
            Self::Hybrid => "hybrid",
            Self::Trimmed => "trimmed",
            Self::Ead => "ead",
            Self::EadSpec => "ead-spec",
        }
    }

    /// Whether the kind runs a drafter model (or EAD's small model).
    pub fn needs_model(self) -> bool {
        !matches!(self, Self::None | Self::Lookup)
    }
}

impl fmt::Display for DraftKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DraftKind {
    type Err = DraftKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| DraftKindError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_from_its_own_name_and_nothing_else_does() {
        for kind in DraftKind::ALL {
            assert_eq!(kind.name().parse::<DraftKind>(), Ok(kind));
        }
        assert!("Model".parse::<DraftKind>().is_err());
        assert!("ead_spec".parse::<DraftKind>().is_err());
    }
}
