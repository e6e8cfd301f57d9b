//! `dlcli explain` end to end on the committed fixture checkpoints (the shipped digits CNN and
//! sunspot LSTM, see scripts/captum_fixtures.py): every method writes its map, a sidecar with
//! the raw attribution and its shape, `.npy` arrays NumPy reads, and `--check`'s figures;
//! sampling methods repeat under one seed; bad settings are one clear line.

mod common;

use std::path::{Path, PathBuf};

use common::{dlcli, fails_with, numbers, temp_dir, text};
use serde_json::Value;

const METHODS: [&str; 9] = [
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "gradcam",
    "gradcam++",
    "occlusion",
    "lime",
    "kernel_shap",
];

fn checkpoint(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/explain/{name}.safetensors"));
    path.to_str().unwrap().to_string()
}

/// `dlcli explain` of test sample 0 on the CPU writing `out`, with `extra` options: its sidecar.
fn explain(model: &str, method: &str, out: &Path, extra: &[&str]) -> Value {
    let base = ["explain", "--method", method, "--checkpoint", &checkpoint(model), "--index", "0", "--device", "cpu"];
    let result = dlcli(&[&base[..], &["--out", out.to_str().unwrap()], extra].concat());
    assert!(result.status.success(), "{model} {method}: {:?}", text(&result));
    serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap()
}

/// A `.npy` file's shape and float32 values (the header as numpy.save writes it).
fn npy(path: &PathBuf) -> (String, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let length = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + length) % 64, 0, "numpy aligns the data to 64 bytes");
    let header = String::from_utf8_lossy(&bytes[10..10 + length]).to_string();
    let values = bytes[10 + length..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (header, values)
}

#[test]
fn every_method_explains_the_cnn_and_the_lstm() {
    let dir = temp_dir("explain-methods");
    for (model, shape, positions) in [("digits", vec![1, 8, 8], 64), ("sunspots", vec![36, 1], 36)] {
        for method in METHODS {
            let is_cam = method.starts_with("gradcam");
            if is_cam && model == "sunspots" {
                let out = dir.join("cam.png");
                let base = ["explain", "--method", method, "--checkpoint", &checkpoint(model), "--index", "0"];
                fails_with(
                    &dlcli(&[&base[..], &["--out", out.to_str().unwrap()]].concat()),
                    &["no layer with a [batch, K, h, w] feature map", "--method saliency"],
                );
                continue;
            }
            let out = dir.join(format!("{model}-{method}.png"));
            let sidecar = explain(model, method, &out, &["--npy"]);
            assert_eq!(sidecar["method"], method);
            let values = numbers(&sidecar["attributions"]);
            let got_shape: Vec<usize> = numbers(&sidecar["shape"]).iter().map(|&d| d as usize).collect();
            assert_eq!(values.len(), got_shape.iter().product::<usize>(), "{model} {method}");
            if !is_cam {
                assert_eq!(got_shape, shape, "{model} {method}: the raw attribution has the input's shape");
            }
            assert_eq!(numbers(&sidecar["map"]).len(), positions);
            assert!(values.iter().all(|v| v.is_finite()) && values.iter().any(|&v| v != 0.0), "{model} {method}");
            let (header, raw) = npy(&out.with_extension("npy"));
            let tuple: Vec<String> = got_shape.iter().map(usize::to_string).collect();
            let tuple = if tuple.len() == 1 { format!("({},)", tuple[0]) } else { format!("({})", tuple.join(", ")) };
            assert!(header.contains(&format!("'shape': {tuple}")), "{header}");
            assert!(raw.iter().zip(&values).all(|(a, b)| (*a as f64 - b).abs() <= 1e-6 * b.abs().max(1.0)));
            assert!(out.exists() && dir.join(format!("{model}-{method}-map.npy")).exists());
            if model == "digits" {
                let png = image::open(&out).unwrap();
                assert!(png.width() >= 224, "{method}: an overlay scaled up for eyes");
            }
        }
    }
    // The figures each method reports: IG's completeness gap on 50 Gauss-Legendre points,
    // KernelSHAP's values adding up to f(x) - f(baseline), LIME's surrogate fit.
    let figures = |method: &str| explain("digits", method, &dir.join("f.png"), &[])["figures"].clone();
    let ig = figures("integrated_gradients");
    assert!(ig["relative_completeness_gap"].as_f64().unwrap() < 0.01, "{ig}");
    let shap = figures("kernel_shap");
    assert!(shap["additivity_gap"].as_f64().unwrap() < 1e-4, "{shap}");
    let lime = figures("lime");
    assert!(lime["surrogate_r2"].as_f64().unwrap() > 0.5, "{lime}");
}

