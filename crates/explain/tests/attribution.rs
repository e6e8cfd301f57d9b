//! Grad-CAM and saliency: a golden test on a hand-set network, and the sanity checks of
//! Adebayo et al. (model randomisation) and of faithfulness (deleting what the map points at
//! hurts the prediction more than deleting at random) on the reference CNN trained on MNIST.

use std::collections::HashMap;
use std::path::Path;

use data::{Batches, Dataset, load_idx};
use explain::{Explainer, Method, bilinear};
use graph::zoo::mnist_cnn;
use graph::{ConvGeometry, CpuExecutor, Feed, Graph, Supervised, TensorId, Trainer, Training};

#[test]
fn bilinear_resizing_matches_pytorch() {
    // torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
    let got = bilinear(&[1.0, 2.0, 3.0, 4.0], 2, 2, 4, 4);
    let want = [1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0];
    assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6), "{got:?}");
}

/// x [1, 1, 3, 3] -> 1x1 conv with filters +1 and -1 (A0 = x, A1 = -x) -> global average
/// pool -> logits = [2 mean(A0), mean(A1)]. By hand: for class 0 the channel weights are
/// α = (2/9, 0), so Grad-CAM = ReLU(2x/9); for class 1, α = (0, 1/9) and Grad-CAM = ReLU(-x)/9.
/// Saliency for class 0 is |d(2 mean x)/dx| = 2/9 everywhere.
#[test]
fn grad_cam_and_saliency_equal_the_hand_computed_maps() {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 1, 3, 3]);
    let w = g.param("conv.weight", &[2, 1, 1, 1]);
    let fc = g.param("fc.weight", &[2, 2]);
    let one = ConvGeometry { stride: (1, 1), padding: (0, 0), dilation: (1, 1) };
    let features = g.conv2d(x, w, None, one).unwrap();
    let pooled = g.global_avg_pool(features).unwrap();
    let logits = g.matmul(pooled, fc, false, true).unwrap();
    let params = HashMap::from([
        ("conv.weight".to_string(), vec![1.0, -1.0]),
        ("fc.weight".to_string(), vec![2.0, 0.0, 0.0, 1.0]),
    ]);
    let mut explainer = Explainer::new(CpuExecutor::new(), g, x, logits, &params).unwrap();
    let image = [0.9, -0.3, 0.0, 0.45, -0.9, 0.18, -0.6, 0.27, 0.09];
    let close = |got: &[f32], want: &[f32]| got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6);

    let cam0 = explainer.explain(&image, Method::GradCam { layer: features }, Some(0)).unwrap();
    let want0: Vec<f32> = image.iter().map(|v| (2.0 * v / 9.0f32).max(0.0)).collect();
    assert!(close(&cam0.map, &want0), "{:?} vs {want0:?}", cam0.map);
    let mean = image.iter().sum::<f32>() / 9.0;
    assert!((cam0.score - 2.0 * mean).abs() < 1e-6);

    let cam1 = explainer.explain(&image, Method::GradCam { layer: features }, Some(1)).unwrap();
    let want1: Vec<f32> = image.iter().map(|v| (-v).max(0.0) / 9.0).collect();
    assert!(close(&cam1.map, &want1), "{:?} vs {want1:?}", cam1.map);

    let saliency = explainer.explain(&image, Method::Saliency, Some(0)).unwrap();
    assert!(close(&saliency.map, &[2.0 / 9.0; 9]), "{:?}", saliency.map);
    // Without a target, the predicted class: 2 mean(x) = 0.0133 > mean(-x) = -0.0067.
    assert_eq!(explainer.explain(&image, Method::Saliency, None).unwrap().target, 0);
}

const BATCH: usize = 64;

