//! What a run is fed, and the checks both executors apply to it: every input present, of its
//! node's length, and labels within the classes.

use std::collections::HashMap;

use crate::error::{GraphError, Result};
use crate::ir::Node;

/// Label of a row that pads a batch: it counts in neither the loss nor the correct count.
pub const PADDING_LABEL: u32 = u32::MAX;

/// What a run is fed: f32 inputs and u32 labels by name.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    /// f32 inputs by name.
    pub inputs: HashMap<String, Vec<f32>>,
    /// u32 inputs (labels, token ids) by name.
    pub labels: HashMap<String, Vec<u32>>,
}

impl Feed {
    /// The f32 input `name` of `node`, present and of the node's length.
    pub(crate) fn input(&self, node: &Node, name: &str) -> Result<&[f32]> {
        present(node, name, self.inputs.get(name))
    }

    /// The labels `name` of `node`: present, of its length, each a class below `classes` or
    /// [`PADDING_LABEL`].
    pub(crate) fn labels(&self, node: &Node, name: &str, classes: usize) -> Result<&[u32]> {
        let labels = present(node, name, self.labels.get(name))?;
        if let Some(&bad) = labels.iter().find(|&&t| t as usize >= classes && t != PADDING_LABEL) {
            return Err(GraphError::Target { node: node.label.clone(), target: bad, classes });
        }
        Ok(labels)
    }
}

/// `value`, given for `node` under `name`, present and of the node's length.
pub(crate) fn present<'a, T>(node: &Node, name: &str, value: Option<&'a Vec<T>>) -> Result<&'a [T]> {
    let value = value.ok_or_else(|| GraphError::MissingInput {
        node: node.label.clone(),
        name: name.into(),
        shape: node.outputs[0].shape.clone(),
    })?;
    check_len(node, value.len())?;
    Ok(value)
}

/// Fails unless `got` elements fill `node`.
pub(crate) fn check_len(node: &Node, got: usize) -> Result<()> {
    let want = node.outputs[0].len();
    if got != want {
        return Err(GraphError::FeedLength {
            node: node.label.clone(),
            shape: node.outputs[0].shape.clone(),
            got,
            want,
        });
    }
    Ok(())
}
