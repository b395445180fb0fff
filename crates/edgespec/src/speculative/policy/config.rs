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
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            length: DraftLength::Auto { max: 8 },
            p_min: None,
            trees: Trees::Auto,
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
            DraftLength::Fixed(g) | DraftLength::Auto { max: g } => g,
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
            ) => matched.min(MAX_DRAFT),
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
}