/// One epoch over the first 12,000 MNIST training images (about 96% test accuracy).
fn trained_mnist_model() -> (HashMap<String, Vec<f32>>, Dataset) {
    let mnist = |f: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist").join(f);
    let train = load_idx(&mnist("train-images-idx3-ubyte.gz"), &mnist("train-labels-idx1-ubyte.gz")).unwrap();
    let train = train.subset(&(0..12_000).collect::<Vec<_>>());
    let test = load_idx(&mnist("t10k-images-idx3-ubyte.gz"), &mnist("t10k-labels-idx1-ubyte.gz")).unwrap();
    let built = mnist_cnn(0, BATCH).unwrap();
    let model = Supervised::classifier(built.model, built.input, built.logits, 0.0).unwrap();
    let mut trainer = Trainer::new(CpuExecutor::new(), &model, Training::adam(1e-3)).unwrap();
    for b in Batches::shuffled(&train, BATCH, 1, 0) {
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), b.samples);
        feed.labels.insert("y".into(), b.labels);
        trainer.train_step(&feed).unwrap();
    }
    (trainer.params().unwrap(), test)
}

fn explainer(params: HashMap<String, Vec<f32>>) -> (Explainer, TensorId) {
    let built = mnist_cnn(0, 1).unwrap();
    (Explainer::new(CpuExecutor::new(), built.model.graph, built.input, built.logits, &params).unwrap(), built.features)
}

/// Spearman's rank correlation (ties get their mean rank).
fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let ranks = |v: &[f32]| {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
                j += 1;
            }
            for &k in &order[i..=j] {
                r[k] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        r
    };
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb) = (ra.iter().map(|x| (x - ma).powi(2)).sum::<f64>(), rb.iter().map(|y| (y - mb).powi(2)).sum::<f64>());
    if va == 0.0 || vb == 0.0 { 0.0 } else { cov / (va * vb).sqrt() }
}

#[test]
fn grad_cam_passes_the_randomisation_and_faithfulness_checks() {
    let (params, test) = trained_mnist_model();
    let (mut trained, layer) = explainer(params.clone());
    let cam = Method::GradCam { layer };

    // Model randomisation: re-initialise the top layers (fc1 and fc2) from another seed.
    let fresh = mnist_cnn(99, 1).unwrap().model.init.values();
    let mut randomised = params.clone();
    for name in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
        randomised.insert(name.into(), fresh[name].clone());
    }
    let (mut random, _) = explainer(randomised);
    let correlations: Vec<f64> = (0..20)
        .map(|i| {
            let original = trained.explain(test.sample(i), cam, None).unwrap();
            let other = random.explain(test.sample(i), cam, Some(original.target)).unwrap();
            spearman(&original.map, &other.map)
        })
        .collect();
    let mean = correlations.iter().sum::<f64>() / 20.0;
    println!("mean Spearman correlation, trained vs randomised top layers: {mean:.3}");
    assert!(mean < 0.5, "maps barely change when the top layers are randomised: {correlations:?}");

    // Faithfulness: delete (zero) the 20% most attributed pixels, or 20% at random.
    let pixels = 28 * 28;
    let deleted = pixels / 5;
    let (mut drop_cam, mut drop_random) = (0.0, 0.0);
    let mut s = 0x9E37_79B9u64;
    for i in 0..50 {
        let image = test.sample(i);
        let explained = trained.explain(image, cam, None).unwrap();
        let target = explained.target;
        let before = explained.probabilities[target] as f64;
        let mut by_map: Vec<usize> = (0..pixels).collect();
        by_map.sort_by(|&a, &b| explained.map[b].total_cmp(&explained.map[a]));
        let mut random: Vec<usize> = (0..pixels).collect();
        for k in (1..pixels).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            random.swap(k, (s % (k as u64 + 1)) as usize);
        }
        let mut probability_without = |pixels: &[usize]| {
            let mut img = image.to_vec();
            pixels.iter().for_each(|&p| img[p] = 0.0);
            trained.explain(&img, cam, Some(target)).unwrap().probabilities[target] as f64
        };
        drop_cam += before - probability_without(&by_map[..deleted]);
        drop_random += before - probability_without(&random[..deleted]);
    }
    println!(
        "mean probability drop over 50 digits: Grad-CAM top 20% {:.3}, random 20% {:.3}",
        drop_cam / 50.0,
        drop_random / 50.0
    );
    assert!(
        drop_cam > drop_random,
        "deleting Grad-CAM's pixels ({drop_cam}) should hurt more than random ({drop_random})"
    );
}
