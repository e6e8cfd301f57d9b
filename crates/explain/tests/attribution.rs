//! Grad-CAM and saliency: a golden test on a hand-set network, and the sanity checks of
//! Adebayo et al. (model randomisation) and of faithfulness (deleting what the map points at
//! hurts the prediction more than deleting at random) on the reference CNN trained on MNIST.

use std::collections::HashMap;
use std::path::Path;

use data::SplitMix64;
use data::{Batches, Dataset, load_idx};
use explain::{Baseline, Cam, Curves, Explainer, Method, Rule, Stage, Target, bilinear};
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
    const GRAD_CAM: fn(TensorId) -> Method = |layer| Method::Cam { cam: Cam::GradCam, layer };
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

    let cam0 = explainer.explain(&image, &GRAD_CAM(features), 0, Some(0)).unwrap();
    let want0: Vec<f32> = image.iter().map(|v| (2.0 * v / 9.0f32).max(0.0)).collect();
    assert!(close(&cam0.map, &want0), "{:?} vs {want0:?}", cam0.map);
    let mean = image.iter().sum::<f32>() / 9.0;
    assert!((cam0.score - 2.0 * mean).abs() < 1e-6);

    let cam1 = explainer.explain(&image, &GRAD_CAM(features), 0, Some(1)).unwrap();
    let want1: Vec<f32> = image.iter().map(|v| (-v).max(0.0) / 9.0).collect();
    assert!(close(&cam1.map, &want1), "{:?} vs {want1:?}", cam1.map);

    let saliency = explainer.explain(&image, &Method::Saliency, 0, Some(0)).unwrap();
    assert!(close(&saliency.map, &[2.0 / 9.0; 9]), "{:?}", saliency.map);
    // Without a target, the predicted class: 2 mean(x) = 0.0133 > mean(-x) = -0.0067.
    assert_eq!(explainer.explain(&image, &Method::Saliency, 0, None).unwrap().target.class, 0);
}

const BATCH: usize = 64;

