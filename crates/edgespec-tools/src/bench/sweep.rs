//! `--sweep` specifications: which extra columns a benchmark runs.

use super::Mode;

/// One `--sweep` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sweep {
    /// `gamma=A..B`: model (and trimmed) modes at every fixed length A..=B.
    Gamma(usize, usize),
    /// `k=K1,K2,…`: the drafter trimmed to each K.
    K(Vec<u32>),
    /// `threads=T1,T2,…`: every mode at each thread count.
    Threads(Vec<i32>),
}

/// A `--sweep` item that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--sweep {spec:?}: {reason}")]
pub struct SweepError {
    /// The item as given.
    pub spec: String,
    /// What is wrong.
    pub reason: String,
}

/// Longest fixed draft a gamma sweep runs.
const GAMMA_SWEEP_MAX: usize = 16;

impl Sweep {
    /// Parses `gamma=A..B`, `k=K1,K2,…` or `threads=T1,T2,…`.
    pub fn parse(spec: &str) -> Result<Self, SweepError> {
        let err = |reason: String| SweepError {
            spec: spec.to_owned(),
            reason,
        };
        let (key, value) = spec
            .split_once('=')
            .ok_or_else(|| err("expected NAME=VALUE".into()))?;
        match key {
            "gamma" => {
                let (a, b) = value
                    .split_once("..")
                    .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                    .ok_or_else(|| err("expected gamma=A..B with numbers".into()))?;
                if a > b || b > GAMMA_SWEEP_MAX {
                    return Err(err(format!("need A <= B <= {GAMMA_SWEEP_MAX}")));
                }
                Ok(Self::Gamma(a, b))
            }
            "k" => value
                .split(',')
                .map(|item| {
                    item.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|&k| k > 0)
                        .ok_or_else(|| err(format!("{item:?} is not a positive number")))
                })
                .collect::<Result<_, _>>()
                .map(Self::K),
            "threads" => {
                let mut counts = Vec::new();
                for item in value.split(',') {
                    let t = item
                        .trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|t| (1..=1024).contains(t))
                        .ok_or_else(|| {
                            err(format!("{item:?} is not a thread count (1 to 1024)"))
                        })?;
                    if !counts.contains(&t) {
                        counts.push(t);
                    }
                }
                Ok(Self::Threads(counts))
            }
            _ => Err(err("use gamma=A..B, k=K1,K2,… or threads=T1,T2,…".into())),
        }
    }

    /// The modes a gamma sweep adds: model at each length, and trimmed when
    /// a trimmed drafter is given.
    pub fn gamma_modes(a: usize, b: usize, trimmed: bool) -> Vec<Mode> {
        use edgespec::draft::{DraftLength, Trees};
        use edgespec::DraftKind;
        let kinds: &[DraftKind] = if trimmed {
            &[DraftKind::Model, DraftKind::Trimmed]
        } else {
            &[DraftKind::Model]
        };
        (a..=b)
            .flat_map(|g| {
                kinds
                    .iter()
                    .map(move |&k| Mode::Spec(k, DraftLength::Fixed(g), Trees::Auto))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_parse_and_bad_ones_say_why() {
        assert_eq!(Sweep::parse("gamma=1..3"), Ok(Sweep::Gamma(1, 3)));
        assert_eq!(Sweep::parse("k=8192,4096"), Ok(Sweep::K(vec![8192, 4096])));
        assert_eq!(
            Sweep::parse("threads=1,2,2"),
            Ok(Sweep::Threads(vec![1, 2]))
        );
        for bad in [
            "gamma=3..1",
            "gamma=1..17",
            "gamma=x",
            "k=0",
            "k=a",
            "threads=0",
            "threads=2000",
            "beta=1",
            "gamma",
        ] {
            assert!(Sweep::parse(bad).is_err(), "{bad}");
        }
        let names: Vec<String> = Sweep::gamma_modes(1, 2, true)
            .iter()
            .map(Mode::name)
            .collect();
        assert_eq!(names, ["model:1", "trimmed:1", "model:2", "trimmed:2"]);
    }
}
