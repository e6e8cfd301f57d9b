//! `dlcli explain --check`: the faithfulness checks of one method over one or more samples,
//! printed as a table and kept for the sidecar and the report.

use std::collections::HashMap;

use anyhow::Result;
use explain::{Baseline, Curves, Explainer, FAITHFUL_MARGIN, INSENSITIVE, Method, Stage, Target};
use graph::Executor;
use serde_json::{Value, json};

use crate::context::Loaded;
use crate::model;
use crate::task::Task;

/// Deletion and insertion curves have this many points past the start (or one per position
/// when there are fewer): 2% of an image at a time.
const CURVE_STEPS: usize = 50;

/// Random orders averaged for the curves' reference.
const RANDOM_ORDERS: usize = 3;

/// What the checks measured, averaged over the samples.
pub struct Checked {
    pub samples: usize,
    /// Each stage's top layer and the mean rank correlation with the trained model's map.
    pub stages: Vec<(String, f64)>,
    pub curves: Curves,
    pub random: Curves,
    /// The method's own figures (completeness gap, additivity, R²), averaged.
    pub figures: Vec<(String, f64)>,
}

impl Checked {
    /// The rank correlation after every layer is re-initialised (0 for a model without
    /// parameters to re-initialise).
    pub fn randomised(&self) -> f64 {
        self.stages.last().map_or(0.0, |s| s.1)
    }

    pub fn sensitive(&self) -> bool {
        self.randomised() <= INSENSITIVE
    }

    pub fn faithful(&self) -> bool {
        self.curves.faithful(&self.random)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "samples": self.samples,
            "randomisation": self.stages.iter().map(|(layer, r)| json!({"layer": layer, "spearman": r})).collect::<Vec<_>>(),
            "randomised_spearman": self.randomised(),
            "insensitive_above": INSENSITIVE,
            "sensitive_to_the_model": self.sensitive(),
            "deletion_auc": self.curves.deletion,
            "insertion_auc": self.curves.insertion,
            "random_deletion_auc": self.random.deletion,
            "random_insertion_auc": self.random.insertion,
            "faithful_margin": FAITHFUL_MARGIN,
            "faithful": self.faithful(),
            "figures": self.figures.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }

    /// The table `--check` prints.
    pub fn table(&self, method: &str) -> String {
        let mut out = format!("check of {method} over {} sample(s)\n", self.samples);
        out += "  cascading randomisation: Spearman of the map with the trained model's, layers re-initialised from the top\n";
        for (layer, r) in &self.stages {
            out += &format!("    {layer:<24} {r:>7.3}\n");
        }
        let verdict = if self.sensitive() { "sensitive to the model" } else { "INSENSITIVE to the model" };
        out += &format!("    after all layers: {:.3} ({verdict}; flagged above {INSENSITIVE})\n", self.randomised());
        out += &format!(
            "  deletion AUC  {:.3}   random order {:.3}\n  insertion AUC {:.3}   random order {:.3}\n",
            self.curves.deletion, self.random.deletion, self.curves.insertion, self.random.insertion
        );
        let verdict = if self.faithful() { "faithful" } else { "NOT faithful" };
        out += &format!(
            "    insertion - deletion {:.3} against random's {:.3} ({verdict}: needs {FAITHFUL_MARGIN} above random's)\n",
            self.curves.margin(),
            self.random.margin()
        );
        for (name, value) in &self.figures {
            out += &format!("  {name} {value:.4}\n");
        }
        out
    }
}

/// The cascade's stages for `loaded`: its layers with parameters from the last to the first,
/// each re-initialised as a fresh model of another seed initialises it.
pub fn stages(loaded: &Loaded, task: &dyn Task, batch: usize) -> Result<Vec<Stage>> {
    let mut config = loaded.config.clone();
    config.train.seed = config.train.seed.wrapping_add(0x5EED);
    let fresh = model::build_layers(&config, task, batch)?.0.init.values();
    let of_layer = |layer: &str| -> HashMap<String, Vec<f32>> {
        let prefix = format!("{layer}.");
        let own = |name: &str| name.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('.'));
        fresh.iter().filter(|(name, _)| own(name)).map(|(n, v)| (n.clone(), v.clone())).collect()
    };
    Ok(loaded
        .config
        .layers
        .iter()
        .rev()
        .map(|l| (l.name.clone(), of_layer(&l.name)))
        .filter(|(_, tensors)| !tensors.is_empty())
        .collect())
}

/// The checks on each sample (a model input, the output row explained, the method resolved
/// for it), explaining class `class` (each sample's predicted class when None), positions
/// removed to `baseline`.
pub fn run<E: Executor>(
    explainer: &mut Explainer<E>,
    stages: &[Stage],
    samples: &[(&[f32], usize, &Method)],
    baseline: &Baseline,
    class: Option<usize>,
    seed: u64,
) -> Result<Checked> {
    let n = samples.len() as f64;
    let mut correlations = vec![0.0; stages.len()];
    let (mut curves, mut random) = (Curves { deletion: 0.0, insertion: 0.0 }, Curves { deletion: 0.0, insertion: 0.0 });
    let mut figures: Vec<(String, f64)> = Vec::new();
    let layout = explainer.layout();
    for (i, &(sample, row, method)) in samples.iter().enumerate() {
        let attribution = explainer.explain(sample, method, row, class)?;
        let target: Target = attribution.target;
        let cascade =
            explainer.randomisation(stages, |e| Ok(e.explain(sample, method, row, Some(target.class))?.map))?;
        for (sum, (_, r)) in correlations.iter_mut().zip(&cascade) {
            *sum += r / n;
        }
        let x = explainer.encode(sample)?;
        let absent = baseline.of(&x, layout);
        let steps = CURVE_STEPS.min(layout.positions());
        let c = explainer.curves(&x, &absent, &attribution.map, steps, target)?;
        let r = explainer.random_curves(&x, &absent, steps, RANDOM_ORDERS, seed.wrapping_add(i as u64), target)?;
        for (sum, value) in [(&mut curves, c), (&mut random, r)] {
            sum.deletion += value.deletion / n;
            sum.insertion += value.insertion / n;
        }
        for (name, value) in attribution.figures.iter().filter(|(name, _)| is_check_figure(name)) {
            match figures.iter_mut().find(|(k, _)| k == name) {
                Some((_, sum)) => *sum += value / n,
                None => figures.push((name.to_string(), value / n)),
            }
        }
    }
    let stages = stages.iter().zip(correlations).map(|((name, _), r)| (name.clone(), r)).collect();
    Ok(Checked { samples: samples.len(), stages, curves, random, figures })
}

/// The method figures that say how far to trust it (not its bookkeeping, such as a
/// baseline's score).
fn is_check_figure(name: &str) -> bool {
    matches!(name, "completeness_gap" | "relative_completeness_gap" | "additivity_gap" | "surrogate_r2")
}
