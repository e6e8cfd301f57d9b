//! Incremental decoding: a model built to take one token at a time, carrying what earlier
//! tokens left instead of recomputing them. Its causal self-attention layers keep a cache of
//! every earlier token's keys and values (the KV cache), its recurrent layers their last state,
//! and its position layers read the token's position. A [`crate::Model`] built with [`Decoding`] set
//! declares the same parameters as the model trained on whole windows, so its checkpoint loads
//! as it is; a [`Decoder`] runs it.

use std::collections::HashMap;

use crate::error::Result;
use crate::executor::{Executor, RunId};
use crate::feed::Feed;
use crate::ir::{Graph, Mode, TensorId};

/// How a carried tensor changes from one token to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// A cache [rows, context - 1, width] gets the token's [rows, 1, width] at its position.
    Append {
        /// Rows of the cache: batch × heads.
        rows: usize,
        /// Features of a row.
        width: usize,
    },
    /// A state (a recurrent layer's h or c) becomes the token's output.
    Replace,
}

/// A tensor one token leaves for the next: fed as input `name`, computed as `output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    /// The carried input's feed name.
    pub name: String,
    /// The input the next token reads it from.
    pub input: TensorId,
    /// What the token computes of it.
    pub output: TensorId,
    /// How the one becomes the other.
    pub carry: Carry,
}

/// What a model being built for one token at a time reads and leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoding {
    /// The longest window the model was trained on (positions 0..context).
    pub context: usize,
    /// "position" [1, 1] u32: the token's position in the window.
    pub position: TensorId,
    /// "attended" [1, context] u32: 1 for the cache slots that hold a token and for the last
    /// key (the token itself), 0 for empty slots.
    pub attended: TensorId,
    /// Every tensor a token leaves for the next.
    pub carried: Vec<Carried>,
    /// Whether anything in the model depends on the position (attention caches, position
    /// tables), so a window longer than `context` must start again.
    pub bounded: bool,
}

/// Runs a model built with [`crate::Model::for_decoding`]: one token in, the next token's logits out.
pub struct Decoder<E: Executor> {
    exec: E,
    run: RunId,
    decoding: Decoding,
    logits: TensorId,
    /// What the next run reads: each carried tensor's current value (kept here between
    /// tokens) and the token's id, position and attended slots.
    feed: Feed,
    /// The tokens of the current window, in order.
    window: Vec<u32>,
}

impl<E: Executor> Decoder<E> {
    /// Prepares `graph` (whose output `logits` is [1, 1, vocabulary]) on `exec` with `params`.
    pub fn new(
        mut exec: E,
        graph: &Graph,
        logits: TensorId,
        decoding: Decoding,
        params: &HashMap<String, Vec<f32>>,
    ) -> Result<Self> {
        let mut outputs = vec![logits];
        outputs.extend(decoding.carried.iter().map(|c| c.output));
        let run = exec.prepare(graph, Mode::Eval, &outputs)?;
        for (name, value) in params {
            exec.write_named(name, value)?;
        }
        let mut feed = Feed::default();
        for c in &decoding.carried {
            feed.inputs.insert(c.name.clone(), vec![0.0; graph.numel(c.input)]);
        }
        Ok(Decoder { exec, run, decoding, logits, feed, window: Vec::new() })
    }

    /// Takes `token` after those before it; returns the logits of the token to follow. A
    /// window that reaches the trained context starts again from its second half (the
    /// positions restart at 0, so the cache is recomputed for those tokens once).
    pub fn push(&mut self, token: u32) -> Result<Vec<f32>> {
        if self.decoding.bounded && self.window.len() == self.decoding.context {
            let keep = self.window.split_off(self.decoding.context / 2);
            self.reset();
            for t in keep {
                self.step(t)?;
            }
        }
        self.step(token)
    }

    /// Forgets every token: empty caches, zero states.
    pub fn reset(&mut self) {
        self.window.clear();
        self.feed.inputs.values_mut().for_each(|v| v.fill(0.0));
    }

    fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        let (context, filled) = (self.decoding.context, self.window.len());
        self.feed.labels.insert("x".into(), vec![token]);
        self.feed.labels.insert("position".into(), vec![filled as u32]);
        // The cache's first `filled` slots and the token itself (the last key).
        let attended = (0..context).map(|slot| (slot < filled || slot == context - 1) as u32).collect();
        self.feed.labels.insert("attended".into(), attended);
        self.exec.run(self.run, &self.feed, 0)?;
        for c in &self.decoding.carried {
            let out = self.exec.read(self.run, c.output)?;
            let value = self.feed.inputs.get_mut(&c.name).expect("declared");
            match c.carry {
                Carry::Replace => *value = out,
                // The window's last position has no slot after it: the next token starts again.
                Carry::Append { .. } if filled == context - 1 => {}
                Carry::Append { rows, width } => {
                    for r in 0..rows {
                        let slot = (r * (context - 1) + filled) * width;
                        value[slot..slot + width].copy_from_slice(&out[r * width..(r + 1) * width]);
                    }
                }
            }
        }
        self.window.push(token);
        self.exec.read(self.run, self.logits)
    }
}