/// One epoch over the first 12,000 MNIST training images (about 96% test accuracy).
fn trained_mnist_model() -> (HashMap<String, Vec<f32>>, Dataset) {
    let mnist = |f: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist").join(f);
    let train = load_idx(&mnist("train-images-idx3-ubyte.gz"), &mnist("train-labels-idx1-ubyte.gz")).unwrap();
    let mut train = train.subset(&(0..12_000).collect::<Vec<_>>());
    let mut test = load_idx(&mnist("t10k-images-idx3-ubyte.gz"), &mnist("t10k-labels-idx1-ubyte.gz")).unwrap();
    // Normalised as configs/cnn.toml does (torchvision's MNIST mean and deviation): the
    // background is then not 0, as in what `dlcli` trains.
    for set in [&mut train, &mut test] {
        set.samples.iter_mut().for_each(|x| *x = (*x - 0.1307) / 0.3081);
    }
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

fn explainer(params: &HashMap<String, Vec<f32>>) -> (Explainer, TensorId) {
    let built = mnist_cnn(0, BATCH).unwrap();
    (Explainer::new(CpuExecutor::new(), built.model.graph, built.input, built.logits, params).unwrap(), built.features)
}

/// The cascade from the top: fc2, then fc1, conv2 and conv1, each re-initialised from another
/// seed on top of the ones before.
fn cascade() -> Vec<Stage> {
    let fresh = mnist_cnn(99, 1).unwrap().model.init.values();
    ["fc2", "fc1", "conv2", "conv1"]
        .iter()
        .map(|layer| {
            let tensors = ["weight", "bias"].map(|p| format!("{layer}.{p}"));
            (layer.to_string(), tensors.into_iter().map(|t| (t.clone(), fresh[&t].clone())).collect())
        })
        .collect()
}

/// What a map is made from, for the checks: a method, or a stand-in that ignores the model.
#[derive(Clone, Copy)]
enum Mapper {
    Method(usize),
    /// The image's own edges (a Sobel magnitude): a map that looks plausible and never
    /// depends on the model.
    Edges,
    /// Uniform noise.
    Random(u64),
}

/// The mean of each check over `samples` test digits: the last stage's randomisation
/// correlation, the deletion and insertion areas, and the same areas for random orders.
fn checks(explainer: &mut Explainer, test: &Dataset, methods: &[Method], mapper: Mapper, samples: usize) -> [f64; 5] {
    let stages = cascade();
    let mut sums = [0.0; 5];
    for i in 0..samples {
        let image = test.sample(i).to_vec();
        let target =
            Target { row: 0, class: explainer.explain(&image, &Method::Saliency, 0, None).unwrap().target.class };
        let mut map = |e: &mut Explainer| -> graph::Result<Vec<f32>> {
            Ok(match mapper {
                Mapper::Method(m) => e.explain(&image, &methods[m], 0, Some(target.class))?.map,
                Mapper::Edges => sobel(&image, 28, 28),
                Mapper::Random(seed) => {
                    let mut s = SplitMix64(seed + i as u64);
                    (0..784).map(|_| s.next_f64() as f32).collect()
                }
            })
        };
        let correlations = explainer.randomisation(&stages, &mut map).unwrap();
        let shown = map(explainer).unwrap();
        let zeros = vec![0.0; 784];
        let curves = explainer.curves(&image, &zeros, &shown, 28, target).unwrap();
        let random = explainer.random_curves(&image, &zeros, 28, 3, 7 + i as u64, target).unwrap();
        let figures =
            [correlations.last().unwrap().1, curves.deletion, curves.insertion, random.deletion, random.insertion];
        sums.iter_mut().zip(figures).for_each(|(s, f)| *s += f / samples as f64);
    }
    sums
}

/// The deletion check's verdict on figures from [`checks`].
fn faithful(f: [f64; 5]) -> bool {
    Curves { deletion: f[1], insertion: f[2] }.faithful(&Curves { deletion: f[3], insertion: f[4] })
}

fn sobel(image: &[f32], h: usize, w: usize) -> Vec<f32> {
    let at =
        |y: isize, x: isize| image[(y.clamp(0, h as isize - 1) as usize) * w + x.clamp(0, w as isize - 1) as usize];
    (0..h * w)
        .map(|i| {
            let (y, x) = ((i / w) as isize, (i % w) as isize);
            let gx = at(y - 1, x + 1) + 2.0 * at(y, x + 1) + at(y + 1, x + 1)
                - at(y - 1, x - 1)
                - 2.0 * at(y, x - 1)
                - at(y + 1, x - 1);
            let gy = at(y + 1, x - 1) + 2.0 * at(y + 1, x) + at(y + 1, x + 1)
                - at(y - 1, x - 1)
                - 2.0 * at(y - 1, x)
                - at(y - 1, x + 1);
            (gx * gx + gy * gy).sqrt()
        })
        .collect()
}

#[test]
fn saliency_integrated_gradients_and_grad_cam_pass_the_checks_that_edges_and_noise_fail() {
    let (params, test) = trained_mnist_model();
    let (mut trained, layer) = explainer(&params);
    let methods = [
        Method::Saliency,
        Method::IntegratedGradients { baseline: Baseline::Zeros, steps: 32, rule: Rule::RiemannTrapezoid },
        Method::Cam { cam: Cam::GradCam, layer },
    ];
    let samples = 10;
    let mut report = |name: &str, mapper| {
        let f = checks(&mut trained, &test, &methods, mapper, samples);
        println!(
            "{name:>20}: randomised-model Spearman {:.3}, deletion AUC {:.3} (random {:.3}), insertion AUC {:.3} (random {:.3})",
            f[0], f[1], f[3], f[2], f[4]
        );
        f
    };
    let saliency = report("saliency", Mapper::Method(0));
    let integrated = report("integrated gradients", Mapper::Method(1));
    let cam = report("grad-cam", Mapper::Method(2));
    let edges = report("edges", Mapper::Edges);
    let random = report("random", Mapper::Random(1));
    // Measured over the first 10 test digits (one epoch on 12,000 images): the cascade takes
    // saliency to 0.31, IG to 0.0 and Grad-CAM to 0.3; an edge map and a random map stay at
    // 1 (they never look at the model). Deleting the methods' pixels first leaves areas of
    // 0.08-0.35 where random orders leave 0.64; a random map's own margin is 0.03.
    // Each method within a small distance of what was measured (deletion at most, insertion at
    // least), and the random orders where they were.
    let measured = [
        ("saliency", saliency, 0.25, 0.9),
        ("integrated gradients", integrated, 0.15, 0.93),
        ("grad-cam", cam, 0.42, 0.72),
    ];
    for (name, f, deletion, insertion) in measured {
        assert!(f[0] < 0.4, "{name}: correlated {:.3} with a randomised model", f[0]);
        assert!(f[1] < deletion, "{name}: deletion area {:.3} (random {:.3})", f[1], f[3]);
        assert!(f[2] > insertion, "{name}: insertion area {:.3} (random {:.3})", f[2], f[4]);
        assert!(faithful(f), "{name}: margin {:.3} over random's {:.3}", f[2] - f[1], f[4] - f[3]);
        assert!((0.55..0.75).contains(&f[3]) && (0.55..0.75).contains(&f[4]), "random orders: {f:?}");
    }
    assert!(edges[0] > 0.99, "an edge map ignores the model, so the cascade cannot move it: {:.3}", edges[0]);
    assert!(random[0] > 0.99 && !faithful(random), "a random map fails both checks: {random:?}");
}
