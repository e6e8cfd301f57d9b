//! dlcli's methods against Captum and pytorch-grad-cam on the same trained checkpoints (the
//! shipped digits CNN and sunspot LSTM) and the same inputs, noise and perturbation masks: the
//! fixtures `scripts/captum_fixtures.py` wrote. Deterministic methods agree within 1e-4 of the
//! array's largest magnitude, LIME's and KernelSHAP's coefficients within 1e-3.

use std::path::{Path, PathBuf};

use explain::{Cam, Features, LIME_KERNEL, Occlusion, Rule, Smoothing, Target};
use serde_json::Value;

use crate::config::Device;
use crate::context::{Located, ModelSource};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/explain").join(name)
}

fn numbers(v: &Value) -> Vec<f32> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number") as f32).collect()
}

fn masks(v: &Value) -> Vec<Vec<bool>> {
    v.as_array().unwrap().iter().map(|m| m.as_str().unwrap().chars().map(|c| c == '1').collect()).collect()
}

/// The largest difference as a share of the reference's largest magnitude, checked against
/// `tolerance` and returned.
fn agree(what: &str, got: &[f32], want: &[f32], tolerance: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: {} values against Captum's {}", got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, &w| m.max(w.abs() as f64));
    let worst = got.iter().zip(want).fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()));
    let relative = worst / scale.max(1e-30);
    println!("{what:>32}: largest difference {relative:.2e} of the largest value {scale:.4}");
    assert!(scale > 0.0, "{what}: the reference is all zeros, which proves nothing");
    assert!(relative <= tolerance, "{what}: differs from the reference by {relative:.3e} (> {tolerance:e})");
    relative
}

/// Every method on fixture `name` (checkpoint `name.safetensors`), Grad-CAM on config layer
/// `cam_layer`.
fn holds_to_captum(name: &str, cam_layer: Option<&str>) {
    let all: Value = serde_json::from_str(&std::fs::read_to_string(fixture("captum.json")).unwrap()).unwrap();
    let f = &all[name];
    let source = ModelSource {
        run: None,
        runs_dir: "runs".into(),
        checkpoint: Some(fixture(&format!("{name}.safetensors"))),
        device: Device::Cpu,
    };
    let (loaded, _) = Located::of(&source).unwrap().load(Some(8)).unwrap();
    let mut e = loaded.explainer(None).unwrap();
    let x = numbers(&f["input"]);
    let zeros = vec![0.0; x.len()];
    let target = Target { row: 0, class: f["target"].as_u64().unwrap() as usize };
    let deterministic = 1e-4;
    agree("saliency", &e.saliency(&x, target).unwrap(), &numbers(&f["saliency"]), deterministic);
    agree(
        "input_x_gradient",
        &e.input_x_gradient(&x, target).unwrap(),
        &numbers(&f["input_x_gradient"]),
        deterministic,
    );
    // Captum's trapezoid takes the points 0, 1/49, .., 1 but weighs them 1/50 (the ends
    // 1/100), so its weights sum to 49/50 and its attributions are the trapezoid rule's times
    // 49/50; ours sum to 1, so that the attributions add up to f(x) - f(baseline).
    for (rule, key, captum_weight) in
        [(Rule::GaussLegendre, "gausslegendre", 1.0), (Rule::RiemannTrapezoid, "riemann_trapezoid", 49.0 / 50.0)]
    {
        let ig = e.integrated_gradients(&x, &zeros, 50, rule, target).unwrap();
        let scaled: Vec<f32> = ig.attributions.iter().map(|a| a * captum_weight).collect();
        let want = numbers(&f[format!("integrated_gradients_{key}")]);
        agree(&format!("integrated_gradients {key}"), &scaled, &want, deterministic);
    }
    for (smoothing, key) in
        [(Smoothing::Mean, "smoothgrad"), (Smoothing::Squared, "smoothgrad_sq"), (Smoothing::Variance, "vargrad")]
    {
        let noise: Vec<Vec<f32>> = f[key]["noise"].as_array().unwrap().iter().map(numbers).collect();
        let got = e.smoothgrad(&x, &noise, smoothing, target).unwrap();
        agree(key, &got, &numbers(&f[key]["attribution"]), deterministic);
    }
    let pair = |v: &Value| (v[0].as_u64().unwrap() as usize, v[1].as_u64().unwrap() as usize);
    let occlusion = Occlusion { window: pair(&f["occlusion"]["window"]), stride: pair(&f["occlusion"]["stride"]) };
    agree(
        "occlusion",
        &e.occlusion(&x, &zeros, occlusion, target).unwrap(),
        &numbers(&f["occlusion"]["attribution"]),
        deterministic,
    );
    let groups: Vec<usize> =
        f["feature_group"].as_array().unwrap().iter().map(|g| g.as_u64().unwrap() as usize).collect();
    let features = Features::from_groups(&groups);
    let lime = e.lime(&x, &zeros, &features, &masks(&f["lime"]["masks"]), LIME_KERNEL, target).unwrap();
    let as_f32 = |v: &[f64]| v.iter().map(|&w| w as f32).collect::<Vec<_>>();
    agree("lime", &as_f32(&lime.weights), &numbers(&f["lime"]["weights"]), 1e-3);
    let shap =
        e.kernel_shap(&x, std::slice::from_ref(&zeros), &features, &masks(&f["kernel_shap"]["masks"]), target).unwrap();
    agree("kernel_shap", &as_f32(&shap.values), &numbers(&f["kernel_shap"]["values"]), 1e-3);
    if let Some(layer) = cam_layer {
        let index = loaded.config.layers.iter().position(|l| l.name == layer).unwrap();
        for (cam, key) in [(Cam::GradCam, "gradcam"), (Cam::GradCamPlusPlus, "gradcam++")] {
            let map = e.cam(&x, cam, loaded.layers[index], target).unwrap();
            agree(key, &map.map, &numbers(&f[key]), deterministic);
        }
    }
}

#[test]
fn the_digits_cnn_explained_as_captum_and_pytorch_grad_cam_do() {
    holds_to_captum("digits", Some("stem"));
}

#[test]
fn the_sunspot_lstm_explained_as_captum_does() {
    holds_to_captum("sunspots", None);
}
