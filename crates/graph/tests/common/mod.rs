//! Shared by the graph tests: the one GPU, seeded data, and the comparison the GPU executor
//! is held to.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::sync::OnceLock;

use kernels::Gpu;

/// The GPU the tests use. With no adapter they skip loudly, unless `DLCLI_REQUIRE_ADAPTER=1`
/// (CI), which makes that a failure.
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::open() {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            if std::env::var("DLCLI_REQUIRE_ADAPTER").is_ok_and(|v| v == "1") {
                panic!("DLCLI_REQUIRE_ADAPTER=1 but no GPU adapter could be opened: {e}");
            }
            eprintln!("SKIPPED: no GPU adapter ({e}); set DLCLI_REQUIRE_ADAPTER=1 to fail instead");
            None
        }
    })
    .as_ref()
}

/// A small deterministic generator for test data, uniform in ±scale.
pub fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// |got - want| <= 1e-4 (|want| + 0.01 max|want|): relative, with a floor at 1% of the
/// largest magnitude so that values that cancel to near zero are compared on the tensor's scale.
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let bound = 1e-4 * (w.abs() + 0.01 * scale);
        assert!((g - w).abs() <= bound, "{what}[{i}]: got {g}, want {w} (bound {bound})");
    }
}

/// Every tensor of `graph`: what a test asks of a run when it looks at everything.
pub fn every_tensor(graph: &graph::Graph) -> Vec<graph::TensorId> {
    graph.nodes().flat_map(|(id, n)| (0..n.outputs.len()).map(move |slot| id.out(slot))).collect()
}

/// Runs every node of a graph in one mode, as the tests of gradients look at a graph.
pub struct Everything<'g> {
    pub graph: &'g graph::Graph,
    pub mode: graph::Mode,
}

impl Everything<'_> {
    pub fn run(
        &self,
        params: &std::collections::HashMap<String, Vec<f32>>,
        feed: &graph::Feed,
    ) -> graph::Result<graph::Values> {
        graph::evaluate(self.graph, self.mode, params, feed, &every_tensor(self.graph))
    }
}
