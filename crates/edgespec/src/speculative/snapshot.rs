//! What a speculative run measured and learned, kept between processes (a
//! cost cache): the pass costs beside the policy's process-level
//! estimates. It lives above both, so the cost model knows nothing of the
//! policy.

use crate::costs::MeasuredCosts;
use crate::speculative::policy::Experience;

/// Pass costs and what the draft-length policy learned, as one record: a
/// session given one reads its first prompt without timing it and does not
/// start from optimistic priors.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CostSnapshot {
    /// Pass costs (stored flat, beside `learned`).
    #[serde(flatten)]
    pub costs: MeasuredCosts,
    /// What the draft-length policy learned of acceptance (its process
    /// level); absent from what earlier versions kept. Stored as `learned`.
    #[serde(default, rename = "learned")]
    pub experience: Option<Experience>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_the_flat_layout_earlier_versions_wrote() {
        let old = r#"{"verify": [[1, 50.0]], "draft": 9.0, "catch_up": [[2, 12.5]]}"#;
        let snapshot: CostSnapshot = serde_json::from_str(old).unwrap();
        assert_eq!(snapshot.costs.verify, vec![(1, 50.0)]);
        assert_eq!(snapshot.costs.draft, Some(9.0));
        assert_eq!(snapshot.costs.catch_up, vec![(2, 12.5)]);
        assert_eq!(snapshot.experience, None);
        let written = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(written["verify"], serde_json::json!([[1, 50.0]]));
    }
}
