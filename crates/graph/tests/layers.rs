//! Layers: PyTorch state_dict names and shapes, PyTorch's default initialisation, seeded.

use graph::{ConvGeometry, Feed, Mode, Model, evaluate};

#[test]
fn parameters_are_named_and_shaped_like_torch_nn() {
    let mut m = Model::new(7);
    let x = m.graph.input("x", &[2, 1, 8, 8]);
    let geo = ConvGeometry { stride: (1, 1), padding: (1, 1), dilation: (1, 1) };
    let c = m.conv2d("conv1", x, 4, (3, 3), geo, true).unwrap();
    let flat = m.graph.reshape(c, &[2, 256]).unwrap();
    let y = m.linear("fc1", flat, 256, 10, true).unwrap();
    assert_eq!(m.init.names().collect::<Vec<_>>(), ["conv1.weight", "conv1.bias", "fc1.weight", "fc1.bias"]);
    let params = m.init.values();
    let shape = |name: &str| params[name].len();
    assert_eq!((shape("conv1.weight"), shape("conv1.bias"), shape("fc1.weight"), shape("fc1.bias")), (36, 4, 2560, 10));
    assert_eq!(m.graph.shape(y), &[2, 10]);
    assert_eq!(m.graph.label(y), "fc1");
}

#[test]
fn initialisation_is_pytorch_default_uniform() {
    // Kaiming-uniform with a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance bound²/3.
    let mut m = Model::new(1);
    let x = m.graph.input("x", &[1, 256]);
    m.linear("fc", x, 256, 128, true).unwrap();
    let bound = 1.0 / 16.0;
    let params = m.init.values();
    for name in ["fc.weight", "fc.bias"] {
        let v = &params[name];
        assert!(v.iter().all(|w| w.abs() <= bound), "{name} outside ±{bound}");
    }
    let w = &params["fc.weight"];
    let n = w.len() as f64;
    let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let want = (bound as f64).powi(2) / 3.0;
    assert!(mean.abs() < 4.0 * (want / n).sqrt(), "mean {mean}");
    assert!((var / want - 1.0).abs() < 0.05, "variance {var}, want {want}");
}

#[test]
fn the_same_seed_gives_the_same_parameters() {
    let build = |seed| {
        let mut m = Model::new(seed);
        let x = m.graph.input("x", &[1, 8]);
        let h = m.linear("a", x, 8, 8, true).unwrap();
        m.linear("b", h, 8, 8, true).unwrap();
        m.init.values()
    };
    assert_eq!(build(3), build(3));
    assert_ne!(build(3)["a.weight"], build(4)["a.weight"]);
    let p = build(3);
    assert_ne!(p["a.weight"], p["b.weight"], "each layer draws its own values");
}

#[test]
fn linear_computes_x_times_weight_transposed_plus_bias() {
    let mut m = Model::new(9);
    let x = m.graph.input("x", &[2, 3]);
    let y = m.linear("fc", x, 3, 2, true).unwrap();
    let xs = vec![1.0, -2.0, 0.5, 3.0, 0.25, -1.0];
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), xs.clone());
    let params = m.init.values();
    let out = evaluate(&m.graph, Mode::Train, &params, &feed, &[y]).unwrap();
    let (w, b) = (&params["fc.weight"], &params["fc.bias"]);
    for r in 0..2 {
        for o in 0..2 {
            let want: f32 = b[o] + (0..3).map(|i| xs[r * 3 + i] * w[o * 3 + i]).sum::<f32>();
            assert!((out.get(y)[r * 2 + o] - want).abs() < 1e-6);
        }
    }
}
