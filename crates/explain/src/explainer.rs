//! A model prepared for attribution: the runs every method is built from. One graph gives the
//! model's logits, a target mask fed per run, score = Σ logits · mask, and the gradient of the
//! score appended by autodiff. Methods see the model as a function of one continuous vector
//! per sample, the *explained input*: the input itself, or for token ids (which cannot be
//! perturbed or differentiated) the embedding vectors they look up, the graph cut there.

use std::collections::HashMap;

use graph::{CpuExecutor, Executor, Feed, Graph, GraphError, Mode, Op, Result, RunId, TensorId, backward};
use kernels::Binary;

/// What is explained: class (or output) `class` of output row `row` (a language model's
/// position; 0 for models with one output row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The output row.
    pub row: usize,
    /// The class (or output) of the row.
    pub class: usize,
}

/// How the explained input's values lie: `height` × `width` positions (an image's pixels, a
/// series' steps and features, a text's tokens with width 1), each with `depth` values (an
/// image's channels, stored channel-major; a token's embedding, stored position-major).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Position rows.
    pub height: usize,
    /// Positions of a row.
    pub width: usize,
    /// Values per position.
    pub depth: usize,
    /// Whether the values are stored channel-major (an image's), else position-major.
    pub channels_first: bool,
}

impl Layout {
    /// Positions: height × width.
    pub fn positions(&self) -> usize {
        self.height * self.width
    }

    /// Values: positions × depth.
    pub fn len(&self) -> usize {
        self.positions() * self.depth
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where value `d` of position `p` is.
    pub fn index(&self, p: usize, d: usize) -> usize {
        if self.channels_first { d * self.positions() + p } else { p * self.depth + d }
    }

    /// The explained input's shape without the batch axis.
    pub fn shape(&self) -> Vec<usize> {
        match (self.channels_first, self.depth) {
            (true, _) => vec![self.depth, self.height, self.width],
            (false, 1) => vec![self.height, self.width],
            (false, d) => vec![self.height, d],
        }
    }
}

/// Token ids turned into the explained input: the original graph's run up to the embedding.
struct Lookup {
    graph: Graph,
    ids: String,
    run: Option<RunId>,
}

/// A model prepared for attribution on an executor, in evaluation mode, at the batch its graph
/// was built for: methods that need many passes run them that many samples at a time.
pub struct Explainer<E: Executor = CpuExecutor> {
    exec: E,
    graph: Graph,
    /// The explained input (a graph input after the cut) and the gradient of the score by it.
    explained: TensorId,
    explained_grad: TensorId,
    lookup: Option<Lookup>,
    logits: TensorId,
    /// Feature maps whose gradient exists, with that gradient.
    feature_grads: HashMap<TensorId, TensorId>,
    /// The runs prepared so far, by the tensors they compute.
    runs: HashMap<Vec<TensorId>, RunId>,
    batch: usize,
    /// The trained parameters, to put back after a randomisation check.
    params: HashMap<String, Vec<f32>>,
}

const EXPLAINED: &str = "explained";
const TARGET_MASK: &str = "target_mask";

impl<E: Executor> Explainer<E> {
    /// `graph` computes `logits` [rows, classes] (one row per sample, or per position of a
    /// language model's window) from `input` (a batch: images [B, C, H, W], sequences
    /// [B, T, F] or token ids [B, T]); `params` holds every parameter and state tensor by
    /// name. Runs go to `exec`.
    pub fn new(
        mut exec: E,
        graph: Graph,
        input: TensorId,
        logits: TensorId,
        params: &HashMap<String, Vec<f32>>,
    ) -> Result<Self> {
        for (name, value) in params {
            exec.write_named(name, value)?;
        }
        let ids = match &graph.node(input.node).op {
            Op::Labels { name, .. } => Some(name.clone()),
            _ => None,
        };
        let (mut cut, explained, lookup) = match ids {
            Some(ids) => {
                let embedding = graph
                    .nodes()
                    .find(|(_, n)| n.op.name() == "embedding" && n.inputs.first() == Some(&input))
                    .map(|(id, _)| id.out(0))
                    .ok_or_else(|| GraphError::Unsupported {
                        node: graph.label(input).to_string(),
                        detail: "token ids that no embedding looks up cannot be explained".into(),
                    })?;
                let mut cut = graph.clone();
                cut.cut(embedding, EXPLAINED)?;
                (cut, embedding, Some(Lookup { graph, ids, run: None }))
            }
            None => (graph, input, None),
        };
        let shape = cut.shape(logits).to_vec();
        let mask = cut.input(TARGET_MASK, &shape);
        let picked = cut.binary(Binary::Mul, logits, mask)?;
        let score = cut.sum(picked)?;
        let grads = backward(&mut cut, score)?;
        let explained_grad = grads.of(explained).ok_or_else(|| GraphError::NotDifferentiable {
            node: cut.label(explained).to_string(),
            detail: "the score does not depend on the input".into(),
        })?;
        let feature_grads = cut.nodes().filter_map(|(id, _)| Some((id.out(0), grads.of(id.out(0))?))).collect();
        let batch = cut.shape(explained).first().copied().unwrap_or(1).max(1);
        Ok(Explainer {
            exec,
            graph: cut,
            explained,
            explained_grad,
            lookup,
            logits,
            feature_grads,
            runs: HashMap::new(),
            batch,
            params: params.clone(),
        })
    }

