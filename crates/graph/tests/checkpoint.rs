//! Checkpoints: a round trip restores training exactly; a damaged or mismatched file is a
//! clear error that names what is wrong.

#[macro_use]
mod common;

use std::path::PathBuf;

use common::{gpu, values};
use graph::{
    Checkpoint, ConvGeometry, CpuExecutor, Feed, GpuExecutor, Meta, Model, PoolGeometry, Supervised, Trainer, Training,
};
use kernels::Unary;
use proptest::prelude::{Just, Strategy};
use safetensors::SafeTensors;

fn model(width: usize) -> Supervised {
    let mut m = Model::new(1);
    let x = m.graph.input("x", &[4, 1, 6, 6]);
    let same = ConvGeometry { stride: (1, 1), padding: (1, 1), dilation: (1, 1) };
    let h = m.conv2d("conv1", x, width, (3, 3), same, true).unwrap();
    let h = m.batch_norm("bn1", h, 1e-5, 0.1).unwrap();
    let h = m.graph.unary(Unary::Relu, h).unwrap();
    let pool = PoolGeometry { kernel: (2, 2), stride: (2, 2), padding: (0, 0), count_include_pad: true };
    let h = m.graph.max_pool2d(h, pool).unwrap();
    let h = m.graph.flatten(h).unwrap();
    let logits = m.linear("fc", h, width * 9, 3, true).unwrap();
    Supervised::classifier(m, x, logits, 0.0).unwrap()
}

fn batch(i: u64) -> Feed {
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), values(100 + i, 144, 1.0));
    feed.labels.insert("y".into(), vec![0, 1, 2, (i % 3) as u32]);
    feed
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dlcli-checkpoint-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn meta() -> Meta {
    Meta { epoch: 2, seed: 1, config: "[model]\nkind = \"cnn\"\n".into(), data: "{}".into(), progress: String::new() }
}

#[test]
fn a_round_trip_continues_training_bit_identically() {
    let training = Training::adam(1e-2);
    let path = temp_dir("round-trip").join("model.safetensors");
    let mut uninterrupted = Trainer::new(CpuExecutor::new(), &model(3), training).unwrap();
    let mut first = Trainer::new(CpuExecutor::new(), &model(3), training).unwrap();
    for i in 0..3 {
        uninterrupted.train_step(&batch(i)).unwrap();
        first.train_step(&batch(i)).unwrap();
    }
    let checkpoint = Checkpoint { state: first.state().unwrap(), meta: meta() };
    checkpoint.save(&path, &model(3), &training.optimizer).unwrap();

    let loaded = Checkpoint::load(&path, &model(3), &training.optimizer).unwrap();
    assert_eq!(loaded, checkpoint);
    let mut resumed = Trainer::new(CpuExecutor::new(), &model(3), training).unwrap();
    resumed.restore(&loaded.state).unwrap();
    assert_eq!(resumed.evaluate(&batch(9)).unwrap(), uninterrupted.evaluate(&batch(9)).unwrap());
    for i in 3..5 {
        assert_eq!(resumed.train_step(&batch(i)).unwrap(), uninterrupted.train_step(&batch(i)).unwrap());
    }

    // The file is what PyTorch expects: state_dict names and layouts, i64 batch counts.
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("conv1.weight").unwrap().shape(), [3, 1, 3, 3]);
    assert_eq!(file.tensor("fc.weight").unwrap().shape(), [3, 27]);
    let tracked = file.tensor("bn1.num_batches_tracked").unwrap();
    assert_eq!((tracked.dtype(), tracked.data()), (safetensors::Dtype::I64, &3i64.to_le_bytes()[..]));
    assert_eq!(file.tensor("optimizer.exp_avg_sq.bn1.weight").unwrap().shape(), [3]);
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(header.metadata().as_ref().unwrap()["config"], meta().config);
    let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file is left beside the checkpoint");
}

#[test]
fn a_checkpoint_moves_between_executors() {
    let Some(gpu) = gpu() else { return };
    let training = Training::adam(1e-2);
    let path = temp_dir("executors").join("model.safetensors");
    let mut on_gpu = Trainer::new(GpuExecutor::new(gpu), &model(3), training).unwrap();
    for i in 0..2 {
        on_gpu.train_step(&batch(i)).unwrap();
    }
    Checkpoint { state: on_gpu.state().unwrap(), meta: meta() }.save(&path, &model(3), &training.optimizer).unwrap();
    let mut on_cpu = Trainer::new(CpuExecutor::new(), &model(3), training).unwrap();
    on_cpu.restore(&Checkpoint::load(&path, &model(3), &training.optimizer).unwrap().state).unwrap();
    let (want, got) = (on_gpu.evaluate(&batch(7)).unwrap(), on_cpu.evaluate(&batch(7)).unwrap());
    common::assert_close("loss after moving", &[got.loss], &[want.loss]);
}