#[test]
fn a_seed_repeats_every_sampling_method_and_another_seed_does_not() {
    let dir = temp_dir("explain-seeds");
    for method in ["smoothgrad", "lime", "kernel_shap"] {
        let run = |seed: &str| {
            let sidecar = explain("digits", method, &dir.join(format!("{method}-{seed}.png")), &["--seed", seed]);
            numbers(&sidecar["attributions"])
        };
        let (first, again, other) = (run("3"), run("3"), run("4"));
        assert_eq!(first, again, "{method}: one seed, two results");
        assert_ne!(first, other, "{method}: another seed, the same draws");
    }
}

#[test]
fn check_reports_randomisation_and_deletion_figures() {
    let dir = temp_dir("explain-check");
    let out = dir.join("ig.png");
    let base = ["explain", "--method", "integrated_gradients", "--checkpoint", &checkpoint("digits")];
    let args = ["--index", "0", "--samples", "4", "--check", "--device", "cpu", "--out", out.to_str().unwrap()];
    let result = dlcli(&[&base[..], &args[..]].concat());
    let (stdout, stderr) = text(&result);
    assert!(result.status.success(), "{stderr}");
    let check =
        &serde_json::from_str::<Value>(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap()["check"];
    let layers: Vec<&str> =
        check["randomisation"].as_array().unwrap().iter().map(|s| s["layer"].as_str().unwrap()).collect();
    assert_eq!(layers, ["fc", "block_conv", "bn1", "conv1"], "the cascade runs from the top layer down");
    assert_eq!(check["samples"], 4);
    for key in ["deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"] {
        let v = check[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} {v}");
    }
    assert!(stdout.contains("cascading randomisation") && stdout.contains("deletion AUC"), "{stdout}");
    assert!(check["figures"]["relative_completeness_gap"].as_f64().is_some(), "{check}");
}

#[test]
fn bad_explain_settings_are_one_clear_line() {
    let dir = temp_dir("explain-errors");
    let out = dir.join("x.png");
    let run = |method: &str, extra: &[&str]| {
        let base = ["explain", "--method", method, "--checkpoint", &checkpoint("digits"), "--index", "0"];
        dlcli(&[&base[..], &["--device", "cpu", "--out", out.to_str().unwrap()], extra].concat())
    };
    fails_with(&run("lime", &["--features", "words"]), &["--features words does not fit", "superpixels or grid"]);
    fails_with(&run("integrated_gradients", &["--baseline", "nothing"]), &["--baseline \"nothing\"", "zeros, blur"]);
    fails_with(&run("integrated_gradients", &["--baseline", "blur:-1"]), &["blur's deviation must be a positive"]);
    fails_with(&run("occlusion", &["--window", "9x9"]), &["--window 9x9 is larger than the input's 8x8"]);
    fails_with(&run("occlusion", &["--stride", "two"]), &["--stride \"two\"", "HxW"]);
    fails_with(&run("saliency", &["--samples", "3"]), &["--samples N is for --check"]);
    fails_with(&run("smoothgrad", &["--draws", "0"]), &["--draws 0"]);
    fails_with(&run("integrated_gradients", &["--steps", "0"]), &["--steps 0"]);
    fails_with(&run("saliency", &["--check", "--samples", "100000"]), &["--samples 100000", "test set has"]);
    fails_with(&run("gradcam", &["--layer", "fc"]), &["--layer \"fc\" gives [1, 10]", "convolutional layer"]);
    // A baseline from NumPy of the wrong shape.
    let npy = dir.join("wrong.npy");
    let bytes = [
        &b"\x93NUMPY\x01\x00\x76\x00"[..],
        format!("{:<117}\n", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }").as_bytes(),
        &[0u8; 12][..],
    ]
    .concat();
    std::fs::write(&npy, bytes).unwrap();
    fails_with(
        &run("integrated_gradients", &["--baseline", npy.to_str().unwrap()]),
        &["shape [3], but the model takes [1, 8, 8]"],
    );
}

/// The report as Chromium renders it: every embedded image decodes (the page counts them
/// into `data-images` once loaded) and the checks' figures are on it, the same as
/// `--check` writes to the sidecar for the same method, samples and seed.
#[test]
fn the_report_renders_in_chromium_with_every_image_and_the_check_figures() {
    let dir = temp_dir("explain-report");
    let report = dir.join("report.html");
    let base = ["explain", "--checkpoint", &checkpoint("digits"), "--samples", "2", "--check", "--device", "cpu"];
    let methods = "saliency,integrated_gradients,lime";
    let out = dlcli(&[&base[..], &["--method", methods, "--report", report.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let sidecar = dir.join("ig.png");
    let out = dlcli(&[&base[..], &["--method", "integrated_gradients", "--out", sidecar.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let check = serde_json::from_str::<Value>(&std::fs::read_to_string(sidecar.with_extension("json")).unwrap())
        .unwrap()["check"]
        .clone();
    let chromium = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", dir.join("chromium-profile").display()))
        .arg(format!("file://{}", report.display()))
        .output()
        .unwrap_or_else(|e| panic!("chromium runs ({e}): install it with `apt-get install chromium`, as .ci/run does"));
    let dom = String::from_utf8_lossy(&chromium.stdout);
    // 2 inputs and 3 methods × 2 samples.
    assert!(dom.contains("data-images=\"8/8\""), "not every image decoded: {}", &dom[..dom.len().min(400)]);
    assert_eq!(dom.matches("randomised-model Spearman").count(), 3);
    for key in ["deletion_auc", "insertion_auc", "randomised_spearman"] {
        let shown = format!(">{:.3}</b>", check[key].as_f64().unwrap());
        assert!(dom.contains(&shown), "{key} {shown} is not on the page");
    }
    assert!(!dom.contains("http://") && !dom.contains("https://"), "the page loads nothing from the network");

    // Image files instead of test samples: one column each, named by its file.
    let files: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("digit{i}.png"))).collect();
    for (i, file) in files.iter().enumerate() {
        image::GrayImage::from_fn(8, 8, |x, y| image::Luma([((x * 31 + y * 17 + i as u32 * 50) % 256) as u8]))
            .save(file)
            .unwrap();
    }
    let from_files = dir.join("files.html");
    let args = ["explain", "--checkpoint", &checkpoint("digits"), "--method", "saliency", "--device", "cpu"];
    let inputs = ["--input", files[0].to_str().unwrap(), "--input", files[1].to_str().unwrap()];
    let out = dlcli(&[&args[..], &inputs[..], &["--report", from_files.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let html = std::fs::read_to_string(&from_files).unwrap();
    assert!(html.contains("digit0.png") && html.contains("digit1.png") && html.matches("<img").count() == 4);
    fails_with(
        &dlcli(&[&args[..], &inputs[..], &["--out", dir.join("one.png").to_str().unwrap()]].concat()),
        &["several --input files are for --report or --check"],
    );

    // Without --method, the report has every attribution method that applies: all nine for
    // the CNN, all but the class activation maps for the LSTM, which has no feature map.
    for (model, methods) in [("digits", 9), ("sunspots", 7)] {
        let every = dir.join(format!("every-{model}.html"));
        let args = ["explain", "--checkpoint", &checkpoint(model), "--index", "0", "--device", "cpu", "--draws", "64"];
        let out = dlcli(&[&args[..], &["--report", every.to_str().unwrap()]].concat());
        assert!(out.status.success(), "{:?}", text(&out));
        let html = std::fs::read_to_string(&every).unwrap();
        assert_eq!(html.matches("<tr data-order=").count(), methods, "{model}");
        assert_eq!(html.contains("<th>gradcam++</th>"), methods == 9, "{model}");
    }
}
