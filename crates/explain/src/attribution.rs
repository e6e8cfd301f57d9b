//! Grad-CAM and saliency from one graph: the model's logits, a one-hot target mask fed per
//! call, score = Σ logits · mask, and the gradient of the score appended by autodiff.

use std::collections::HashMap;

use graph::{CpuExecutor, Executor, Feed, Graph, Mode, Result, RunId, TensorId, backward};
use kernels::Binary;

use crate::resize::bilinear;

/// Which attribution to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Selvaraju et al. 2017: ReLU(Σ_k α_k A_k) with α_k the spatial mean of d score / d A_k,
    /// for a convolutional feature map A, upsampled bilinearly to the input.
    GradCam { layer: TensorId },
    /// Simonyan et al. 2014: |d score / d input|: of an image, the maximum over channels; of
    /// a sequence [T, F], per time step and feature; of token ids, the L2 norm over the
    /// features of the gradient of their embedding vectors (ids have no gradient).
    Saliency,
}

/// An attribution map at the input's resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// [height, width], row-major, non-negative: an image's pixels, or a sequence's steps
    /// (height) and features (width, 1 for tokens).
    pub map: Vec<f32>,
    pub height: usize,
    pub width: usize,
    /// The class (or output) explained and its logit (or value).
    pub target: usize,
    pub score: f32,
    /// Softmax probabilities of every class of the explained row for this input.
    pub probabilities: Vec<f32>,
}

/// A model prepared for attribution on an executor: batch 1, evaluation mode.
pub struct Explainer<E: Executor = CpuExecutor> {
    exec: E,
    graph: Graph,
    input: TensorId,
    logits: TensorId,
    /// What saliency differentiates (the input, or the embedding of token ids) and its gradient.
    salient: TensorId,
    input_grad: TensorId,
    /// Feature maps whose gradient exists, with that gradient.
    feature_grads: HashMap<TensorId, TensorId>,
    /// The runs prepared so far, by the tensors they compute.
    runs: HashMap<Vec<TensorId>, RunId>,
    /// Samples per run (the input's first axis): methods that need many gradients (a path
    /// integral's points) run them this many at a time.
    batch: usize,
}

