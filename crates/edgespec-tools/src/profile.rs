//! Cost profiles: a machine's measured pass times, by batch size, for a
//! target and its drafters at one thread count, as JSON. `edgespec profile`
//! measures one on the device; the replay simulator prices recorded traces
//! with one; `profiles/` ships those of the machines this project measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use edgespec::costs::{BatchCurve, CostModel, MAX_BATCH};
use edgespec::draft::TIMED_CATCH_UP;

/// Profile format version written into every file.
pub const PROFILE_VERSION: u32 = 1;

/// One model's pass times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCosts {
    /// The model file's name (informational).
    pub model: String,
    /// Milliseconds of one forward pass over b tokens after a short context,
    /// by b (1..=65); sizes left out are interpolated.
    pub batch_ms: BTreeMap<usize, f64>,
    /// Milliseconds of one decode step (one token) in a drafting loop, when
    /// it differs from `batch_ms[1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<f64>,
}

impl ModelCosts {
    /// The batch curve.
    pub fn curve(&self) -> BatchCurve {
        let mut curve = BatchCurve::default();
        for (&b, &ms) in &self.batch_ms {
            curve.observe(b, ms);
        }
        curve
    }

    /// Milliseconds of one drafting step.
    pub fn step(&self) -> f64 {
        self.step_ms.unwrap_or_else(|| self.curve().ms(1))
    }

    fn validate(&self, role: &str) -> Result<(), ProfileError> {
        let invalid = |why: String| Err(ProfileError::Invalid(format!("{role}: {why}")));
        if self.batch_ms.is_empty() {
            return invalid("no batch_ms entries".into());
        }
        for (&b, &ms) in &self.batch_ms {
            if b == 0 || b > MAX_BATCH {
                return invalid(format!("batch size {b} is outside 1..={MAX_BATCH}"));
            }
            if !ms.is_finite() || ms <= 0.0 {
                return invalid(format!("batch {b}: {ms} ms is not a positive time"));
            }
        }
        if let Some(ms) = self.step_ms {
            if !ms.is_finite() || ms <= 0.0 {
                return invalid(format!("step_ms {ms} is not a positive time"));
            }
        }
        Ok(())
    }
}

/// A machine's cost curves at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostProfile {
    /// Format version ([`PROFILE_VERSION`]).
    pub version: u32,
    /// Short name (`vm-amd-epyc-compute-bound`, `rpi5`).
    pub name: String,
    /// The machine in words (CPU, cores, memory).
    pub machine: String,
    /// Threads the passes ran on.
    pub threads: u32,
    /// How it was measured (`edgespec profile`, `llama-bench`) and when.
    pub source: String,
    /// Anything a reader should know (estimated entries, caveats).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The target model.
    pub target: ModelCosts,
    /// Drafter models by kind (`model`, `trimmed`).
    #[serde(default)]
    pub drafters: BTreeMap<String, ModelCosts>,
}

/// Profile files that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a profile.
    #[error("{path}: not a cost profile: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// Values out of range.
    #[error("invalid cost profile: {0}")]
    Invalid(String),
    /// The profile has no curve for a drafter the caller needs.
    #[error("cost profile {profile} has no drafter {drafter:?} (it has: {have})")]
    NoDrafter {
        /// The profile's name.
        profile: String,
        /// The drafter asked for.
        drafter: String,
        /// The drafters it has.
        have: String,
    },
}

impl CostProfile {
    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let profile: Self = serde_json::from_str(&text).map_err(|e| ProfileError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks versions, sizes and times.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.version != PROFILE_VERSION {
            return Err(ProfileError::Invalid(format!(
                "version {} (this edgespec reads version {PROFILE_VERSION})",
                self.version
            )));
        }
        if self.threads == 0 {
            return Err(ProfileError::Invalid("threads is 0".into()));
        }
        self.target.validate("target")?;
        self.drafters
            .iter()
            .try_for_each(|(name, costs)| costs.validate(&format!("drafter {name}")))
    }

