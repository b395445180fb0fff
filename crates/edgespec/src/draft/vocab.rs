//! Can this drafter draft for that target? Same ids must mean the same text.

use crate::engine::{Model, Token};

/// A drafter whose token ids do not mean what the target's mean.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VocabError {
    /// The drafter can emit ids the target does not have.
    #[error("drafter vocabulary ({drafter} tokens) is larger than the target's ({target})")]
    TooLarge {
        /// Drafter token count.
        drafter: i32,
        /// Target token count.
        target: i32,
    },
    /// An id whose text or end-of-generation role differs.
    #[error("drafter and target vocabularies differ at token id {id}: target {target:?}, drafter {drafter:?}")]
    Mismatch {
        /// First differing id.
        id: Token,
        /// The target's token text.
        target: String,
        /// The drafter's token text.
        drafter: String,
    },
}

/// Checks every id the drafter can emit: same text, same end-of-generation
/// role. Target ids beyond the drafter's vocabulary (padding, extra
/// specials the drafter cannot produce) are fine.
pub fn check_vocab_compatible(target: &Model, drafter: &Model) -> Result<(), VocabError> {
    let (nt, nd) = (target.n_vocab(), drafter.n_vocab());
    if nd > nt {
        return Err(VocabError::TooLarge {
            drafter: nd,
            target: nt,
        });
    }
    for id in 0..nd {
        let (t, d) = (target.token_text(id), drafter.token_text(id));
        if t != d || target.is_eog(id) != drafter.is_eog(id) {
            let describe = |text: Option<String>, eog: bool| {
                let text = text.unwrap_or_default();
                if eog {
                    format!("{text} (end of generation)")
                } else {
                    text
                }
            };
            return Err(VocabError::Mismatch {
                id,
                target: describe(t, target.is_eog(id)),
                drafter: describe(d, drafter.is_eog(id)),
            });
        }
    }
    Ok(())
}
