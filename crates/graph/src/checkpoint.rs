//! Checkpoints: safetensors files that PyTorch loads as they are.
//!
//! The model's tensors carry its `state_dict` keys and layouts (`conv1.weight` [out, in, kh,
//! kw], `fc.weight` [out, in], batch norm's `running_mean`, `running_var` and an i64
//! `num_batches_tracked`), so `model.load_state_dict(safetensors.torch.load_file(path))` works
//! once the `optimizer.` keys are dropped. Those hold the optimizer state under PyTorch's names
//! (`optimizer.exp_avg.<param>`, `optimizer.exp_avg_sq.<param>`,
//! `optimizer.momentum_buffer.<param>`). The metadata holds the step, epoch, seed (which with the
//! step fixes every later random draw), the optimizer, the config text and what the data's
//! preparation learnt (a vocabulary, normalisation statistics).
//!
//! Writes are atomic: a temporary file in the same directory, flushed to disk, then renamed
//! over the target, so a crash never leaves a half-written checkpoint where a good one was.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{GraphError, Result};
use crate::optim::{Optimizer, optimizer_state_name};
use crate::supervised::Supervised;
use crate::trainer::TrainerState;

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Epochs trained (a mid-epoch checkpoint's: those finished).
    pub epoch: u64,
    /// The run's seed (parameters, data order, dropout masks).
    pub seed: u64,
    /// The config the model was built from, verbatim.
    pub config: String,
    /// What the data's preparation learnt from the training data and a prediction needs
    /// (a text vocabulary, a series' normalisation), as JSON; empty for none.
    pub data: String,
    /// Where an unfinished epoch's running figures stand, as JSON, in a checkpoint written
    /// mid-epoch (the trainer's own record); empty in one written at an epoch's end.
    pub progress: String,
}

/// A checkpoint in memory: the trainer's state and its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Parameters, state, optimizer state and the updates done.
    pub state: TrainerState,
    /// What the checkpoint records besides tensors.
    pub meta: Meta,
}

fn optimizer_name(optimizer: &Optimizer) -> &'static str {
    match optimizer {
        Optimizer::Sgd(_) => "sgd",
        Optimizer::Adam(a) if a.decoupled => "adamw",
        Optimizer::Adam(_) => "adam",
    }
}

impl Checkpoint {
    /// Writes the checkpoint of `model` trained with `optimizer` to `path`, atomically.
    pub fn save(&self, path: &Path, model: &Supervised, optimizer: &Optimizer) -> Result<()> {
        let bad = |detail: String| GraphError::Checkpoint { path: path.to_owned(), detail };
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        for (name, shape) in tensor_shapes(model) {
            let source = model.tied.iter().find(|(alias, _)| *alias == name).map_or(&name, |(_, source)| source);
            let value = self.state.params.get(source).ok_or_else(|| bad(format!("no value for {name}")))?;
            tensors.push((name.clone(), Dtype::F32, shape, f32_bytes(value)));
            if let Some(layer) = name.strip_suffix(".running_mean") {
                let batches = (self.state.steps as i64).to_le_bytes().to_vec();
                tensors.push((format!("{layer}.num_batches_tracked"), Dtype::I64, vec![], batches));
            }
        }
        for p in &model.params {
            let slots =
                self.state.optimizer.get(&p.name).ok_or_else(|| bad(format!("no optimizer state for {}", p.name)))?;
            for (slot, value) in slots.iter().enumerate() {
                let shape = model.graph.shape(p.node).to_vec();
                let name = optimizer_state_name(optimizer, slot, &p.name);
                tensors.push((name, Dtype::F32, shape, f32_bytes(value)));
            }
        }
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| Ok((name.as_str(), TensorView::new(*dtype, shape.clone(), bytes)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| bad(e.to_string()))?;
        let metadata = HashMap::from([
            (
                "crc32".to_string(),
                checksum(tensors.iter().map(|(name, _, _, bytes)| (name.as_str(), bytes.as_slice()))),
            ),
            ("format".to_string(), "pt".to_string()),
            ("dlcli_version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ("step".to_string(), self.state.steps.to_string()),
            ("epoch".to_string(), self.meta.epoch.to_string()),
            ("seed".to_string(), self.meta.seed.to_string()),
            ("optimizer".to_string(), optimizer_name(optimizer).to_string()),
            ("config".to_string(), self.meta.config.clone()),
            ("data".to_string(), self.meta.data.clone()),
            ("progress".to_string(), self.meta.progress.clone()),
        ]);
        let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| bad(e.to_string()))?;
        write_atomically(path, &bytes).map_err(|e| match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge => bad(format!(
                "{e}: the disk is full or a file-size limit was reached; nothing was left under this name and \
                 the earlier checkpoints are intact: free space, then continue with --resume"
            )),
            _ => bad(e.to_string()),
        })
    }