    /// Replaces parameter (or state tensor) `name` of the model with `values`.
    pub fn write_param(&mut self, name: &str, values: &[f32]) -> Result<()> {
        if !self.params.contains_key(name) {
            return Err(GraphError::UnknownName { name: name.into(), what: "parameter of this model" });
        }
        self.exec.write_named(name, values)
    }

    /// Puts parameter `name`'s trained values back.
    pub fn restore_param(&mut self, name: &str) -> Result<()> {
        match self.params.get(name) {
            Some(values) => self.exec.write_named(name, values),
            None => Err(GraphError::UnknownName { name: name.into(), what: "parameter of this model" }),
        }
    }

    /// Samples per run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Classes (or outputs) per output row.
    pub fn classes(&self) -> usize {
        self.graph.shape(self.logits)[1]
    }

    /// Output rows per sample.
    pub fn rows(&self) -> usize {
        self.graph.shape(self.logits)[0] / self.batch
    }

    /// How the explained input's values lie.
    pub fn layout(&self) -> Layout {
        match self.graph.shape(self.explained)[1..] {
            [c, h, w] if self.lookup.is_none() => Layout { height: h, width: w, depth: c, channels_first: true },
            [t, d] if self.lookup.is_some() => Layout { height: t, width: 1, depth: d, channels_first: false },
            [t, f] => Layout { height: t, width: f, depth: 1, channels_first: false },
            [t] => Layout { height: t, width: 1, depth: 1, channels_first: false },
            ref other => Layout { height: 1, width: other.iter().product(), depth: 1, channels_first: false },
        }
    }

    /// Whether the model reads token ids (and the explained input is their embeddings).
    pub fn is_tokens(&self) -> bool {
        self.lookup.is_some()
    }

    /// The graph the methods run (after the cut at an embedding), for its tensors' shapes.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// One sample of the model's input (values, or token ids held as f32) as the explained
    /// input: itself, or the embedding vectors of its ids.
    pub fn encode(&mut self, sample: &[f32]) -> Result<Vec<f32>> {
        let Some(lookup) = &mut self.lookup else { return Ok(sample.to_vec()) };
        let run = match lookup.run {
            Some(run) => run,
            None => *lookup.run.insert(self.exec.prepare(&lookup.graph, Mode::Eval, &[self.explained])?),
        };
        let ids: Vec<u32> = (0..self.batch).flat_map(|_| sample.iter().map(|&id| id as u32)).collect();
        let mut feed = Feed::default();
        feed.labels.insert(lookup.ids.clone(), ids);
        self.exec.run(run, &feed, 0)?;
        let all = self.exec.read(run, self.explained)?;
        Ok(all[..all.len() / self.batch].to_vec())
    }