#[test]
fn damaged_and_mismatched_files_are_named_errors() {
    let training = Training::adam(1e-2);
    let dir = temp_dir("errors");
    let path = dir.join("model.safetensors");
    let trainer = Trainer::new(CpuExecutor::new(), &model(3), training).unwrap();
    Checkpoint { state: trainer.state().unwrap(), meta: meta() }.save(&path, &model(3), &training.optimizer).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = Checkpoint::load(&truncated, &model(3), &training.optimizer).unwrap_err().to_string();
    assert!(err.contains("truncated.safetensors") && err.contains("truncated?"), "{err}");

    // One bit of the tensor data flipped: the file parses, its checksum does not match.
    let flipped = dir.join("flipped.safetensors");
    let mut damaged = bytes.clone();
    *damaged.last_mut().unwrap() ^= 1;
    std::fs::write(&flipped, &damaged).unwrap();
    let err = Checkpoint::load(&flipped, &model(3), &training.optimizer).unwrap_err().to_string();
    assert!(err.contains("flipped.safetensors") && err.contains("do not match their checksum"), "{err}");

    // Rename one tensor: same length, so only the header changes.
    let renamed = dir.join("renamed.safetensors");
    let text = bytes.iter().map(|&b| b as char).collect::<String>().replacen("fc.weight", "fc.weigh_", 1);
    std::fs::write(&renamed, text.chars().map(|c| c as u8).collect::<Vec<u8>>()).unwrap();
    let err = Checkpoint::load(&renamed, &model(3), &training.optimizer).unwrap_err().to_string();
    assert!(err.contains("fc.weight is missing") && err.contains("fc.weigh_ is not part of this model"), "{err}");

    let err = Checkpoint::load(&path, &model(4), &training.optimizer).unwrap_err().to_string();
    assert!(err.contains("conv1.weight has shape [3, 1, 3, 3], the model expects [4, 1, 3, 3]"), "{err}");

    let sgd = graph::Optimizer::Sgd(graph::Sgd {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    });
    let err = Checkpoint::load(&path, &model(3), &sgd).unwrap_err().to_string();
    assert!(err.contains("optimizer.momentum_buffer.conv1.weight is missing"), "{err}");

    let err = Checkpoint::load(&dir.join("absent.safetensors"), &model(3), &training.optimizer).unwrap_err();
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
    // A failed load leaves the good file as it was.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// How a checkpoint file is damaged: what a full disk, a bad copy or a lying writer leaves.
#[derive(Debug, Clone)]
enum Damage {
    /// Cut to this share of its length.
    Truncate(f64),
    /// These bits flipped (position as a share of the length, bit).
    Flip(Vec<(f64, u8)>),
    /// The 8-byte header length set to this.
    HeaderLength(u64),
    /// A digit of the JSON header (an offset, a shape) replaced, at this share of the header.
    Digit(f64, u8),
    /// A dtype in the header replaced by this one.
    Dtype(&'static str),
}

fn damaged(bytes: &[u8], damage: &Damage) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    match damage {
        Damage::Truncate(share) => out.truncate((share * bytes.len() as f64) as usize),
        Damage::Flip(bits) => {
            for &(share, bit) in bits {
                let i = ((share * out.len() as f64) as usize).min(out.len() - 1);
                out[i] ^= 1 << bit;
            }
        }
        Damage::HeaderLength(n) => out[..8].copy_from_slice(&n.to_le_bytes()),
        Damage::Digit(share, digit) => {
            let digits: Vec<usize> = (8..8 + header).filter(|&i| out[i].is_ascii_digit()).collect();
            let i = digits[((share * digits.len() as f64) as usize).min(digits.len() - 1)];
            out[i] = b'0' + digit;
        }
        Damage::Dtype(dtype) => {
            let text = String::from_utf8_lossy(&out[8..8 + header]).replacen("\"F32\"", &format!("\"{dtype}\""), 1);
            out = [&(text.len() as u64).to_le_bytes()[..], text.as_bytes(), &bytes[8 + header..]].concat();
        }
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: std::env::var("DLCLI_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200),
        failure_persistence: None,
        ..Default::default()
    })]

    /// Truncated, bit-flipped and lying safetensors files (header sizes, offsets, shapes,
    /// dtypes): loading one, or reading its config, is an error naming the file, never a panic.
    #[test]
    fn a_damaged_checkpoint_is_an_error_never_a_panic(damage in proptest::prop_oneof![
        (0.0..1.0f64).prop_map(Damage::Truncate),
        proptest::collection::vec((0.0..1.0f64, 0u8..8), 1..16).prop_map(Damage::Flip),
        proptest::prop_oneof![Just(0u64), Just(7), Just(u64::MAX), Just(1 << 40), 0u64..100_000].prop_map(Damage::HeaderLength),
        (0.0..1.0f64, 0u8..10).prop_map(|(at, d)| Damage::Digit(at, d)),
        proptest::prop_oneof![Just("F16"), Just("I64"), Just("BOOL"), Just("U8"), Just("NOPE")].prop_map(Damage::Dtype),
    ]) {
        use proptest::prelude::*;
        static VALID: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let training = Training::adam(1e-2);
        let valid = VALID.get_or_init(|| {
            let path = temp_dir("fuzz-valid").join("valid.safetensors");
            let trainer = Trainer::new(CpuExecutor::new(), &model(2), training).unwrap();
            Checkpoint { state: trainer.state().unwrap(), meta: meta() }.save(&path, &model(2), &training.optimizer).unwrap();
            std::fs::read(&path).unwrap()
        });
        let path = temp_dir("fuzz").join(format!("damaged-{:?}.safetensors", std::thread::current().id()));
        std::fs::write(&path, damaged(valid, &damage)).unwrap();
        let named = |e: graph::GraphError| e.to_string().contains("damaged-");
        if let Err(e) = Checkpoint::load(&path, &model(2), &training.optimizer) {
            prop_assert!(named(e));
        }
        if let Err(e) = Checkpoint::config_text(&path) {
            prop_assert!(named(e));
        }
    }
}

on_the_gl_backend_too!();