    /// The curve of drafter `name`.
    pub fn drafter(&self, name: &str) -> Result<&ModelCosts, ProfileError> {
        self.drafters
            .get(name)
            .ok_or_else(|| ProfileError::NoDrafter {
                profile: self.name.clone(),
                drafter: name.to_owned(),
                have: self.drafters.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// This machine's curves with the target on a server `ms` away: every
    /// target pass costs one round trip more, the target's curve standing
    /// for the server's and the drafters' for the board's (where a remote
    /// target leaves them); the name says so.
    pub fn with_round_trip(mut self, ms: f64) -> Result<Self, ProfileError> {
        if !ms.is_finite() || ms < 0.0 {
            return Err(ProfileError::Invalid(format!(
                "round trip {ms} ms is not a time"
            )));
        }
        for pass in self.target.batch_ms.values_mut() {
            *pass += ms;
        }
        if let Some(step) = &mut self.target.step_ms {
            *step += ms;
        }
        self.name = format!("{} +{ms} ms", self.name);
        Ok(self)
    }

    /// Fills `costs` with what a first prompt read would have measured on
    /// this machine: target passes at `sizes`, and the drafter's step and
    /// catch-up batches ([`TIMED_CATCH_UP`]).
    pub fn seed(&self, sizes: &[usize], drafter: Option<&ModelCosts>, costs: &mut CostModel) {
        let target = self.target.curve();
        for &b in sizes {
            costs.observe_verify(b, target.ms(b));
        }
        if let Some(d) = drafter {
            let curve = d.curve();
            costs.observe_draft(1, d.step());
            for b in TIMED_CATCH_UP {
                costs.observe_catch_up(b, curve.ms(b));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: [&str; 3] = [
        include_str!("../../../profiles/vm-amd-epyc-compute-bound.json"),
        include_str!("../../../profiles/vm-amd-epyc-avx2.json"),
        include_str!("../../../profiles/vm-intel-xeon-memory-bound.json"),
    ];

    #[test]
    fn shipped_profiles_parse_and_validate() {
        for text in SHIPPED {
            let p: CostProfile = serde_json::from_str(text).unwrap();
            p.validate().unwrap();
            assert_eq!(p.threads, 2);
            assert!(p.drafter("model").is_ok());
            assert!(p.drafter("trimmed").is_ok());
            // A batch of 4 costs more than one token, less than four.
            let t = p.target.curve();
            assert!(t.ms(4) > t.ms(1) && t.ms(4) < 4.0 * t.ms(1), "{}", p.name);
        }
    }

    #[test]
    fn bad_profiles_are_typed_errors() {
        let good: CostProfile = serde_json::from_str(SHIPPED[0]).unwrap();
        let mut p = good.clone();
        p.target.batch_ms.insert(0, 3.0);
        assert!(matches!(p.validate(), Err(ProfileError::Invalid(_))));
        let mut p = good.clone();
        p.target.batch_ms.insert(2, f64::NAN);
        assert!(matches!(p.validate(), Err(ProfileError::Invalid(_))));
        let mut p = good.clone();
        p.version = 99;
        assert!(matches!(p.validate(), Err(ProfileError::Invalid(_))));
        assert!(matches!(
            good.drafter("medusa"),
            Err(ProfileError::NoDrafter { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "{\"version\": 1}").unwrap();
        assert!(matches!(
            CostProfile::load(&path),
            Err(ProfileError::Parse { .. })
        ));
        assert!(matches!(
            CostProfile::load(&dir.path().join("none.json")),
            Err(ProfileError::Io { .. })
        ));
    }

    #[test]
    fn a_round_trip_is_paid_once_per_target_pass() {
        let p: CostProfile = serde_json::from_str(SHIPPED[2]).unwrap();
        let far = p.clone().with_round_trip(10.0).unwrap();
        far.validate().unwrap();
        let (near, far_curve) = (p.target.curve(), far.target.curve());
        for b in [1, 2, 9, 64] {
            assert!(
                (far_curve.ms(b) - near.ms(b) - 10.0).abs() < 1e-9,
                "batch {b}"
            );
        }
        // The board's drafters do not cross the network.
        assert_eq!(far.drafters, p.drafters);
        assert_eq!(far.name, format!("{} +10 ms", p.name));
        // So a draft of 8 costs less against one token than it did here.
        assert!(far_curve.ms(9) / far_curve.ms(1) < near.ms(9) / near.ms(1));
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            assert!(matches!(
                p.clone().with_round_trip(bad),
                Err(ProfileError::Invalid(_))
            ));
        }
    }

    #[test]
    fn seeding_gives_the_profiles_costs() {
        let p: CostProfile = serde_json::from_str(SHIPPED[1]).unwrap();
        let mut costs = CostModel::default();
        let d = p.drafter("model").unwrap();
        p.seed(&[1, 2, 4, 9, 65], Some(d), &mut costs);
        assert_eq!(costs.verify_ms(1), p.target.batch_ms[&1]);
        assert_eq!(costs.verify_ms(4), p.target.batch_ms[&4]);
        assert_eq!(costs.draft_ms(), Some(d.step()));
        assert!(costs.catch_up_is_measured());
    }
}
