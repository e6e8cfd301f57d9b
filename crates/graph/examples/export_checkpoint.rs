//! Writes a checkpoint that `scripts/torch_check_checkpoint.py` loads into the equivalent
//! `torch.nn` model, with a probe batch and dlcli's logits for it, so the script can compare.
//!
//! `cargo run --release -p graph --example export_checkpoint -- DIR` trains a small CNN with
//! batch norm on the shipped digits for one epoch (CPU executor) and writes
//! `DIR/model.safetensors` and `DIR/probe.safetensors` (`x` [32, 1, 8, 8], `logits` [32, 10],
//! evaluation mode).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use data::{Batches, load_digits};
use graph::{
    Checkpoint, ConvGeometry, CpuExecutor, Feed, Meta, Mode, Model, PoolGeometry, Supervised, Trainer, Training,
};
use kernels::Unary;
use safetensors::tensor::{Dtype, TensorView};

const BATCH: usize = 32;

/// Conv 1→8 3×3 pad 1 (no bias), BatchNorm2d, ReLU, MaxPool 2, Conv 8→16 3×3 pad 1, ReLU,
/// global average pool, Linear 16→10. `scripts/torch_check_checkpoint.py` builds the same.
fn model() -> Supervised {
    let mut m = Model::new(0);
    let x = m.graph.input("x", &[BATCH, 1, 8, 8]);
    let same = ConvGeometry { stride: (1, 1), padding: (1, 1), dilation: (1, 1) };
    let h = m.conv2d("conv1", x, 8, (3, 3), same, false).unwrap();
    let h = m.batch_norm("bn1", h, 1e-5, 0.1).unwrap();
    let h = m.graph.unary(Unary::Relu, h).unwrap();
    let pool = PoolGeometry { kernel: (2, 2), stride: (2, 2), padding: (0, 0), count_include_pad: true };
    let h = m.graph.max_pool2d(h, pool).unwrap();
    let h = m.conv2d("conv2", h, 16, (3, 3), same, true).unwrap();
    let h = m.graph.unary(Unary::Relu, h).unwrap();
    let h = m.graph.global_avg_pool(h).unwrap();
    let logits = m.linear("fc", h, 16, 10, true).unwrap();
    Supervised::classifier(m, x, logits, 0.0).unwrap()
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: export_checkpoint DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let digits =
        load_digits(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz")).unwrap();
    let training = Training::adam(3e-3);
    let mut trainer = Trainer::new(CpuExecutor::new(), &model(), training).unwrap();
    for batch in Batches::shuffled(&digits, BATCH, 0, 0) {
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), batch.samples);
        feed.labels.insert("y".into(), batch.labels);
        trainer.train_step(&feed).unwrap();
    }
    let state = trainer.state().unwrap();
    let checkpoint = Checkpoint {
        state: state.clone(),
        meta: Meta { epoch: 1, seed: 0, config: String::new(), data: String::new(), progress: String::new() },
    };
    checkpoint.save(&dir.join("model.safetensors"), &model(), &training.optimizer).unwrap();

    let probe = Batches::in_order(&digits, BATCH).next().unwrap();
    let classifier = model();
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), probe.samples.clone());
    let values = graph::evaluate(&classifier.graph, Mode::Eval, &state.params, &feed, &[classifier.output]);
    let logits = values.unwrap().get(classifier.output).to_vec();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (xb, lb) = (bytes(&probe.samples), bytes(&logits));
    let tensors = HashMap::from([
        ("x", TensorView::new(Dtype::F32, vec![BATCH, 1, 8, 8], &xb).unwrap()),
        ("logits", TensorView::new(Dtype::F32, vec![BATCH, 10], &lb).unwrap()),
    ]);
    safetensors::serialize_to_file(tensors, None, &dir.join("probe.safetensors")).unwrap();
    println!("wrote {} and {}", dir.join("model.safetensors").display(), dir.join("probe.safetensors").display());
}
