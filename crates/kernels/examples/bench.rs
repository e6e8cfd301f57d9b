//! Kernel benchmarks: `cargo run --release -p kernels --example bench [-- --large] [-- --tune]`.
//!
//! Prints, per kernel and size, the median time of several runs (GPU timestamps when the
//! adapter has them), GFLOP/s or GB/s, a table for people and one JSON line per result for
//! scripts. `--large` adds the big matmuls (2048³ on CPU adapters, 4096³ on GPUs); `--tune`
//! times candidate matmul tilings instead.

use kernels::attention::attention;
use kernels::matmul::{Tiling, matmul, matmul_tiled};
use kernels::softmax::softmax;
use kernels::timing::{Clock, time_dispatches};
use kernels::{AdapterClass, Attention, Conv2d, Dispatch, Gpu, GpuTensor, Matmul, Unary, conv, elementwise};

struct Bench<'a> {
    gpu: &'a Gpu,
    reps: usize,
}

/// What one result measures: floating-point work or bytes moved.
enum Work {
    Flops(f64),
    Bytes(f64),
}

impl Bench<'_> {
    fn tensor(&self, n: usize) -> GpuTensor {
        // Deterministic, non-zero data (zeros can run faster than real data on some hardware).
        let data: Vec<f32> = (0..n).map(|i| ((i as u64 * 2_654_435_761 % 1000) as f32 - 500.0) * 1e-3).collect();
        self.gpu.upload(&data).expect("upload")
    }

    fn report(&self, kernel: &str, shape: &str, dispatches: &[Dispatch], work: Work) {
        let refs: Vec<&Dispatch> = dispatches.iter().collect();
        let (clock, mut times) = time_dispatches(self.gpu, &refs, self.reps).expect("timing");
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let (rate, unit) = match work {
            Work::Flops(f) => (f / median / 1e9, "GFLOP/s"),
            Work::Bytes(b) => (b / median / 1e9, "GB/s"),
        };
        println!("{kernel:<22} {shape:<34} {:>10.3} ms {rate:>10.1} {unit}", median * 1e3);
        let clock = match clock {
            Clock::GpuTimestamps => "gpu-timestamps",
            Clock::WallClock => "wall-clock",
        };
        let summary = self.gpu.summary();
        println!(
            "{{\"kernel\":\"{kernel}\",\"shape\":\"{shape}\",\"median_ms\":{:.4},\"rate\":{rate:.2},\"unit\":\"{unit}\",\"reps\":{},\"clock\":\"{clock}\",\"adapter\":\"{}\",\"backend\":\"{:?}\"}}",
            median * 1e3,
            self.reps,
            summary.name,
            summary.backend
        );
    }

    fn matmul(&self, n: usize, tiling: Option<Tiling>) {
        let mm = Matmul::new(n, n, n);
        let (a, b, c) = (self.tensor(n * n), self.tensor(n * n), self.gpu.tensor(n * n).unwrap());
        let d = match tiling {
            Some(t) => matmul_tiled(self.gpu, &mm, t, &a, &b, None, &c),
            None => matmul(self.gpu, &mm, &a, &b, None, &c),
        }
        .expect("matmul");
        let name = tiling.map_or("matmul".to_string(), |t| {
            format!(
                "matmul {} {}x{} wg{}x{} bk{}",
                if t.shared { "shared" } else { "regs" },
                t.tm,
                t.tn,
                t.wg_x,
                t.wg_y,
                t.bk
            )
        });
        self.report(&name, &format!("{n}x{n}x{n}"), &d, Work::Flops(mm.flops()));
    }

    /// Forward, weight gradient and input gradient, as PyTorch's conv benchmark counts them.
    fn conv(&self) {
        let c = Conv2d {
            batch: 64,
            in_channels: 32,
            height: 13,
            width: 13,
            out_channels: 64,
            kernel: (3, 3),
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
        };
        let col_len = c.col_rows() * c.col_cols();
        let (x, w, b, dy) =
            (self.tensor(c.input_len()), self.tensor(c.weight_len()), self.tensor(64), self.tensor(c.output_len()));
        let (col, tmp, y, dyt) = (
            self.gpu.tensor(col_len).unwrap(),
            self.gpu.tensor(c.output_len()).unwrap(),
            self.gpu.tensor(c.output_len()).unwrap(),
            self.gpu.tensor(c.output_len()).unwrap(),
        );
        let (dw, db, dcol, dx) = (
            self.gpu.tensor(c.weight_len()).unwrap(),
            self.gpu.tensor(64).unwrap(),
            self.gpu.tensor(col_len).unwrap(),
            self.gpu.tensor(c.input_len()).unwrap(),
        );
        let mut all = conv::forward(self.gpu, &c, &x, &w, Some(&b), &col, &tmp, &y).unwrap();
        all.extend(conv::backward_weight(self.gpu, &c, &dy, &col, &dyt, &dw, Some(&db)).unwrap());
        all.extend(conv::backward_input(self.gpu, &c, &w, &dyt, &dcol, &dx).unwrap());
        self.report("conv2d fwd+bwd", "x 64x32x13x13, w 64x32x3x3", &all, Work::Flops(3.0 * c.flops_forward()));
    }

    fn attention(&self, a: Attention, label: &str) {
        let (q, k, v) = (self.tensor(a.q_len()), self.tensor(a.kv_len()), self.tensor(a.kv_len()));
        let (o, lse) = (self.gpu.tensor(a.q_len()).unwrap(), self.gpu.tensor(a.rows()).unwrap());
        let before = self.gpu.pool_stats().bytes_created;
        let d = attention(self.gpu, &a, &q, &k, &v, None, &o, &lse, None).expect("attention");
        let allocated = self.gpu.pool_stats().bytes_created - before;
        let shape = format!("{label} B{} H{} T{} d{}", a.batch, a.heads, a.tq, a.head_dim);
        self.report("attention fwd", &shape, &[d], Work::Flops(a.flops_forward()));
        let scores = (a.bh() * a.tq * a.tk * 4) as u64;
        println!("  attention allocated {allocated} bytes while preparing (a score matrix would be {scores})");
    }

    fn elementwise(&self, n: usize) {
        let (x, y) = (self.tensor(n), self.gpu.tensor(n).unwrap());
        let d = elementwise::unary(self.gpu, Unary::GeluErf, &x, &y, n).unwrap();
        self.report("gelu (erf)", &format!("{n}"), &[d], Work::Bytes(8.0 * n as f64));
    }

    /// The CPU reference gemm (the `gemm` crate, every core), which the CPU executor uses.
    fn cpu_matmul(&self, n: usize) {
        let mm = Matmul::new(n, n, n);
        let a: Vec<f32> = (0..n * n).map(|i| (i % 97) as f32 * 1e-2).collect();
        let mut c = vec![0.0; n * n];
        kernels::cpu::matmul(&mm, &a, &a, None, &mut c);
        let mut times: Vec<f64> = (0..self.reps)
            .map(|_| {
                let start = std::time::Instant::now();
                kernels::cpu::matmul(&mm, &a, &a, None, &mut c);
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let rate = mm.flops() / median / 1e9;
        println!(
            "{:<22} {:<34} {:>10.3} ms {rate:>10.1} GFLOP/s",
            "cpu::matmul (host)",
            format!("{n}x{n}x{n}"),
            median * 1e3
        );
        println!(
            "{{\"kernel\":\"cpu::matmul\",\"shape\":\"{n}x{n}x{n}\",\"median_ms\":{:.4},\"rate\":{rate:.2},\"unit\":\"GFLOP/s\",\"reps\":{},\"clock\":\"host\"}}",
            median * 1e3,
            self.reps
        );
    }

    fn softmax(&self, rows: usize, cols: usize) {
        let (x, y) = (self.tensor(rows * cols), self.gpu.tensor(rows * cols).unwrap());
        let d = softmax(self.gpu, false, rows, cols, &x, &y).unwrap();
        self.report("softmax", &format!("{rows}x{cols}"), &[d], Work::Bytes(8.0 * (rows * cols) as f64));
    }
}

fn tilings() -> Vec<Tiling> {
    let mut out = Vec::new();
    for (wg_x, wg_y) in [(8, 8), (16, 16), (4, 8)] {
        out.push(Tiling { shared: false, wg_x, wg_y, tm: 16, tn: 16, bk: 1 });
    }
    for (tm, tn, bk) in [(4, 4, 16), (8, 8, 8), (8, 4, 16)] {
        out.push(Tiling { shared: true, wg_x: 16, wg_y: 16, tm, tn, bk });
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gpu = Gpu::open().unwrap_or_else(|e| {
        eprintln!("bench: {e}");
        std::process::exit(1);
    });
    println!("adapter: {}", gpu.summary());
    println!("timestamps: {}", gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY));
    let bench = Bench { gpu: &gpu, reps: 5 };
    let cpu_adapter = gpu.class() == AdapterClass::Cpu;
    if args.iter().any(|a| a == "--tune") {
        for t in tilings() {
            bench.matmul(if cpu_adapter { 512 } else { 2048 }, Some(t));
        }
        return;
    }
    let mut sizes = vec![256, 512, 1024];
    if args.iter().any(|a| a == "--large") {
        sizes.push(if cpu_adapter { 2048 } else { 4096 });
    }
    for n in sizes {
        bench.matmul(n, None);
    }
    bench.conv();
    bench
        .attention(Attention { batch: 1, heads: 1, tq: 1024, tk: 1024, head_dim: 64, scale: 0.125, causal: false }, "");
    bench
        .attention(Attention { batch: 64, heads: 4, tq: 50, tk: 50, head_dim: 16, scale: 0.25, causal: false }, "sdpa");
    bench.elementwise(1 << 22);
    bench.softmax(4096, 1000);
    bench.cpu_matmul(1024);
}
