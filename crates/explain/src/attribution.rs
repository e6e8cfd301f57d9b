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
    /// Simonyan et al. 2014: |d score / d input|, the maximum over channels.
    Saliency,
}

/// An attribution map at the input's resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// [height, width], row-major, non-negative.
    pub map: Vec<f32>,
    pub height: usize,
    pub width: usize,
    /// The class explained and its logit.
    pub target: usize,
    pub score: f32,
    /// Softmax probabilities of every class for this input.
    pub probabilities: Vec<f32>,
}

/// A model prepared for attribution on an executor: batch 1, evaluation mode.
pub struct Explainer<E: Executor = CpuExecutor> {
    exec: E,
    graph: Graph,
    input: TensorId,
    logits: TensorId,
    input_grad: TensorId,
    /// Feature maps whose gradient exists, with that gradient.
    feature_grads: HashMap<TensorId, TensorId>,
    /// The runs prepared so far, by the tensors they compute.
    runs: HashMap<Vec<TensorId>, RunId>,
}

impl<E: Executor> Explainer<E> {
    /// `graph` computes `logits` [1, classes] from `input` [1, C, H, W]; `params` holds every
    /// parameter and state tensor by name. Runs go to `exec`.
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
        let input_grad = grads.of(input).expect("the score depends on the input");
        let feature_grads = graph.nodes().filter_map(|(id, _)| Some((id.out(0), grads.of(id.out(0))?))).collect();
        Ok(Explainer { exec, graph, input, logits, input_grad, feature_grads, runs: HashMap::new() })
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

    /// The model's logits for `image` (one sample, the input's shape without the batch axis).
    pub fn logits(&mut self, image: &[f32]) -> Result<Vec<f32>> {
        let feed = self.feed(image, None);
        Ok(self.compute(&feed, &[self.logits])?.remove(0))
    }

    /// The softmax probabilities of every class for `image`.
    pub fn probabilities(&mut self, image: &[f32]) -> Result<Vec<f32>> {
        Ok(softmax(&self.logits(image)?))
    }

    fn feed(&self, image: &[f32], target: Option<usize>) -> Feed {
        let classes = self.graph.shape(self.logits)[1];
        let mut mask = vec![0.0; classes];
        if let Some(t) = target {
            mask[t.min(classes - 1)] = 1.0;
        }
        let mut feed = Feed::default();
        feed.inputs.insert(self.graph_input_name(), image.to_vec());
        feed.inputs.insert("target_mask".into(), mask);
        feed
    }

    /// The attribution of `image` for class `target`, or for the predicted class when None.
    pub fn explain(&mut self, image: &[f32], method: Method, target: Option<usize>) -> Result<Attribution> {
        let logits = self.logits(image)?;
        let target = target.unwrap_or_else(|| argmax(&logits)).min(logits.len() - 1);
        let feed = self.feed(image, Some(target));
        let shape = self.graph.shape(self.input).to_vec();
        let (channels, height, width) = (shape[1], shape[2], shape[3]);
        let map = match method {
            Method::Saliency => {
                let grad = self.compute(&feed, &[self.input_grad])?.remove(0);
                (0..height * width)
                    .map(|p| (0..channels).map(|c| grad[c * height * width + p].abs()).fold(0.0, f32::max))
                    .collect()
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
                        detail: format!("Grad-CAM needs a [1, K, h, w] feature map, this layer gives {fmap:?}"),
                    });
                }
                let values = self.compute(&feed, &[layer, layer_grad])?;
                let cam = grad_cam(&values[0], &values[1], fmap[1], fmap[2] * fmap[3]);
                bilinear(&cam, fmap[2], fmap[3], height, width)
            }
        };
        Ok(Attribution { map, height, width, target, score: logits[target], probabilities: softmax(&logits) })
    }

    fn graph_input_name(&self) -> String {
        match &self.graph.node(self.input.node).op {
            graph::Op::Input { name } => name.clone(),
            _ => "x".into(),
        }
    }
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