    /// Runs the graph on `feed` for `outputs` (a run prepared the first time they are asked
    /// for) and reads them.
    fn compute(&mut self, feed: &Feed, outputs: &[TensorId]) -> Result<Vec<Vec<f32>>> {
        let run = match self.runs.get(outputs) {
            Some(&run) => run,
            None => {
                let run = self.exec.prepare(&self.graph, Mode::Eval, outputs)?;
                *self.runs.entry(outputs.to_vec()).or_insert(run)
            }
        };
        self.exec.run(run, feed, 0)?;
        outputs.iter().map(|&t| self.exec.read(run, t)).collect()
    }

    /// `outputs` for each of `samples` (explained inputs), run [`Self::batch`] at a time with
    /// the target mask picking `target`: per sample, per output, that sample's part.
    fn per_sample(
        &mut self,
        samples: &[&[f32]],
        target: Option<Target>,
        outputs: &[TensorId],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let mut out = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(self.batch) {
            let feed = self.feed(chunk, target);
            let values = self.compute(&feed, outputs)?;
            for b in 0..chunk.len() {
                out.push(values.iter().map(|v| v.chunks(v.len() / self.batch).nth(b).unwrap().to_vec()).collect());
            }
        }
        Ok(out)
    }

    /// Each sample's logits, [rows × classes].
    pub fn logits(&mut self, samples: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let logits = self.logits;
        Ok(self.per_sample(samples, None, &[logits])?.into_iter().map(|mut v| v.remove(0)).collect())
    }

    /// Each sample's score: the target's logit (or output).
    pub fn scores(&mut self, samples: &[&[f32]], target: Target) -> Result<Vec<f32>> {
        let classes = self.classes();
        Ok(self.logits(samples)?.iter().map(|l| l[target.row * classes + target.class]).collect())
    }

    /// The gradient of each sample's score with respect to its explained input.
    pub fn gradients(&mut self, samples: &[&[f32]], target: Target) -> Result<Vec<Vec<f32>>> {
        let grad = self.explained_grad;
        Ok(self.per_sample(samples, Some(target), &[grad])?.into_iter().map(|mut v| v.remove(0)).collect())
    }

    /// Feature map `layer` of `sample` and the score's gradient by it.
    pub fn activations_and_gradients(
        &mut self,
        sample: &[f32],
        layer: TensorId,
        target: Target,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let Some(&layer_grad) = self.feature_grads.get(&layer) else {
            return Err(GraphError::NotDifferentiable {
                node: self.graph.label(layer).to_string(),
                detail: "the score does not depend on this layer".into(),
            });
        };
        let mut values = self.per_sample(&[sample], Some(target), &[layer, layer_grad])?.remove(0);
        let grad = values.pop().unwrap();
        Ok((values.pop().unwrap(), grad))
    }

    /// `samples` (at most [`Self::batch`]) as the explained input, the last repeated into the
    /// batch's unused places, and the target mask picking `target` of each of them.
    fn feed(&self, samples: &[&[f32]], target: Option<Target>) -> Feed {
        let (rows, classes) = (self.rows(), self.classes());
        let mut mask = vec![0.0; self.graph.numel(self.logits)];
        if let Some(t) = target {
            for b in 0..samples.len() {
                mask[(b * rows + t.row) * classes + t.class] = 1.0;
            }
        }
        let padding = samples.last().copied().unwrap_or(&[]);
        let input: Vec<f32> =
            (0..self.batch).flat_map(|b| samples.get(b).copied().unwrap_or(padding)).copied().collect();
        let mut feed = Feed::default();
        let name = match &self.graph.node(self.explained.node).op {
            Op::Input { name } => name.clone(),
            _ => unreachable!("the explained input is a graph input"),
        };
        feed.inputs.insert(name, input);
        feed.inputs.insert(TARGET_MASK.into(), mask);
        feed
    }
}

pub(crate) fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// The softmax of one row of logits, computed in f64.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let exps: Vec<f64> = logits.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}
