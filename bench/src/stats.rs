//! Figures, ratios and targets: what a run measures and how it is reported.

use serde::Serialize;

/// One measured figure: the median of its samples and their range.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable identifier (`section.what`), for tools reading the JSON.
    pub id: String,
    /// What was measured, for people.
    pub name: String,
    /// Unit of `median`, `low` and `high`.
    pub unit: String,
    pub median: f64,
    /// Lowest sample (or p10 where noted).
    pub low: f64,
    /// Highest sample (or p90 where noted).
    pub high: f64,
    /// Number of samples.
    pub samples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Figure {
    /// A figure from samples: median and full range.
    pub fn from_samples(id: &str, name: &str, unit: &str, samples: &[f64]) -> Self {
        assert!(!samples.is_empty(), "{id}: no samples");
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            id: id.into(),
            name: name.into(),
            unit: unit.into(),
            median: median(&sorted),
            low: sorted[0],
            high: sorted[sorted.len() - 1],
            samples: sorted.len(),
            note: None,
        }
    }

    /// A single value (a derived figure, or one that is measured once).
    pub fn single(id: &str, name: &str, unit: &str, value: f64) -> Self {
        Self::from_samples(id, name, unit, &[value])
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// The median of sorted samples.
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if !n.is_multiple_of(2) {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The `q` quantile (0..=1) of sorted samples, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A target of the issue, checked against this run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What the target says.
    pub target: String,
    /// What this run measured, in words and numbers.
    pub measured: String,
    /// The measured value compared.
    pub value: f64,
    /// The bound it is compared with.
    pub bound: f64,
    /// Whether the value is within the bound.
    pub met: bool,
}

impl Target {
    /// `value` must be at most `bound`.
    pub fn at_most(target: &str, measured: String, value: f64, bound: f64) -> Self {
        Self {
            target: target.into(),
            measured,
            value,
            bound,
            met: value <= bound,
        }
    }

    /// `value` must be at least `bound`.
    pub fn at_least(target: &str, measured: String, value: f64, bound: f64) -> Self {
        Self {
            target: target.into(),
            measured,
            value,
            bound,
            met: value >= bound,
        }
    }
}
