//! The policy's settings and their validation: a fixed or adaptive draft
//! length, a confidence cut-off, trees; and how long a draft of each source
//! may be.

use crate::draft::{DraftLength, DraftLengthError, DraftSource, Trees, MAX_DRAFT};

/// Policy settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyConfig {
    /// Fixed or adaptive length.
    pub length: DraftLength,
    /// Stop drafting when the drafter's top probability falls below this.
    pub p_min: Option<f32>,
    /// Whether free drafts may branch into trees.
    pub trees: Trees,
    /// Exact mode: every verification is a chain of at most
    /// [`EXACT_MAX_DRAFT`] tokens, so the target computes it with the
    /// kernels it decodes one token with (see [`EXACT_MAX_DRAFT`]); greedy
    /// output is then the target's byte for byte. Needs a target loaded
    /// without repacking.
    pub exact: bool,
}

/// The longest draft in exact mode. On ggml's CPU backend a position's
/// logits depend on the size of the batch that computed it: batches of 2
/// to 7 positions compute alike, batches of 8 and more alike, and the two
/// differ (by up to 0.4 in a logit on Qwen2.5-Coder 1.5B Q4_K_M, repacking
/// off, flash attention on or off, one thread or two: measured on x86-64
/// with AVX-512). A verification of 6 drafted tokens is a batch of 7, and
/// an exact target pads a lone position to two
/// ([`crate::engine::ContextParams::pad_single`]): every pass is then in
/// the first kind.
pub const EXACT_MAX_DRAFT: usize = 6;

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            length: DraftLength::Auto { max: 8 },
            p_min: None,
            trees: Trees::Auto,
            exact: false,
        }
    }
}

/// Invalid policy settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// A draft length out of range.
    #[error(transparent)]
    Length(#[from] DraftLengthError),
    /// p_min outside [0, 1].
    #[error("p-min must be in [0, 1], got {0}")]
    PMin(f32),
}

impl PolicyConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.length.validate()?;
        if let Some(p) = self.p_min {
            if !(0.0..=1.0).contains(&p) {
                return Err(PolicyError::PMin(p));
            }
        }
        Ok(())
    }

    /// The longest draft this configuration asks of a model drafter.
    pub fn cap(&self) -> usize {
        match self.length {
            DraftLength::Fixed(g) | DraftLength::Auto { max: g } => self.exact_cap(g),
        }
    }

    /// `length`, capped at [`EXACT_MAX_DRAFT`] in exact mode.
    fn exact_cap(&self, length: usize) -> usize {
        if self.exact {
            length.min(EXACT_MAX_DRAFT)
        } else {
            length
        }
    }

    /// Whether drafts may branch: never in exact mode (a tree's batch
    /// would outgrow [`EXACT_MAX_DRAFT`]).
    pub fn trees(&self) -> Trees {
        if self.exact {
            Trees::Off
        } else {
            self.trees
        }
    }

    /// The longest draft `source` may propose. A fixed length holds for every
    /// source. The automatic policy lets a free suffix-matched draft run as
    /// long as the context its match shares with the text, up to
    /// [`MAX_DRAFT`]: it prices each token by the measured cost of
    /// verifying it, and a copy that holds grows its shared context, so the
    /// next draft may be longer.
    pub fn cap_for(&self, source: DraftSource) -> usize {
        match (self.length, source) {
            (
                DraftLength::Auto { .. },
                DraftSource::Lookup { matched } | DraftSource::Memory { matched },
            ) => self.exact_cap(matched.min(MAX_DRAFT)),
            _ => self.cap(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speculative::policy::Policy;

    #[test]
    fn config_validation() {
        let mut c = PolicyConfig::default();
        assert!(c.validate().is_ok());
        c.length = DraftLength::Fixed(MAX_DRAFT + 1);
        assert_eq!(
            c.validate(),
            Err(PolicyError::Length(DraftLengthError::Fixed(MAX_DRAFT + 1)))
        );
        c.length = DraftLength::Auto { max: 0 };
        assert_eq!(
            c.validate(),
            Err(PolicyError::Length(DraftLengthError::AutoCap(0)))
        );
        c.length = DraftLength::Fixed(3);
        c.p_min = Some(1.5);
        assert_eq!(c.validate(), Err(PolicyError::PMin(1.5)));
        assert!(Policy::new(c).is_err());
    }

    #[test]
    fn exact_mode_caps_every_draft_and_branches_none() {
        let long = DraftSource::Lookup { matched: 40 };
        let mut c = PolicyConfig {
            length: DraftLength::Auto { max: 8 },
            trees: Trees::Always,
            ..PolicyConfig::default()
        };
        assert_eq!(
            (c.cap(), c.cap_for(long), c.trees()),
            (8, 40, Trees::Always)
        );
        c.exact = true;
        assert_eq!(
            (c.cap(), c.cap_for(long), c.trees()),
            (EXACT_MAX_DRAFT, EXACT_MAX_DRAFT, Trees::Off)
        );
        c.length = DraftLength::Fixed(10);
        assert_eq!(c.cap_for(DraftSource::Model), EXACT_MAX_DRAFT);
        c.length = DraftLength::Fixed(2);
        assert_eq!(c.cap_for(long), 2);
    }
}
