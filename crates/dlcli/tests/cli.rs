//! The binary end to end on the shipped digits: train, evaluate, and every kind of bad input
//! giving one clear message and a non-zero exit, never a panic or a lost run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{dlcli, fails_with, numbers, temp_dir, text};

/// `dlcli train` of `config` on the CPU executor, quietly, into `runs`.
fn train(config: &Path, runs: &Path, extra: &[&str]) -> Output {
    let base = [
        "train",
        "--config",
        config.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    dlcli(&[&base[..], extra].concat())
}

/// The `"kind": "epoch"` lines of a metrics.jsonl.
fn epoch_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let rows = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    rows.filter(|row| row["kind"] == "epoch").collect()
}

/// A safetensors file's header as JSON (key order is not fixed, so compare it parsed) and its
/// tensor bytes.
fn safetensors_parts(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

#[test]
fn train_then_eval_on_the_digits() {
    let runs = temp_dir("train");
    let runs_arg = runs.to_str().unwrap();
    let args = ["train", "--config", "configs/digits.toml", "--device", "cpu", "--epochs", "4", "--quiet"];
    let out = dlcli(&[&args[..], &["--runs-dir", runs_arg, "--run", "first"]].concat());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("dlcli train: CPU executor"), "{stdout}");
    let run = runs.join("first");
    let epochs = epoch_lines(&run.join("metrics.jsonl"));
    assert_eq!(epochs.len(), 4);
    let steps = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(steps.contains(r#""kind":"step""#) && steps.contains(r#""step":100"#), "a line every 100 steps");
    let last = epochs.last().unwrap();
    let accuracy = last["test_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9, "test accuracy after 4 epochs: {accuracy}");
    // The run keeps its config resolved: defaults the file left out are written, and it checks.
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("keep_last = 2") && resolved.contains("name = \"relu5\""), "{resolved}");
    assert!(dlcli(&["config", "check", run.join("config.toml").to_str().unwrap()]).status.success());
    let curves = image::open(run.join("curves.png")).unwrap();
    assert_eq!((curves.width(), curves.height()), (1000, 420));
    // keep_last = 2 (the default): epochs 3 and 4 remain, and the best.
    for (file, exists) in [
        ("epoch-2.safetensors", false),
        ("epoch-3.safetensors", true),
        ("epoch-4.safetensors", true),
        ("best.safetensors", true),
    ] {
        assert_eq!(run.join(file).exists(), exists, "{file}");
    }

    let out = dlcli(&["eval", "--run", run.to_str().unwrap(), "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["samples"], 359);
    let best = epochs.iter().map(|l| l["test_accuracy"].as_f64().unwrap()).fold(0.0, f64::max);
    assert!((report["accuracy"].as_f64().unwrap() - best).abs() < 1e-9, "eval reproduces the best epoch's accuracy");
    let confusion: u64 = report["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(confusion, 359);
    assert!(image::open(run.join("confusion.png")).is_ok(), "eval draws the confusion matrix");

    // Explain and predict from the run: an overlay PNG, a JSON sidecar, probabilities.
    let png = runs.join("cam.png");
    let out = dlcli(&[
        "explain",
        "--method",
        "gradcam",
        "--run",
        run.to_str().unwrap(),
        "--index",
        "3",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let overlay = image::open(&png).unwrap();
    assert!(overlay.width() > 224 && overlay.height() > 224, "the map scaled up, with a title and a colour bar");
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("cam.json")).unwrap()).unwrap();
    assert_eq!(sidecar["layer"], "relu5", "Grad-CAM defaults to the last conv layer's activation");
    let map: Vec<f64> = sidecar["map"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(map.len(), 64);
    assert!(map.iter().all(|&v| v >= 0.0) && map.iter().any(|&v| v > 0.0));
    let saliency = runs.join("saliency.png");
    let out = dlcli(&[
        "explain",
        "--method",
        "saliency",
        "--run",
        run.to_str().unwrap(),
        "--index",
        "3",
        "--target",
        "4",
        "--out",
        saliency.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("saliency.json")).unwrap()).unwrap();
    assert_eq!(sidecar["target"], 4);
    let out = dlcli(&["predict", "--run", run.to_str().unwrap(), "--index", "3", "--top-k", "3", "--json"]);
    let predicted: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    let top = predicted["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert_eq!(top[0]["class"], sidecar_class(&runs.join("cam.json")));
    // An image file is converted to the model's input (here the 224x224 RGB overlay becomes
    // an 8x8 grey sample); a file that is no image is a clear error.
    let out = dlcli(&["predict", "--run", run.to_str().unwrap(), "--input", png.to_str().unwrap()]);
    assert!(out.status.success() && text(&out).0.lines().count() == 3, "{:?}", text(&out));
    fails_with(
        &dlcli(&["predict", "--run", run.to_str().unwrap(), "--input", runs.join("cam.json").to_str().unwrap()]),
        &["cam.json", "not a readable PNG or JPEG image"],
    );
    fails_with(
        &dlcli(&[
            "explain",
            "--method",
            "gradcam",
            "--run",
            run.to_str().unwrap(),
            "--index",
            "3",
            "--layer",
            "conv9",
            "--out",
            png.to_str().unwrap(),
        ]),
        &["--layer \"conv9\" is not a layer", "block_conv"],
    );
    fails_with(
        &dlcli(&[
            "explain",
            "--method",
            "saliency",
            "--run",
            run.to_str().unwrap(),
            "--index",
            "3",
            "--target",
            "12",
            "--out",
            png.to_str().unwrap(),
        ]),
        &["--target 12 is not a class"],
    );
    fails_with(
        &dlcli(&["predict", "--run", run.to_str().unwrap(), "--index", "5000"]),
        &["--index 5000 is past the 359 test samples"],
    );

    // The run is never overwritten without --force, and stays intact.
    let before = std::fs::read(run.join("best.safetensors")).unwrap();
    let again = dlcli(&[&args[..], &["--runs-dir", runs_arg, "--run", "first"]].concat());
    fails_with(&again, &["already exists", "--force"]);
    assert_eq!(std::fs::read(run.join("best.safetensors")).unwrap(), before);

    // --run means the same in every command: a plain name is under --runs-dir, a path is
    // used as it is (train makes a new run at one).
    let by_name = dlcli(&["eval", "--run", "first", "--runs-dir", runs_arg, "--json"]);
    assert_eq!(text(&by_name).0, text(&dlcli(&["eval", "--run", run.to_str().unwrap(), "--json"])).0);
    fails_with(&dlcli(&["eval", "--run", "no-such-run"]), &["runs/no-such-run/config.toml"]);
    let at_path = runs.join("nested").join("second");
    let out = dlcli(
        &[&args[..3], &["--epochs", "1", "--quiet", "--device", "cpu", "--run", at_path.to_str().unwrap()]].concat(),
    );
    assert!(out.status.success() && at_path.join("best.safetensors").is_file(), "{}", text(&out).1);

    // [eval] metrics chooses what eval reports; top-k is at least the accuracy.
    let chosen = runs.join("chosen");
    std::fs::create_dir_all(&chosen).unwrap();
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let default_metrics = r#"metrics = ["loss", "accuracy", "per_class", "confusion"]"#;
    assert!(resolved.contains(default_metrics), "{resolved}");
    std::fs::write(chosen.join("config.toml"), resolved.replace(default_metrics, r#"metrics = ["accuracy", "top3"]"#))
        .unwrap();
    std::fs::copy(run.join("best.safetensors"), chosen.join("best.safetensors")).unwrap();
    let out = dlcli(&["eval", "--run", chosen.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert!(report["top3"].as_f64().unwrap() >= report["accuracy"].as_f64().unwrap(), "{report}");
    assert!(report.get("confusion").is_none() && report.get("loss").is_none(), "{report}");
    std::fs::write(chosen.join("config.toml"), resolved.replace(default_metrics, r#"metrics = ["acuracy"]"#)).unwrap();
    fails_with(&dlcli(&["eval", "--run", chosen.to_str().unwrap()]), &["eval.metrics", "acuracy"]);

    // A checkpoint evaluated against a different model is refused, naming the tensor.
    let other = runs.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let config = std::fs::read_to_string(run.join("config.toml"))
        .unwrap()
        .replace("out_features = 10, bias = true", "out_features = 10, bias = false");
    std::fs::write(other.join("config.toml"), config).unwrap();
    std::fs::copy(run.join("best.safetensors"), other.join("best.safetensors")).unwrap();
    fails_with(
        &dlcli(&["eval", "--run", other.to_str().unwrap()]),
        &["does not fit the model", "fc.bias is not part of this model"],
    );
}

#[test]
fn bad_configs_name_every_problem_with_its_position() {
    let dir = temp_dir("configs");
    let write = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_string()
    };
    let typos = write(
        "typos.toml",
        "[data]\nkind = \"digits\"\n\n[model]\nlayers = [\n  { type = \"conv2d\", out_channel = 4, kernel = 3 },\n  { type = \"rellu\" },\n]\n\n[train]\nepoch = 3\n",
    );
    fails_with(
        &dlcli(&["config", "check", &typos]),
        &[
            "4 problems",
            "typos.toml:6:3: model.layers[0].out_channels: missing",
            "typos.toml:6:22: model.layers[0].out_channel: unknown key (did you mean \"out_channels\"?)",
            "typos.toml:7:12: model.layers[1].type: unknown layer type \"rellu\" (did you mean \"relu\"?)",
        ],
    );
    let syntax = write("syntax.toml", "[data\nkind = 1\n");
    fails_with(&dlcli(&["config", "check", &syntax]), &["syntax.toml:1:6: (syntax)"]);
    // A file that cannot be read is one line, with no position.
    std::fs::write(dir.join("bad-utf8.toml"), b"[data]\nkind = \"\xff\"\n").unwrap();
    let unreadable = dlcli(&["config", "check", dir.join("bad-utf8.toml").to_str().unwrap()]);
    fails_with(&unreadable, &["bad-utf8.toml: cannot read the config: stream did not contain valid UTF-8"]);
    assert!(!text(&unreadable).1.contains(":0:0") && text(&unreadable).1.trim_end().lines().count() == 1);
    fails_with(&dlcli(&["train", "--config", &typos, "--runs-dir", dir.to_str().unwrap()]), &["4 problems"]);
    assert!(!dir.join("typos-1").exists(), "a bad config leaves no run directory");

    // Dataset paths start at the config's directory: this one names the shipped digits by theirs.
    let digits = std::path::absolute(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz"));
    let no_flatten = write(
        "shape.toml",
        &format!(
            "[data]\nkind = \"digits\"\npath = {:?}\n\n[model]\nlayers = [{{ type = \"linear\", name = \"fc\", out_features = 10 }}]\n",
            digits.unwrap().to_str().unwrap()
        ),
    );
    fails_with(
        &dlcli(&["train", "--config", &no_flatten, "--runs-dir", dir.to_str().unwrap(), "--device", "cpu"]),
        &["the last layer (\"fc\") gives [64, 1, 8, 10]", "needs [64, 10]", "after a flatten"],
    );
    let missing = write(
        "missing.toml",
        "[data]\nkind = \"digits\"\npath = \"datasets/none.csv.gz\"\n\n[model]\nlayers = [{ type = \"flatten\" }, { type = \"linear\", out_features = 10 }]\n",
    );
    fails_with(
        &dlcli(&["train", "--config", &missing, "--runs-dir", dir.to_str().unwrap(), "--device", "cpu"]),
        &["datasets/none.csv.gz", "datasets/SOURCES.md"],
    );
    fails_with(
        &dlcli(&["eval", "--checkpoint", dir.join("absent.safetensors").to_str().unwrap()]),
        &["absent.safetensors"],
    );
}

#[test]
fn an_interrupted_run_resumed_ends_with_the_same_weights() {
    let runs = temp_dir("resume");
    let runs_arg = runs.to_str().unwrap();
    let base = ["train", "--config", "configs/digits.toml", "--device", "cpu", "--quiet", "--runs-dir", runs_arg];
    let whole = dlcli(&[&base[..], &["--epochs", "3", "--run", "whole"]].concat());
    assert!(whole.status.success(), "{:?}", text(&whole));
    let part = dlcli(&[&base[..], &["--epochs", "1", "--run", "part"]].concat());
    assert!(part.status.success(), "{:?}", text(&part));
    let part_dir = runs.join("part");
    let resumed =
        dlcli(&["train", "--resume", part_dir.to_str().unwrap(), "--epochs", "3", "--device", "cpu", "--quiet"]);
    let (stdout, stderr) = text(&resumed);
    assert!(resumed.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("resuming after epoch 1"), "{stdout}");
    // Same header (metadata included, compared as JSON: its key order is not fixed) and the
    // same tensor bytes.
    let (whole_header, whole_data) = safetensors_parts(&runs.join("whole/epoch-3.safetensors"));
    let (resumed_header, resumed_data) = safetensors_parts(&part_dir.join("epoch-3.safetensors"));
    assert_eq!(whole_header, resumed_header);
    assert!(whole_data == resumed_data, "the resumed run ends with different weights");
    assert_eq!(epoch_lines(&part_dir.join("metrics.jsonl")).len(), 3);

    let empty = runs.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(part_dir.join("config.toml"), empty.join("config.toml")).unwrap();
    fails_with(&dlcli(&["train", "--resume", empty.to_str().unwrap()]), &["no epoch-N.safetensors checkpoint"]);
}

#[test]
fn summary_counts_parameters_as_torch_does() {
    // torchinfo gives the reference CNN 225,034 parameters: 320 + 18,496 + 204,928 + 1,290.
    let out = dlcli(&["summary", "--config", "configs/cnn.toml"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for line in ["conv1", "[1, 32, 26, 26]", "320", "18496", "204928", "total: 225034 parameters"] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    let out = dlcli(&["summary", "--config", "configs/resnet-small.toml"]);
    assert!(text(&out).0.contains("total: 19642 parameters"), "{}", text(&out).0);
}

fn sidecar_class(path: &Path) -> serde_json::Value {
    let sidecar: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    sidecar["target"].clone()
}

#[test]
fn ctrl_c_checkpoints_the_step_and_resuming_continues_exactly() {
    stopped_by_and_resumed("INT", 130);
}

/// Job schedulers (Slurm, Kubernetes) stop a job with SIGTERM: handled as Ctrl-C is.
#[test]
fn sigterm_checkpoints_the_step_and_exits_143() {
    stopped_by_and_resumed("TERM", 143);
}

/// `dlcli train` of the digits config for `epochs` as run `name` under `runs`, running on while
/// the test acts on it (stderr piped, for what it says when stopped).
fn digits_in_background(runs: &Path, name: &str, epochs: u32) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_dlcli"))
        .args(["train", "--config", "configs/digits.toml", "--device", "cpu", "--quiet"])
        .args(["--epochs", &epochs.to_string(), "--runs-dir", runs.to_str().unwrap(), "--run", name])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (30 s at most) until `path` exists.
fn wait_for(path: &Path) {
    for _ in 0..600 {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A run stopped by `signal` mid-epoch: it finishes the step, writes interrupted.safetensors,
/// exits `code`, and resumed it ends with the same tensor bytes as a run straight through.
fn stopped_by_and_resumed(signal: &str, code: i32) {
    let runs = temp_dir(&format!("interrupt-{signal}"));
    let runs_arg = runs.to_str().unwrap();
    let child = digits_in_background(&runs, "cut", 200);
    // Interrupt once training is under way (the first epoch checkpoint exists), so the Ctrl-C
    // handler is surely installed whatever the machine's load.
    wait_for(&runs.join("cut/epoch-1.safetensors"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains("interrupted at step") && stderr.contains("--resume"), "{stderr}");
    let cut = runs.join("cut");
    let header = |path: PathBuf| -> serde_json::Value {
        let bytes = std::fs::read(path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        serde_json::from_slice(&bytes[8..8 + n]).unwrap()
    };
    let epoch: u64 =
        header(cut.join("interrupted.safetensors"))["__metadata__"]["epoch"].as_str().unwrap().parse().unwrap();
    let epochs = (epoch + 1).to_string();

    let resumed =
        dlcli(&["train", "--resume", cut.to_str().unwrap(), "--epochs", &epochs, "--device", "cpu", "--quiet"]);
    assert!(resumed.status.success(), "{:?}", text(&resumed));
    assert!(!cut.join("interrupted.safetensors").exists(), "the epoch checkpoint supersedes it");
    let whole = dlcli(&[
        "train",
        "--config",
        "configs/digits.toml",
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        &epochs,
        "--runs-dir",
        runs_arg,
        "--run",
        "whole",
    ]);
    assert!(whole.status.success(), "{:?}", text(&whole));
    let file = format!("epoch-{epochs}.safetensors");
    let data = |path: PathBuf| {
        let bytes = std::fs::read(path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[8 + n..].to_vec()
    };
    assert!(
        data(cut.join(&file)) == data(runs.join("whole").join(&file)),
        "interrupted mid-epoch {epoch} and resumed: different weights"
    );
}

#[test]
fn config_defaults_is_a_valid_config_whose_defaults_a_run_applies() {
    let defaults = text(&dlcli(&["config", "defaults"])).0;
    // Saved elsewhere, its dataset path (relative to the file) is made absolute first.
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz");
    let digits = format!("{:?}", digits.canonicalize().unwrap().to_str().unwrap());
    let defaults = defaults.replace("\"datasets/digits/digits.csv.gz\"", &digits);
    let dir = temp_dir("defaults");
    let path = dir.join("defaults.toml");
    std::fs::write(&path, &defaults).unwrap();
    let check = dlcli(&["config", "check", path.to_str().unwrap()]);
    assert!(check.status.success(), "{:?}", text(&check));
    // What the file says each default is, the run applies: every `key = value` line outside
    // [model] is in the run's resolved config, as written.
    // No --device: an override would be recorded in place of the file's default.
    let runs = dir.to_str().unwrap();
    let out = dlcli(&["train", "--config", path.to_str().unwrap(), "--quiet", "--runs-dir", runs, "--run", "r"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let resolved = std::fs::read_to_string(dir.join("r/config.toml")).unwrap();
    let mut table = "";
    let mut checked = 0;
    for line in defaults.lines() {
        if line.starts_with('[') {
            table = line;
        } else if table != "[model]" && !line.starts_with('#') && line.contains(" = ") {
            let assignment = line.split("  #").next().unwrap().trim_end();
            assert!(
                resolved.lines().any(|l| l == assignment),
                "{table} {assignment:?} is not in the run's config:\n{resolved}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} keys checked");
}

/// The README's key tables are `dlcli config defaults --markdown`, written from the same
/// declarations as validation and the defaults.
#[test]
fn the_readme_key_tables_are_the_declarations() {
    let tables = text(&dlcli(&["config", "defaults", "--markdown"])).0;
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    assert!(tables.lines().count() > 40, "{tables}");
    assert!(readme.contains(&tables), "README.md's key tables are stale: run scripts/update_readme_keys.sh");
}

#[test]
fn validation_augmentation_and_early_stopping() {
    let dir = temp_dir("early");
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz");
    let config = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/digits.toml"))
        .unwrap()
        .replace("../datasets/digits/digits.csv.gz", digits.to_str().unwrap())
        .replace("test_fraction = 0.2", "test_fraction = 0.2\nvalidation_fraction = 0.1\nrandom_crop_padding = 1")
        .replace("seed = 0", "seed = 0\nmonitor = \"loss\"\npatience = 1\nmin_delta = 10.0");
    let path = dir.join("early.toml");
    std::fs::write(&path, config).unwrap();
    let out = train(&path, &dir, &["--run", "r"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // No loss can improve by 10: the first epoch sets the best, the second is stale, stop.
    assert!(stdout.contains("early stop: validation_loss has not improved for 1 epochs"), "{stdout}");
    let epochs = epoch_lines(&dir.join("r/metrics.jsonl"));
    assert_eq!(epochs.len(), 2);
    let first = &epochs[0];
    assert!(first["validation_accuracy"].as_f64().unwrap() > 0.5, "{first}");
}

#[test]
fn an_image_folder_trains_and_a_missing_cifar_file_is_named() {
    let dir = temp_dir("folders");
    // Two classes: a bright bar on the left or on the right of a 12x12 grey image.
    for (split, count) in [("train", 24), ("test", 8)] {
        for (class, left) in [("left", true), ("right", false)] {
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..count {
                let img = image::GrayImage::from_fn(12, 12, |x, y| {
                    let bar = if left { x < 4 } else { x >= 8 };
                    image::Luma([if bar { 200 + (i % 50) as u8 } else { ((x * 7 + y * 3 + i) % 40) as u8 }])
                });
                img.save(folder.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let config = format!(
        "[data]\nkind = \"image_folder\"\ntrain_dir = \"{}\"\ntest_dir = \"{}\"\nchannels = 1\nheight = 8\nwidth = 8\n\n\
         [model]\nlayers = [{{ type = \"conv2d\", out_channels = 4, kernel = 3, padding = 1 }}, {{ type = \"relu\" }}, \
         {{ type = \"flatten\" }}, {{ type = \"linear\", out_features = 2 }}]\n\n\
         [train]\nepochs = 1\nbatch_size = 8\nlr = 0.05\n",
        dir.join("train").display(),
        dir.join("test").display()
    );
    let path = dir.join("folders.toml");
    std::fs::write(&path, config).unwrap();
    let out = train(&path, &dir, &["--epochs", "8"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let last = epoch_lines(&dir.join("folders-1/metrics.jsonl")).pop().unwrap();
    assert!(last["test_accuracy"].as_f64().unwrap() >= 0.9, "left/right bars: {last}");

    let cifar = dir.join("cifar.toml");
    std::fs::write(&cifar, "[data]\nkind = \"cifar10\"\ntrain_files = [\"datasets/cifar/none.bin\"]\ntest_files = [\"datasets/cifar/none.bin\"]\n\n[model]\nlayers = [{ type = \"flatten\" }, { type = \"linear\", out_features = 10 }]\n").unwrap();
    let missing =
        dlcli(&["train", "--config", cifar.to_str().unwrap(), "--device", "cpu", "--runs-dir", dir.to_str().unwrap()]);
    fails_with(&missing, &["datasets/cifar/none.bin", "[data] train_files"]);
    // The cause once, on one line.
    let stderr = text(&missing).1;
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// Each of `got` within 1e-4 of `want`, relative to the larger of 1 and the largest `want`.
fn assert_within(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale, "{what}[{i}]: gpu {g} vs cpu {w}");
    }
}

#[test]
fn eval_predict_and_explain_agree_between_devices() {
    let runs = temp_dir("devices");
    let out = train(Path::new("configs/digits.toml"), &runs, &["--epochs", "1", "--run", "r"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let run = runs.join("r");
    let run = run.to_str().unwrap();
    let on = |device: &str, args: &[&str]| {
        let out = dlcli(&[args, &["--run", run, "--device", device]].concat());
        (out.status.success(), text(&out))
    };
    let (ok, (_, stderr)) = on("gpu", &["eval", "--json"]);
    if !ok {
        return kernels::no_adapter("eval_predict_and_explain_agree_between_devices", &stderr);
    }
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let report = |device| json(&on(device, &["eval", "--json"]).1.0);
    let (gpu, cpu) = (report("gpu"), report("cpu"));
    assert_within("eval loss", &[gpu["loss"].as_f64().unwrap()], &[cpu["loss"].as_f64().unwrap()]);
    assert_eq!(gpu["confusion"], cpu["confusion"]);
    let probabilities = |device| {
        let top = json(&on(device, &["predict", "--index", "7", "--top-k", "10", "--json"]).1.0);
        top["top"].as_array().unwrap().iter().map(|c| c["probability"].as_f64().unwrap()).collect::<Vec<_>>()
    };
    assert_within("predict probabilities", &probabilities("gpu"), &probabilities("cpu"));
    // The batched methods too: IG's path points, occlusion's windows and LIME's draws run 32
    // samples a run on the GPU.
    for method in ["gradcam", "saliency", "integrated_gradients", "occlusion", "lime"] {
        let map = |device: &str| {
            let png = runs.join(format!("{method}-{device}.png"));
            let (ok, out) =
                on(device, &["explain", "--method", method, "--index", "7", "--out", png.to_str().unwrap()]);
            assert!(ok, "{out:?}");
            let sidecar = std::fs::read_to_string(png.with_extension("json")).unwrap();
            numbers(&json(&sidecar)["map"])
        };
        assert_within(method, &map("gpu"), &map("cpu"));
    }
}

#[test]
fn a_run_keeps_its_overrides_and_absolute_paths() {
    let runs = temp_dir("overrides");
    let out = train(Path::new("configs/digits.toml"), &runs, &["--epochs", "1", "--run", "r"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("best.safetensors is picked by test_accuracy on the test set"), "{:?}", text(&out));
    let run = runs.join("r");
    let kept = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(kept.contains("epochs = 1") && kept.contains("device = \"cpu\""), "{kept}");
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz");
    let digits = digits.canonicalize().unwrap();
    assert!(kept.contains(&format!("path = {:?}", digits.to_str().unwrap())), "{kept}");
    assert_eq!(epoch_lines(&run.join("metrics.jsonl"))[0]["best_by"], "test_accuracy");
    // Evaluated from another working directory, through the absolute paths it kept.
    let elsewhere = Command::new(env!("CARGO_BIN_EXE_dlcli"))
        .args(["eval", "--run", run.to_str().unwrap(), "--device", "cpu"])
        .current_dir(&runs)
        .output()
        .unwrap();
    assert!(elsewhere.status.success(), "{:?}", text(&elsewhere));

    // A schedule planned over the run's length refuses a new end and changes nothing.
    let cosine = kept.replace("schedule = \"constant\"", "schedule = \"cosine\"");
    assert_ne!(cosine, kept);
    let planned = runs.join("cosine");
    std::fs::create_dir_all(&planned).unwrap();
    std::fs::write(planned.join("config.toml"), &cosine).unwrap();
    std::fs::copy(run.join("epoch-1.safetensors"), planned.join("epoch-1.safetensors")).unwrap();
    let refused = dlcli(&["train", "--resume", planned.to_str().unwrap(), "--epochs", "3", "--quiet"]);
    fails_with(&refused, &["--epochs 3", "\"cosine\" schedule plans its learning rate over 1 epochs"]);
    assert_eq!(std::fs::read_to_string(planned.join("config.toml")).unwrap(), cosine);
}

#[test]
fn layer_names_are_unique_and_inputs_name_a_layer() {
    let dir = temp_dir("names");
    let path = dir.join("names.toml");
    let config = "[data]\nkind = \"digits\"\npath = \"none.csv.gz\"\n\n[model]\nlayers = [\n  \
                  { type = \"flatten\", name = \"a\" },\n  { type = \"relu\", name = \"a\" },\n  \
                  { type = \"linear\", out_features = 10, inputs = [] },\n]\n";
    std::fs::write(&path, config).unwrap();
    fails_with(
        &dlcli(&["config", "check", path.to_str().unwrap()]),
        &[
            "names.toml:8:27: model.layers[1].name: \"a\" already names model.layers[0]",
            "model.layers[2].inputs: expected a list naming at least one earlier layer",
        ],
    );
}

#[test]
fn a_model_too_large_for_memory_is_refused_before_anything_is_allocated() {
    let dir = temp_dir("huge");
    let digits = std::path::absolute(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz"));
    // 64 x 4e9 weights: a terabyte of parameters.
    let config = format!(
        "[data]\nkind = \"digits\"\npath = {:?}\n\n[model]\nlayers = [{{ type = \"flatten\" }}, \
         {{ type = \"linear\", out_features = 4000000000 }}, {{ type = \"linear\", out_features = 10 }}]\n",
        digits.unwrap().to_str().unwrap()
    );
    let path = dir.join("huge.toml");
    std::fs::write(&path, config).unwrap();
    let out = train(&path, &dir, &["--run", "r"]);
    fails_with(&out, &["a training step at batch 64 needs about", "TiB", "lower [train] batch_size"]);
    assert!(!dir.join("r").exists(), "a refused run leaves no run directory");
    fails_with(
        &dlcli(&["config", "check", path.to_str().unwrap()]),
        &["more than the", "of memory free on this machine"],
    );
}

#[test]
fn numbers_out_of_range_are_named_with_their_position() {
    let dir = temp_dir("ranges");
    let path = dir.join("ranges.toml");
    let config = "[data]\nkind = \"digits\"\ntest_fraction = 1.5\n\n[model]\nlayers = [\n  \
                  { type = \"conv2d\", out_channels = 4, kernel = 0 },\n  { type = \"dropout\", p = 1.0 },\n  \
                  { type = \"flatten\" },\n  { type = \"linear\", out_features = 10 },\n]\n\n\
                  [train]\nepochs = 0\nlr = nan\nmomentum = 1.5\nbatch_size = 0\n";
    std::fs::write(&path, config).unwrap();
    fails_with(
        &dlcli(&["config", "check", path.to_str().unwrap()]),
        &[
            "7 problems",
            "ranges.toml:3:17: data.test_fraction: must be in (0, 1), got 1.5",
            "ranges.toml:7:49: model.layers[0].kernel: must be at least 1, got 0",
            "ranges.toml:8:27: model.layers[1].p: must be in [0, 1), got 1",
            "ranges.toml:14:10: train.epochs: must be at least 1, got 0",
            "ranges.toml:15:6: train.lr: must be a positive number, got NaN",
            "ranges.toml:16:12: train.momentum: must be in [0, 1), got 1.5",
            "ranges.toml:17:14: train.batch_size: must be at least 1, got 0",
        ],
    );
}

/// An LSTM and a GRU read the digits a row at a time (8 steps of 8 pixels) and learn them;
/// the run's checkpoint has torch.nn.LSTM's / GRU's parameter names.
#[test]
fn recurrent_layers_learn_the_digits_row_by_row() {
    let dir = temp_dir("recurrent");
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz");
    for cell in ["lstm", "gru"] {
        let config = format!(
            "[data]\nkind = \"digits\"\npath = {:?}\n\n[model]\nlayers = [\n  {{ type = \"image_rows\" }},\n  \
             {{ type = \"{cell}\", name = \"rnn\", hidden = 32, bidirectional = true, return = \"last\" }},\n  \
             {{ type = \"linear\", name = \"fc\", out_features = 10 }},\n]\n\n\
             [train]\nepochs = 20\nbatch_size = 32\nlr = 5e-3\nclip_grad_norm = 1.0\n",
            digits.to_str().unwrap()
        );
        let path = dir.join(format!("{cell}.toml"));
        std::fs::write(&path, config).unwrap();
        let out = train(&path, &dir, &["--run", cell]);
        assert!(out.status.success(), "{:?}", text(&out));
        let last = epoch_lines(&dir.join(cell).join("metrics.jsonl")).pop().unwrap();
        let accuracy = last["test_accuracy"].as_f64().unwrap();
        assert!(accuracy >= 0.94, "{cell}: test accuracy {accuracy}");
        let (header, _) = safetensors_parts(&dir.join(cell).join("best.safetensors"));
        for name in ["rnn.weight_ih_l0", "rnn.weight_hh_l0_reverse", "rnn.bias_hh_l0", "fc.weight"] {
            assert!(header.get(name).is_some(), "{cell}: {name} missing from the checkpoint");
        }
    }
}

/// Output piped into a reader that has gone (`dlcli ... | head -1`) ends dlcli quietly.
#[test]
fn a_closed_output_pipe_is_no_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlcli"))
        .args(["config", "defaults"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before dlcli prints anything
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && out.status.code() != Some(101), "{:?}: {stderr}", out.status);
}

/// A Vision Transformer (2×2 patches of the 8×8 digits: 16 tokens and a class token, one
/// pre-norm encoder layer) learns the digits; its checkpoint has nn.TransformerEncoder's names.
#[test]
fn a_small_vision_transformer_learns_the_digits() {
    let dir = temp_dir("vit");
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz");
    let config = format!(
        "[data]\nkind = \"digits\"\npath = {:?}\n\n[model]\nlayers = [\n  \
         {{ type = \"conv2d\", name = \"patch\", out_channels = 32, kernel = 2, stride = 2 }},\n  \
         {{ type = \"tokens\" }},\n  {{ type = \"class_token\", name = \"cls\" }},\n  {{ type = \"position\", name = \"pos\" }},\n  \
         {{ type = \"transformer_encoder\", name = \"enc\", heads = 4, feedforward = 64, dropout = 0.0 }},\n  \
         {{ type = \"layer_norm\", name = \"norm\" }},\n  {{ type = \"step\" }},\n  \
         {{ type = \"linear\", name = \"head\", out_features = 10 }},\n]\n\n\
         [train]\nepochs = 30\nbatch_size = 32\nlr = 2e-3\n",
        digits.to_str().unwrap()
    );
    let path = dir.join("vit.toml");
    std::fs::write(&path, config).unwrap();
    let out = train(&path, &dir, &["--run", "vit"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let last = epoch_lines(&dir.join("vit/metrics.jsonl")).pop().unwrap();
    let accuracy = last["test_accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "test accuracy {accuracy}");
    let (header, _) = safetensors_parts(&dir.join("vit/best.safetensors"));
    for name in [
        "cls.token",
        "pos.weight",
        "enc.layers.0.self_attn.in_proj_weight",
        "enc.layers.0.linear2.bias",
        "enc.layers.0.norm1.weight",
    ] {
        assert!(header.get(name).is_some(), "{name} missing from the checkpoint");
    }
    // Its attention: 4 heads over the 17 tokens, rows and their rollout distributions, the
    // rollout of the class token drawn over the digit.
    let out_png = dir.join("attention.png");
    let run_dir = dir.join("vit");
    let args = ["explain", "--method", "attention", "--run", run_dir.to_str().unwrap(), "--index", "3"];
    let out = dlcli(&[&args[..], &["--device", "cpu", "--out", out_png.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("attention.json")).unwrap()).unwrap();
    let layer = &sidecar["layers"][0];
    assert_eq!(
        (layer["name"].as_str(), layer["heads"].as_u64(), layer["queries"].as_u64()),
        (Some("enc.layers.0.self_attn"), Some(4), Some(17))
    );
    for row in layer["probabilities"].as_array().unwrap().iter().flat_map(|h| h.as_array().unwrap()) {
        assert!((numbers(row).iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }
    for row in sidecar["rollout"].as_array().unwrap() {
        assert!((numbers(row).iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    assert!(dir.join("attention-rollout.png").exists() && out_png.exists());
}

/// The tensor `name`'s bytes in a safetensors file.
fn tensor_bytes(path: &Path, name: &str) -> Vec<u8> {
    let (header, data) = safetensors_parts(path);
    let offsets = numbers(&header[name]["data_offsets"]);
    data[offsets[0] as usize..offsets[1] as usize].to_vec()
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{:?}", text(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A small causal Transformer (its head tied to the embedding) and a GRU learn Shakespeare's
/// characters from windows of 32: each beats the unigram model's loss by far after 300
/// steps, its checkpoint keeps the vocabulary, and `generate` continues a prompt the same way
/// for the same seed.
#[test]
fn character_language_models_learn_shakespeare_and_generate() {
    let dir = temp_dir("charlm");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/shakespeare/shakespeare-9-plays.txt");
    let gpt = "{ type = \"embedding\", name = \"embed\", dim = 32, std = 0.02 },\n  { type = \"position\", name = \"pos\" },\n  \
               { type = \"transformer_encoder\", name = \"blocks\", heads = 2, feedforward = 64, dropout = 0.0, causal = true },\n  \
               { type = \"layer_norm\", name = \"norm\" },\n  { type = \"linear\", name = \"head\", tie = \"embed\" },";
    let gru = "{ type = \"embedding\", name = \"embed\", dim = 32 },\n  { type = \"gru\", name = \"gru\", hidden = 64 },\n  \
               { type = \"linear\", name = \"head\" },";
    // Measured: 2.44 and 2.17 nats; the characters' unigram entropy is 3.2.
    for (name, layers, floor) in [("gpt", gpt, 2.55), ("gru", gru, 2.3)] {
        let config = format!(
            "[data]\nkind = \"text\"\npath = {:?}\ncontext = 32\nwindows = 4800\n\n[model]\nlayers = [\n  {layers}\n]\n\n\
             [train]\nepochs = 2\nbatch_size = 32\nlr = 3e-3\nclip_grad_norm = 1.0\nmonitor = \"loss\"\n",
            corpus.to_str().unwrap()
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let out = train(&path, &dir, &["--run", name]);
        assert!(out.status.success(), "{:?}", text(&out));
        let run = dir.join(name);
        let text_of_metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let steps = text_of_metrics.lines().filter(|l| l.contains("\"kind\":\"step\"")).count();
        assert_eq!(steps, 3, "{name}: a step line every 100 of the 300 steps");
        let last = epoch_lines(&run.join("metrics.jsonl")).pop().unwrap();
        let loss = last["test_loss"].as_f64().unwrap();
        assert!(loss <= floor, "{name}: held-out loss {loss} nats per character");
        let perplexity = last["test_perplexity"].as_f64().unwrap();
        assert!((perplexity - loss.exp()).abs() < 1e-9 * perplexity, "{name}: perplexity {perplexity}");
        let best = run.join("best.safetensors");
        let (header, _) = safetensors_parts(&best);
        let data: serde_json::Value = serde_json::from_str(header["__metadata__"]["data"].as_str().unwrap()).unwrap();
        let mut chars: Vec<char> = std::fs::read_to_string(&corpus).unwrap().chars().collect();
        chars.sort_unstable();
        chars.dedup();
        assert_eq!(data["vocabulary"].as_str().unwrap(), chars.iter().collect::<String>(), "{name}");
        if name == "gpt" {
            assert_eq!(tensor_bytes(&best, "head.weight"), tensor_bytes(&best, "embed.weight"), "tied");
        }
        let eval = stdout_json(&dlcli(&["eval", "--run", run.to_str().unwrap(), "--device", "cpu", "--json"]));
        assert!((eval["loss"].as_f64().unwrap() - loss).abs() < 1e-5, "{name}: eval {eval} vs training's {loss}");

        let generate = |seed: &str| {
            let args = ["generate", "--run", run.to_str().unwrap(), "--device", "cpu", "--prompt", "ROMEO:"];
            let out = dlcli(
                &[&args[..], &["--tokens", "80", "--temperature", "0.8", "--top-k", "10", "--seed", seed]].concat(),
            );
            assert!(out.status.success(), "{:?}", text(&out));
            text(&out).0
        };
        let sampled = generate("7");
        assert!(sampled.starts_with("ROMEO:") && sampled.chars().count() == 6 + 80 + 1, "{name}: {sampled:?}");
        assert_eq!(generate("7"), sampled, "{name}: the same seed gives the same text");
        assert_ne!(generate("8"), sampled, "{name}: another seed, other text");
        // The GPU executor (lavapipe in CI) evaluates and decodes as the CPU one.
        let eval_gpu = dlcli(&["eval", "--run", run.to_str().unwrap(), "--device", "gpu", "--json"]);
        if eval_gpu.status.success() {
            let gpu_loss = stdout_json(&eval_gpu)["loss"].as_f64().unwrap();
            assert_within(&format!("{name}: eval loss on the GPU"), &[gpu_loss], &[eval["loss"].as_f64().unwrap()]);
            let greedy = |device: &str| {
                let args = ["generate", "--run", run.to_str().unwrap(), "--prompt", "KING", "--tokens", "40"];
                text(&dlcli(&[&args[..], &["--temperature", "0", "--device", device]].concat())).0
            };
            assert_eq!(greedy("gpu"), greedy("cpu"), "{name}: greedy decoding on both executors");
        } else {
            kernels::no_adapter(&format!("{name} on the GPU executor"), &text(&eval_gpu).1);
        }
        let next = stdout_json(&dlcli(&[
            "predict",
            "--run",
            run.to_str().unwrap(),
            "--device",
            "cpu",
            "--text",
            "ROMEO",
            "--top-k",
            "78",
            "--json",
        ]));
        let probabilities: Vec<f64> =
            next["top"].as_array().unwrap().iter().map(|t| t["probability"].as_f64().unwrap()).collect();
        assert!(
            (probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-4 && probabilities.windows(2).all(|w| w[0] >= w[1])
        );
    }
    // The GPT's attention over a prompt: causal maps cropped to its 6 characters, the text
    // highlighted by the rollout into its last character.
    let out_png = dir.join("gpt-attention.png");
    let run_dir = dir.join("gpt");
    let args = ["explain", "--method", "attention", "--run", run_dir.to_str().unwrap(), "--text", "ROMEO:"];
    let out = dlcli(&[&args[..], &["--device", "cpu", "--out", out_png.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gpt-attention.json")).unwrap()).unwrap();
    assert_eq!(sidecar["tokens"], "ROMEO:");
    let head = &sidecar["layers"][0]["probabilities"][1];
    for (i, row) in head.as_array().unwrap().iter().enumerate() {
        let row = numbers(row);
        assert_eq!(row.len(), 6);
        assert!(row[i + 1..].iter().all(|&p| p == 0.0), "query {i} attends to later characters: {row:?}");
    }
    let html = std::fs::read_to_string(dir.join("gpt-attention.html")).unwrap();
    assert_eq!(html.matches("<span").count(), 6, "{html}");
    // Saliency of the GRU's prediction after "ROMEO:": one value per character.
    let out_png = dir.join("gru-saliency.png");
    let run_dir = dir.join("gru");
    let args = ["explain", "--method", "saliency", "--run", run_dir.to_str().unwrap(), "--text", "ROMEO:"];
    let out = dlcli(&[&args[..], &["--device", "cpu", "--out", out_png.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gru-saliency.json")).unwrap()).unwrap();
    let map = numbers(&sidecar["map"]);
    assert_eq!((sidecar["height"].as_u64(), sidecar["tokens"].as_str()), (Some(32), Some("ROMEO:")));
    assert!(map[..6].iter().all(|&v| v > 0.0) && map[6..].iter().all(|&v| v == 0.0), "{map:?}");
    assert!(out_png.exists() && dir.join("gru-saliency.html").exists());
    // Integrated Gradients and LIME over its words: the report highlights the 6 characters.
    let report = dir.join("gru-report.html");
    let args = ["explain", "--method", "integrated_gradients,lime", "--run", run_dir.to_str().unwrap()];
    let extra = ["--text", "ROMEO: O", "--features", "words", "--device", "cpu", "--report", report.to_str().unwrap()];
    let out = dlcli(&[&args[..], &extra[..]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("<span").count(), 2 * 8, "8 characters highlighted per method");
    let run = dir.join("gpt");
    fails_with(
        &dlcli(&["generate", "--run", run.to_str().unwrap(), "--prompt", "ROMEO€", "--device", "cpu"]),
        &["--prompt", "'€' is not in the model's vocabulary of 78 characters"],
    );
}

/// The shipped sunspot forecaster beats the persistence baseline on the held-out months, in
/// sunspots, and its checkpoint keeps the training part's normalisation.
#[test]
fn the_sunspot_forecaster_beats_persistence() {
    let dir = temp_dir("sunspots");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/lstm-sunspots.toml");
    let out = train(&config, &dir, &["--run", "sun"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let run = dir.join("sun");
    let eval = stdout_json(&dlcli(&["eval", "--run", run.to_str().unwrap(), "--device", "cpu", "--json"]));
    let (rmse, persistence) = (eval["rmse"].as_f64().unwrap(), eval["persistence_rmse"].as_f64().unwrap());
    // Persistence on the last 564 months, computed from the CSV by hand: 20.0907.
    assert!((persistence - 20.0907).abs() < 1e-3, "{persistence}");
    assert!(rmse < 0.97 * persistence, "rmse {rmse} against persistence {persistence}");
    let csv = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/timeseries/monthly-sunspots.csv"),
    )
    .unwrap();
    let values: Vec<f64> = csv.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    let train_part = &values[..2256];
    let mean = train_part.iter().sum::<f64>() / 2256.0;
    // The seasonal naive forecast, one solar cycle back (127 months: the autocorrelation's
    // peak, said at the start of training), and MASE against its in-sample error, by hand.
    assert!(text(&out).0.contains("season 127, from the autocorrelation"), "{}", text(&out).0);
    assert_eq!((eval["season"].as_u64(), eval["season_inferred"].as_bool()), (Some(127), Some(true)));
    let squares: f64 = (2256..values.len()).map(|t| (values[t] - values[t - 127]).powi(2)).sum();
    let seasonal = (squares / (values.len() - 2256) as f64).sqrt();
    assert!((eval["seasonal_naive_rmse"].as_f64().unwrap() - seasonal).abs() < 1e-9, "{eval} {seasonal}");
    assert!(rmse < seasonal, "rmse {rmse} against the seasonal naive forecast's {seasonal}");
    let scale = (127..2256).map(|t| (values[t] - values[t - 127]).abs()).sum::<f64>() / (2256 - 127) as f64;
    let (mae, mase) = (eval["mae"].as_f64().unwrap(), eval["mase"].as_f64().unwrap());
    assert!((mase - mae / scale).abs() < 1e-9 && mae < rmse && mase < 1.0, "{eval}");
    // A season given in [data] is the one used, and said to be given.
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(
        run.join("config.toml"),
        resolved.replace("test_fraction = 0.2", "test_fraction = 0.2\nseason = 12"),
    )
    .unwrap();
    let yearly = stdout_json(&dlcli(&["eval", "--run", run.to_str().unwrap(), "--device", "cpu", "--json"]));
    assert_eq!((yearly["season"].as_u64(), yearly["season_inferred"].as_bool()), (Some(12), Some(false)));
    let squares: f64 = (2256..values.len()).map(|t| (values[t] - values[t - 12]).powi(2)).sum();
    let by_hand = (squares / (values.len() - 2256) as f64).sqrt();
    assert!((yearly["seasonal_naive_rmse"].as_f64().unwrap() - by_hand).abs() < 1e-9, "{yearly}");
    std::fs::write(run.join("config.toml"), resolved).unwrap();
    let (header, _) = safetensors_parts(&run.join("best.safetensors"));
    let data: serde_json::Value = serde_json::from_str(header["__metadata__"]["data"].as_str().unwrap()).unwrap();
    assert!((data["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{data}");
    // A forecast in sunspots: from the last 36 months before the test part, next to the truth.
    let latest: Vec<String> = values[2256 - 36..2256].iter().map(|v| v.to_string()).collect();
    let args = ["predict", "--run", run.to_str().unwrap(), "--device", "cpu", "--json"];
    let from_values = stdout_json(&dlcli(&[&args[..], &["--values", &latest.join(",")]].concat()));
    let from_index = stdout_json(&dlcli(&[&args[..], &["--index", "0"]].concat()));
    let forecast = from_values["forecast"].as_f64().unwrap();
    assert!((forecast - from_index["forecast"].as_f64().unwrap()).abs() < 1e-3, "{from_values} {from_index}");
    assert!((from_index["actual"].as_f64().unwrap() - values[2256]).abs() < 1e-4);
    assert!((forecast - values[2256]).abs() < 60.0, "forecast {forecast} for {}", values[2256]);
    // Saliency per month of the window.
    let out_png = dir.join("saliency.png");
    let args = ["explain", "--method", "saliency", "--run", run.to_str().unwrap(), "--index", "0", "--device", "cpu"];
    let out = dlcli(&[&args[..], &["--out", out_png.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("saliency.json")).unwrap()).unwrap();
    assert_eq!((sidecar["height"].as_u64(), sidecar["width"].as_u64()), (Some(36), Some(1)));
    assert!(numbers(&sidecar["map"]).iter().all(|v| v.is_finite() && *v >= 0.0) && out_png.exists());
}

/// A text run resumed after an epoch draws the same random windows for the next and ends
/// with the same tensor bytes as one run straight through.
#[test]
fn a_resumed_text_run_ends_with_the_same_weights() {
    let dir = temp_dir("text-resume");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/shakespeare/shakespeare-9-plays.txt");
    let config = format!(
        "[data]\nkind = \"text\"\npath = {:?}\ncontext = 16\nwindows = 640\n\n[model]\nlayers = [\n  \
         {{ type = \"embedding\", name = \"embed\", dim = 8 }},\n  {{ type = \"gru\", name = \"gru\", hidden = 16 }},\n  \
         {{ type = \"linear\", name = \"head\" }},\n]\n\n[train]\nepochs = 2\nbatch_size = 32\nlr = 3e-3\n",
        corpus.to_str().unwrap()
    );
    let path = dir.join("gru.toml");
    std::fs::write(&path, config).unwrap();
    assert!(train(&path, &dir, &["--run", "full"]).status.success());
    assert!(train(&path, &dir, &["--run", "part", "--epochs", "1"]).status.success());
    let resumed = dlcli(&["train", "--resume", dir.join("part").to_str().unwrap(), "--epochs", "2", "--quiet"]);
    assert!(resumed.status.success(), "{:?}", text(&resumed));
    let (_, full) = safetensors_parts(&dir.join("full/epoch-2.safetensors"));
    let (_, part) = safetensors_parts(&dir.join("part/epoch-2.safetensors"));
    assert!(full == part, "the resumed run's tensors differ");
}

/// Grad-CAM's default layer in a residual network is the last block's rectified output, not
/// the 1×1 shortcut projection that comes last among its convolutions in config order.
#[test]
fn gradcam_defaults_to_the_last_blocks_rectified_output() {
    let runs = temp_dir("gradcam-residual");
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz");
    let config = runs.join("residual.toml");
    std::fs::write(
        &config,
        format!(
            r#"[data]
kind = "digits"
path = "{}"
test_fraction = 0.2

[model]
layers = [
    {{ type = "conv2d", name = "stem.conv", out_channels = 8, kernel = 3, padding = 1 }},
    {{ type = "relu", name = "stem" }},
    {{ type = "conv2d", name = "block.conv1", out_channels = 16, kernel = 3, stride = 2, padding = 1 }},
    {{ type = "relu" }},
    {{ type = "conv2d", name = "block.conv2", out_channels = 16, kernel = 3, padding = 1 }},
    {{ type = "conv2d", name = "block.shortcut", inputs = ["stem"], out_channels = 16, kernel = 1, stride = 2 }},
    {{ type = "add", name = "block.sum", inputs = ["block.conv2", "block.shortcut"] }},
    {{ type = "relu", name = "block" }},
    {{ type = "global_avg_pool" }},
    {{ type = "linear", name = "fc", out_features = 10 }},
]

[train]
epochs = 1
batch_size = 32
"#,
            digits.display()
        ),
    )
    .unwrap();
    let out = train(&config, &runs, &["--run", "residual"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let png = runs.join("cam.png");
    let run = runs.join("residual");
    let args = ["explain", "--method", "gradcam", "--run", run.to_str().unwrap(), "--index", "0", "--out"];
    let out = dlcli(&[&args[..], &[png.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("cam.json")).unwrap()).unwrap();
    assert_eq!(sidecar["layer"], "block");
}

/// A loss that turns NaN stops the run at that step, exit 1, with the step and what to change;
/// every checkpoint written before it stays as it was and none of the broken state is saved.
#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_what_was_saved() {
    let runs = temp_dir("non-finite");
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz");
    let config = runs.join("mlp.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\nkind = \"digits\"\npath = {:?}\n\n[model]\nlayers = [\n  {{ type = \"flatten\" }},\n  \
             {{ type = \"linear\", name = \"fc1\", out_features = 32 }},\n  {{ type = \"relu\" }},\n  \
             {{ type = \"linear\", name = \"fc\", out_features = 10 }},\n]\n\n[train]\noptimizer = \"sgd\"\n\
             lr = 0.1\nepochs = 1\n",
            digits.to_str().unwrap()
        ),
    )
    .unwrap();
    assert!(train(&config, &runs, &["--run", "r"]).status.success());
    let run = runs.join("r");
    let saved = |name: &str| std::fs::read(run.join(name)).unwrap();
    let (epoch, best) = (saved("epoch-1.safetensors"), saved("best.safetensors"));
    // The same run continued at a learning rate that overflows in the first steps.
    let kept = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(run.join("config.toml"), kept.replace("lr = 0.1\n", "lr = 1e30\n")).unwrap();
    let out = dlcli(&["train", "--resume", run.to_str().unwrap(), "--epochs", "3", "--quiet"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let stop = ["(epoch 2): the training loss is NaN", "Lower [train] lr (now 1e30)", "clip_grad_norm"];
    fails_with(&out, &[&stop[..], &["--detect-anomaly names the layer where it begins"]].concat());
    // --detect-anomaly names the layer: the first product of weights grown to about 1e30.
    let out = dlcli(&["train", "--resume", run.to_str().unwrap(), "--epochs", "3", "--quiet", "--detect-anomaly"]);
    let found = "The first non-finite value is in layer \"fc\", forward (fc: matmul output 0 of shape [64, 10])";
    fails_with(&out, &[&stop[..], &[found]].concat());
    assert!(saved("epoch-1.safetensors") == epoch && saved("best.safetensors") == best, "a checkpoint changed");
    assert!(!run.join("epoch-2.safetensors").exists() && !run.join("interrupted.safetensors").exists());
    let last = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().last().unwrap().to_string();
    assert!(last.contains("\"kind\":\"stopped\"") && last.contains("non-finite loss"), "{last}");
}

/// A second process on a training run's directory is refused, naming the holder; once that
/// holder is killed with -9 its lock is recognised as stale and the run resumes.
#[test]
fn a_run_directory_has_one_trainer_and_a_killed_ones_lock_is_taken_over() {
    let runs = temp_dir("lock");
    let mut child = digits_in_background(&runs, "held", 500);
    let run = runs.join("held");
    wait_for(&run.join("epoch-1.safetensors"));
    let pid = child.id().to_string();
    let holder = format!("in use by dlcli process {pid}");
    fails_with(&dlcli(&["train", "--resume", run.to_str().unwrap(), "--quiet"]), &[&holder]);
    fails_with(&train(Path::new("configs/digits.toml"), &runs, &["--run", "held", "--force"]), &[&holder]);
    assert!(run.join("epoch-1.safetensors").exists(), "--force removed a running run's files");
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    child.wait().unwrap();
    assert!(run.join("dlcli.lock").exists(), "kill -9 leaves the lock behind");
    let epochs = (epoch_checkpoints_in(&run) + 1).to_string();
    let resumed = dlcli(&["train", "--resume", run.to_str().unwrap(), "--epochs", &epochs, "--quiet"]);
    let (_, stderr) = text(&resumed);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("left by process {pid}, which is no longer running")), "{stderr}");
    assert!(!run.join("dlcli.lock").exists(), "a finished run releases its lock");
}

/// The last epoch number among a run's epoch checkpoints.
fn epoch_checkpoints_in(run: &Path) -> u64 {
    std::fs::read_dir(run)
        .unwrap()
        .filter_map(|e| {
            e.ok()?.file_name().to_str()?.strip_prefix("epoch-")?.strip_suffix(".safetensors")?.parse().ok()
        })
        .max()
        .unwrap()
}

/// Memory stays flat over a long run: the resident set of `dlcli train` on the digits config,
/// sampled every 5 ms over 20 epochs: the largest in the last five epochs is within 5% of the
/// largest in epochs 2 to 5 (within an epoch it swings by a few percent as checkpoints are
/// serialised and curves drawn).
#[cfg(target_os = "linux")]
#[test]
fn memory_stays_flat_over_twenty_epochs() {
    let runs = temp_dir("rss");
    let mut child = digits_in_background(&runs, "long", 20);
    let status = format!("/proc/{}/status", child.id());
    let rss_kib = || -> Option<u64> {
        let text = std::fs::read_to_string(&status).ok()?;
        text.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().strip_suffix("kB")?.trim().parse().ok()
    };
    let metrics = runs.join("long/metrics.jsonl");
    let epochs_done = || std::fs::read_to_string(&metrics).map_or(0, |t| t.matches("\"kind\":\"epoch\"").count());
    // The largest resident set seen while each epoch (0-based) trained.
    let mut peaks = vec![0u64; 20];
    while child.try_wait().unwrap().is_none() {
        if let (Some(rss), epoch) = (rss_kib(), epochs_done()) {
            let peak = &mut peaks[epoch.min(19)];
            *peak = (*peak).max(rss);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(child.wait().unwrap().success());
    let (early, late) = (*peaks[1..5].iter().max().unwrap(), *peaks[15..].iter().max().unwrap());
    assert!(early > 0 && late > 0, "sampled every epoch: {peaks:?}");
    let growth = late as f64 / early as f64 - 1.0;
    println!("RSS peaks per epoch (KiB): {peaks:?}; epochs 16-20 against 2-5: {:+.2}%", 100.0 * growth);
    assert!(growth < 0.05, "RSS grew {:.1}% over the run ({early} -> {late} KiB): {peaks:?}", 100.0 * growth);
}

/// A damaged last checkpoint (one flipped bit in its tensors: the file still parses, its
/// checksum does not match) is skipped at --resume with a warning naming it: the run goes on
/// from the one before and ends with the same tensor bytes as a run straight through. With
/// every checkpoint damaged it stops, naming them.
#[test]
fn resume_skips_a_damaged_last_checkpoint() {
    let runs = temp_dir("damaged-resume");
    let config = Path::new("configs/digits.toml");
    assert!(train(config, &runs, &["--run", "cut", "--epochs", "3"]).status.success());
    assert!(train(config, &runs, &["--run", "whole", "--epochs", "4"]).status.success());
    let cut = runs.join("cut");
    let last = cut.join("epoch-3.safetensors");
    let mut bytes = std::fs::read(&last).unwrap();
    let end = bytes.len() - 1;
    bytes[end] ^= 0x10;
    std::fs::write(&last, &bytes).unwrap();
    let resumed = dlcli(&["train", "--resume", cut.to_str().unwrap(), "--epochs", "4", "--quiet"]);
    let (_, stderr) = text(&resumed);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("epoch-3.safetensors") && stderr.contains("checksum"), "{stderr}");
    assert!(stderr.contains("resuming from") && stderr.contains("epoch-2.safetensors (after epoch 2)"), "{stderr}");
    let tensors = |run: &str| safetensors_parts(&runs.join(run).join("epoch-4.safetensors")).1;
    assert!(tensors("cut") == tensors("whole"), "resumed from epoch 2: different weights");
    // Every checkpoint damaged: a clear stop.
    for name in ["epoch-3.safetensors", "epoch-4.safetensors"] {
        std::fs::write(cut.join(name), b"not a checkpoint").unwrap();
    }
    fails_with(
        &dlcli(&["train", "--resume", cut.to_str().unwrap(), "--epochs", "5", "--quiet"]),
        &["no checkpoint of", "epoch-4.safetensors", "epoch-3.safetensors"],
    );
}

/// `kill -9` at 24 moments of a digits run that saves its state every 5 steps, each followed
/// by `--resume` (by a fresh start while no checkpoint exists yet): the run ends with the
/// checkpoints and metrics.jsonl (all but its samples/s) of a run never killed, and no resume
/// meets a damaged checkpoint. Half the kills come at a random moment (start-up, a step, an
/// evaluation, a metrics line, a checkpoint), half as soon as a checkpoint's temporary file
/// appears (during its write).
#[cfg(unix)]
#[test]
fn kill_9_at_any_moment_then_resume_ends_as_a_run_never_killed() {
    use std::os::unix::process::ExitStatusExt;
    let runs = temp_dir("kill-9");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = repo.join("datasets/digits/digits.csv.gz").canonicalize().unwrap();
    let digits = std::fs::read_to_string(repo.join("configs/digits.toml")).unwrap();
    let digits = digits.replace("\"../datasets/digits/digits.csv.gz\"", &format!("{:?}", data.to_str().unwrap()));
    let config = runs.join("digits.toml");
    std::fs::write(&config, digits + "checkpoint_every_steps = 5\n").unwrap();
    let epochs = ["--epochs", "8"];
    let clock = std::time::Instant::now();
    let whole = train(&config, &runs, &[&["--run", "whole"], &epochs[..]].concat());
    assert!(whole.status.success(), "{:?}", text(&whole));
    let run_time = clock.elapsed();

    let whole = runs.join("whole");
    let files = |run: &Path| -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(run).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    let metrics = |run: &Path| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let mut rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        rows.iter_mut().for_each(|row| drop(row.as_object_mut().unwrap().remove("samples_per_s")));
        rows
    };
    let ends_as_the_whole_run = |run: &Path| {
        assert_eq!(files(run), files(&whole), "no temporary, lock or mid-epoch checkpoint is left");
        for name in ["epoch-7.safetensors", "epoch-8.safetensors", "best.safetensors"] {
            assert!(safetensors_parts(&run.join(name)) == safetensors_parts(&whole.join(name)), "{name} differs");
        }
        assert_eq!(metrics(run), metrics(&whole), "metrics.jsonl differs from the run never killed");
    };

    let cut = runs.join("cut");
    let temporaries = || -> Vec<String> {
        let names =
            std::fs::read_dir(&cut).into_iter().flatten().filter_map(|e| e.ok()?.file_name().into_string().ok());
        names.filter(|n| n.contains(".tmp-")).collect()
    };
    let mut random = 0x2545_F491_4F6C_DD1Du64;
    let (mut kills, mut mid_write, mut resumes, mut finished) = (0, 0, 0, 0);
    while kills < 24 {
        let resume = cut.join("config.toml").exists()
            && std::fs::read_dir(&cut).unwrap().any(|e| {
                e.unwrap().file_name().to_str().is_some_and(|n| n.ends_with(".safetensors") && !n.contains(".tmp-"))
            });
        let mut command = Command::new(env!("CARGO_BIN_EXE_dlcli"));
        match resume {
            true => command.args(["train", "--resume", cut.to_str().unwrap(), "--quiet"]),
            false => command
                .args(["train", "--config", config.to_str().unwrap(), "--device", "cpu", "--quiet"])
                .args(epochs)
                .args(["--runs-dir", runs.to_str().unwrap(), "--run", "cut", "--force"]),
        };
        let mut child =
            command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        if kills % 2 == 0 {
            // A moment within the first eighth of a whole run's time.
            std::thread::sleep(run_time.mul_f64((random % 1000) as f64 / 8000.0));
        } else {
            let deadline = std::time::Instant::now() + run_time;
            while temporaries().is_empty() && std::time::Instant::now() < deadline {}
        }
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The one warning a kill leaves for the next start is its lock's.
        let damaged = stderr.lines().any(|l| l.starts_with("warning:") && !l.contains("dlcli.lock was left by"));
        assert!(!damaged && !stderr.contains("panicked"), "{stderr}");
        if out.status.success() {
            // The rest of the run took less than the wait (a busy machine measured the whole
            // run slow): it must end as the run never killed, and a fresh one takes the kills.
            ends_as_the_whole_run(&cut);
            std::fs::remove_dir_all(&cut).unwrap();
            finished += 1;
            continue;
        }
        assert!(out.status.signal() == Some(9), "neither killed nor finished: {:?} {stderr}", out.status);
        kills += 1;
        resumes += resume as u32;
        mid_write += !temporaries().is_empty() as u32;
    }
    let last = dlcli(&["train", "--resume", cut.to_str().unwrap(), "--quiet"]);
    assert!(last.status.success(), "{:?}", text(&last));
    println!(
        "{kills} kills ({mid_write} during a checkpoint's write, {resumes} of resumed runs), {finished} runs finished"
    );
    assert!(resumes >= 12 && mid_write >= 6, "{resumes} kills of resumed runs, {mid_write} during a write");
    ends_as_the_whole_run(&cut);
}

/// A file-size limit (what a full disk does to a write, without a special file system) stops
/// the run with the file named, exit 1: every checkpoint and picture already written stays
/// whole and loadable, and nothing half-written is left under a final name or as a temporary.
#[cfg(unix)]
#[test]
fn a_full_disk_stops_the_run_with_everything_saved_intact() {
    let runs = temp_dir("disk-full");
    assert!(train(Path::new("configs/digits.toml"), &runs, &["--run", "r", "--epochs", "1"]).status.success());
    let run = runs.join("r");
    let before: Vec<(String, Vec<u8>)> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors" || e == "png"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    assert!(
        before.len() >= 3,
        "a checkpoint, best and the curves: {:?}",
        before.iter().map(|b| &b.0).collect::<Vec<_>>()
    );
    // 40 KiB a file: the next checkpoint (65 KB) or curves (over 100 KB) cannot be written.
    let resume = format!(
        "ulimit -f 40; exec {} train --resume {} --epochs 3 --quiet",
        env!("CARGO_BIN_EXE_dlcli"),
        run.display()
    );
    let out = Command::new("bash").args(["-c", &resume]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("File too large") && stderr.contains(run.to_str().unwrap()), "{stderr}");
    for (name, bytes) in &before {
        assert!(std::fs::read(run.join(name)).unwrap() == *bytes, "{name} changed");
    }
    assert!(image::open(run.join("curves.png")).is_ok());
    let names: Vec<String> =
        std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp-") || n == "epoch-2.safetensors"), "{names:?}");
    let resumed = dlcli(&["train", "--resume", run.to_str().unwrap(), "--epochs", "2", "--quiet"]);
    assert!(resumed.status.success(), "the run continues once there is room: {:?}", text(&resumed));
}

/// `train --profile` ends with the training step's time per config layer (forward and
/// backward) and per op kind, printed and kept in the run's profile.txt.
#[test]
fn train_profile_times_each_config_layer() {
    let runs = temp_dir("profile");
    let out = train(Path::new("configs/digits.toml"), &runs, &["--run", "p", "--epochs", "1", "--profile"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let kept = std::fs::read_to_string(runs.join("p/profile.txt")).unwrap();
    assert!(stdout.contains(&kept), "the printed profile is the kept one");
    assert!(kept.starts_with("time per training step over 44 steps:"), "{kept}");
    // Every config layer, in config order (unnamed ones by their type and position), then the
    // loss and the optimizer.
    let layers =
        ["conv1", "bn1", "stem", "block_conv", "relu5", "residual", "max_pool2d7", "flatten8", "dropout9", "fc"];
    let rows: Vec<&str> =
        kept.lines().skip(2).take_while(|l| !l.is_empty()).map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(rows, [&layers[..], &["(outside", "(optimizer)"]].concat(), "{kept}");
    for op in ["conv2d_backward", "batch_norm", "update", "grad_norm"] {
        assert!(kept.lines().any(|l| l.starts_with(op)), "no {op} row:\n{kept}");
    }
}
