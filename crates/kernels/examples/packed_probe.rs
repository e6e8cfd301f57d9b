use std::time::Instant;
fn main() {
    for &(m, k, n) in &[
        (32usize, 128usize, 512usize),
        (64, 128, 512),
        (16, 256, 1024),
        (32, 256, 1024),
        (32, 512, 128),
        (16, 1024, 256),
    ] {
        let a = vec![0.5f32; m * k];
        let w = vec![0.25f32; n * k];
        let mut c = vec![0f32; m * n];
        let p = kernels::cpu::packed::Packed::new(k, n, &w, 1, k);
        let reps = (1e9 / (2.0 * (m * n * k) as f64)) as usize;
        let t = Instant::now();
        for _ in 0..reps {
            p.multiply_add(&[kernels::cpu::packed::Columns::rows(&a, k)], m, &mut c, n);
        }
        let g = 2.0 * (m * n * k * reps) as f64 / t.elapsed().as_secs_f64() / 1e9;
        println!("{m}x{k}x{n}: {g:.1} GFLOP/s single thread");
    }
}