    /// Reads the checkpoint at `path` for `model` trained with `optimizer`, checking every
    /// name, shape and dtype against the model; the error lists each mismatch.
    pub fn load(path: &Path, model: &Supervised, optimizer: &Optimizer) -> Result<Checkpoint> {
        let bad = |detail: String| GraphError::Checkpoint { path: path.to_owned(), detail };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a readable safetensors file ({e}); was it truncated?")))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();

        // Every tensor the model and optimizer expect, with its shape.
        let mut expected: Vec<(String, Vec<usize>, Dtype)> =
            tensor_shapes(model).into_iter().map(|(n, s)| (n, s, Dtype::F32)).collect();
        let layers: Vec<String> =
            expected.iter().filter_map(|(n, ..)| n.strip_suffix(".running_mean").map(str::to_owned)).collect();
        expected.extend(layers.iter().map(|l| (format!("{l}.num_batches_tracked"), vec![], Dtype::I64)));
        for p in &model.params {
            for slot in 0..optimizer.state_count() {
                let name = optimizer_state_name(optimizer, slot, &p.name);
                expected.push((name, model.graph.shape(p.node).to_vec(), Dtype::F32));
            }
        }
        let found: HashMap<String, TensorView> = file.tensors().into_iter().collect();
        let mut problems = Vec::new();
        for (name, shape, dtype) in &expected {
            match found.get(name) {
                None => problems.push(format!("{name} is missing")),
                Some(t) if t.dtype() != *dtype => {
                    problems.push(format!("{name} is {:?}, expected {dtype:?}", t.dtype()))
                }
                Some(t) if t.shape() != shape.as_slice() => {
                    problems.push(format!("{name} has shape {:?}, the model expects {shape:?}", t.shape()))
                }
                Some(_) => {}
            }
        }
        let mut unexpected: Vec<&String> = found.keys().filter(|k| !expected.iter().any(|(n, ..)| n == *k)).collect();
        unexpected.sort();
        problems.extend(unexpected.iter().map(|k| format!("{k} is not part of this model")));
        if !problems.is_empty() {
            return Err(bad(format!("does not fit the model: {}", problems.join("; "))));
        }
        // Bit flips inside the tensor data leave a readable file: the checksum catches them
        // (checkpoints from before it was written have none).
        if let Some(saved) = meta.get("crc32") {
            let computed = checksum(found.iter().map(|(name, t)| (name.as_str(), t.data())));
            if *saved != computed {
                return Err(bad(format!(
                    "its tensors do not match their checksum ({computed}, saved {saved}): the file is damaged"
                )));
            }
        }

        let f32s = |name: &str| -> Vec<f32> {
            found[name].data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        };
        let params = model.state_dict_shapes().into_iter().map(|(n, _)| (n.clone(), f32s(&n))).collect();
        let optimizer_state = model
            .params
            .iter()
            .map(|p| {
                let slots =
                    (0..optimizer.state_count()).map(|slot| f32s(&optimizer_state_name(optimizer, slot, &p.name)));
                (p.name.clone(), slots.collect())
            })
            .collect();
        let number = |key: &str| -> Result<u64> {
            meta.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| bad(format!("metadata has no number {key:?}")))
        };
        if let Some(saved) = meta.get("optimizer").filter(|o| o.as_str() != optimizer_name(optimizer)) {
            return Err(bad(format!("was trained with {saved}, the config asks for {}", optimizer_name(optimizer))));
        }
        Ok(Checkpoint {
            state: TrainerState { params, optimizer: optimizer_state, steps: number("step")? },
            meta: Meta {
                epoch: number("epoch")?,
                seed: number("seed")?,
                config: meta.get("config").cloned().unwrap_or_default(),
                data: meta.get("data").cloned().unwrap_or_default(),
                progress: meta.get("progress").cloned().unwrap_or_default(),
            },
        })
    }
}

/// CRC-32 of every tensor's name and bytes, in name order (independent of the file's layout).
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<(&str, &[u8])> = tensors.collect();
    sorted.sort_by_key(|(name, _)| *name);
    let mut crc = crc32fast::Hasher::new();
    for (name, bytes) in sorted {
        crc.update(name.as_bytes());
        crc.update(bytes);
    }
    format!("{:08x}", crc.finalize())
}

/// Every model tensor a checkpoint holds with its shape: the `state_dict`, a tied key (a
/// copy of the tensor it names, as PyTorch's `state_dict` lists both) after its source.
fn tensor_shapes(model: &Supervised) -> Vec<(String, Vec<usize>)> {
    let mut shapes = model.state_dict_shapes();
    for (alias, source) in &model.tied {
        let shape = shapes.iter().find(|(n, _)| n == source).map(|(_, s)| s.clone()).unwrap_or_default();
        shapes.push((alias.clone(), shape));
    }
    shapes
}

impl Checkpoint {
    /// The metadata of the checkpoint at `path`, read without its tensors.
    pub fn metadata(path: &Path) -> Result<HashMap<String, String>> {
        let bad = |detail: String| GraphError::Checkpoint { path: path.to_owned(), detail };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a readable safetensors file ({e}); was it truncated?")))?;
        Ok(header.metadata().clone().unwrap_or_default())
    }

    /// The config text stored in the checkpoint at `path` (to rebuild its model).
    pub fn config_text(path: &Path) -> Result<String> {
        let config = Self::metadata(path)?.remove("config").filter(|c| !c.is_empty());
        config.ok_or_else(|| GraphError::Checkpoint {
            path: path.to_owned(),
            detail: "holds no config; evaluate it with --run RUN instead".into(),
        })
    }
}

/// What a temporary file's name adds to its target's, before the writer's process id.
const TEMPORARY: &str = ".tmp-";

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp_name = path.file_name().unwrap_or_default().to_owned();
    temp_name.push(format!("{TEMPORARY}{}", std::process::id()));
    let temp: PathBuf = dir.join(temp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // The rename itself reaches the disk once the directory is synced (where supported).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Removes the temporary files another process's [`write_atomically`] left in `dir` when it
/// was killed mid-write; returns their paths. Only for a directory this process holds (a run
/// directory under its lock): a live writer's temporary would go too.
pub fn remove_abandoned_writes(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let writer = name.rsplit_once(TEMPORARY).and_then(|(_, pid)| pid.parse::<u32>().ok());
        if writer.is_some_and(|pid| pid != std::process::id()) {
            std::fs::remove_file(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}