impl<E: Executor> Explainer<E> {
    /// `graph` computes `logits` [rows, classes] (one row per sample, or per position of a
    /// language model's window) from `input` (a batch of B: images [B, C, H, W], sequences
    /// [B, T, F] or token ids [B, T]; single explanations use the first sample of a run);
    /// `params` holds every parameter and state tensor by name. Runs go to `exec`.
    pub fn new(
        mut exec: E,
        mut graph: Graph,
        input: TensorId,
        logits: TensorId,
        params: &HashMap<String, Vec<f32>>,
    ) -> Result<Self> {
        for (name, value) in params {
            exec.write_named(name, value)?;
        }
        let classes = graph.shape(logits).to_vec();
        let mask = graph.input("target_mask", &classes);
        let picked = graph.binary(Binary::Mul, logits, mask)?;
        let score = graph.sum(picked)?;
        let grads = backward(&mut graph, score)?;
        let salient = salient(&graph, input);
        let input_grad = grads.of(salient).ok_or_else(|| graph::GraphError::Shape {
            node: graph.label(salient).to_string(),
            detail: "the score does not depend on the input".into(),
        })?;
        let feature_grads = graph.nodes().filter_map(|(id, _)| Some((id.out(0), grads.of(id.out(0))?))).collect();
        let batch = graph.shape(input).first().copied().unwrap_or(1).max(1);
        Ok(Explainer { exec, graph, input, logits, salient, input_grad, feature_grads, runs: HashMap::new(), batch })
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

    /// The model's logits for `image` (one sample, the input's shape without the batch axis):
    /// [rows, classes].
    pub fn logits(&mut self, image: &[f32]) -> Result<Vec<f32>> {
        let feed = self.feed(&[image], None);
        let all = self.compute(&feed, &[self.logits])?.remove(0);
        Ok(all[..all.len() / self.batch].to_vec())
    }

    /// The gradient of each sample's score (class `target` of output row `row`) with respect
    /// to what saliency differentiates (the input, or a token's embedding), the samples run
    /// [`Self::batch`] at a time: one vector per sample.
    pub fn gradients(&mut self, samples: &[&[f32]], (row, target): (usize, usize)) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(self.batch) {
            let feed = self.feed(chunk, Some((row, target)));
            let grad = self.compute(&feed, &[self.input_grad])?.remove(0);
            out.extend(grad.chunks(grad.len() / self.batch).take(chunk.len()).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    /// Samples per run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Classes (or outputs) per output row.
    pub fn classes(&self) -> usize {
        self.graph.shape(self.logits)[1]
    }

    /// The softmax probabilities of every class for `image` (of its first row).
    pub fn probabilities(&mut self, image: &[f32]) -> Result<Vec<f32>> {
        let classes = self.graph.shape(self.logits)[1];
        Ok(softmax(&self.logits(image)?[..classes]))
    }

    /// `samples` (at most [`Self::batch`]; values, or token ids held as f32) as the input,
    /// the last repeated into the batch's unused places, and the target mask picking class
    /// `target` of output row `row` of each of them.
    fn feed(&self, samples: &[&[f32]], target: Option<(usize, usize)>) -> Feed {
        let classes = self.graph.shape(self.logits)[1];
        let rows = self.graph.shape(self.logits)[0] / self.batch;
        let mut mask = vec![0.0; self.graph.numel(self.logits)];
        if let Some((row, t)) = target {
            for b in 0..samples.len() {
                mask[(b * rows + row) * classes + t.min(classes - 1)] = 1.0;
            }
        }
        let padding = samples.last().copied().unwrap_or(&[]);
        let input: Vec<f32> =
            (0..self.batch).flat_map(|b| samples.get(b).copied().unwrap_or(padding).to_vec()).collect();
        let mut feed = Feed::default();
        match &self.graph.node(self.input.node).op {
            graph::Op::Labels { name, .. } => {
                feed.labels.insert(name.clone(), input.iter().map(|&id| id as u32).collect());
            }
            _ => {
                feed.inputs.insert(self.graph_input_name(), input);
            }
        }
        feed.inputs.insert("target_mask".into(), mask);
        feed
    }

    /// The attribution of `image` for class `target`, or for the predicted class when None.
    pub fn explain(&mut self, image: &[f32], method: Method, target: Option<usize>) -> Result<Attribution> {
        self.explain_row(image, method, 0, target)
    }

    /// The attribution of `sample` for class `target` of output row `row` (a language
    /// model's position), or for that row's predicted class when None.
    pub fn explain_row(
        &mut self,
        sample: &[f32],
        method: Method,
        row: usize,
        target: Option<usize>,
    ) -> Result<Attribution> {
        let classes = self.graph.shape(self.logits)[1];
        let all = self.logits(sample)?;
        let logits = &all[row * classes..(row + 1) * classes];
        let target = target.unwrap_or_else(|| argmax(logits)).min(classes - 1);
        let shape = self.graph.shape(self.input).to_vec();
        let (channels, height, width) = match shape[..] {
            [_, c, h, w] => (c, h, w),
            [_, t, f] => (1, t, f),
            [_, t] => (1, t, 1),
            _ => (1, 1, shape.iter().product()),
        };
        let map = match method {
            Method::Saliency => {
                let grad = self.gradients(&[sample], (row, target))?.remove(0);
                if self.salient != self.input {
                    // Each token's embedding gradient, as one L2 norm.
                    let dim = grad.len() / height.max(1);
                    grad.chunks(dim).map(|g| g.iter().map(|v| v * v).sum::<f32>().sqrt()).collect()
                } else {
                    (0..height * width)
                        .map(|p| (0..channels).map(|c| grad[c * height * width + p].abs()).fold(0.0, f32::max))
                        .collect()
                }
            }
            Method::GradCam { layer } => {
                let Some(&layer_grad) = self.feature_grads.get(&layer) else {
                    return Err(graph::GraphError::Shape {
                        node: self.graph.label(layer).to_string(),
                        detail: "the class score does not depend on this layer".into(),
                    });
                };
                let fmap = self.graph.shape(layer).to_vec();
                if fmap.len() != 4 {
                    return Err(graph::GraphError::Shape {
                        node: self.graph.label(layer).to_string(),
                        detail: format!("Grad-CAM needs a [B, K, h, w] feature map, this layer gives {fmap:?}"),
                    });
                }
                let feed = self.feed(&[sample], Some((row, target)));
                let values = self.compute(&feed, &[layer, layer_grad])?;
                let first = |v: &[f32]| v[..v.len() / self.batch].to_vec();
                let cam = grad_cam(&first(&values[0]), &first(&values[1]), fmap[1], fmap[2] * fmap[3]);
                bilinear(&cam, fmap[2], fmap[3], height, width)
            }
        };
        Ok(Attribution { map, height, width, target, score: logits[target], probabilities: softmax(logits) })
    }

    fn graph_input_name(&self) -> String {
        match &self.graph.node(self.input.node).op {
            graph::Op::Input { name } => name.clone(),
            _ => "x".into(),
        }
    }
}

/// What saliency differentiates for `input`: the input itself, or for token ids (which have no
/// gradient) the embedding vectors they look up.
fn salient(graph: &Graph, input: TensorId) -> TensorId {
    if !matches!(graph.node(input.node).op, graph::Op::Labels { .. }) {
        return input;
    }
    let embedding = graph.nodes().find(|(_, n)| n.op.name() == "embedding" && n.inputs.first() == Some(&input));
    embedding.map_or(input, |(id, _)| id.out(0))
}

/// ReLU(Σ_k α_k A_k), α_k = mean over positions of the gradient of channel k.
fn grad_cam(activations: &[f32], grads: &[f32], channels: usize, positions: usize) -> Vec<f32> {
    let mut cam = vec![0f64; positions];
    for k in 0..channels {
        let g = &grads[k * positions..(k + 1) * positions];
        let alpha = g.iter().map(|&v| v as f64).sum::<f64>() / positions as f64;
        for (c, &a) in cam.iter_mut().zip(&activations[k * positions..(k + 1) * positions]) {
            *c += alpha * a as f64;
        }
    }
    cam.into_iter().map(|v| v.max(0.0) as f32).collect()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let exps: Vec<f64> = logits.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}
