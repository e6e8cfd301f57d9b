//! Reference dropout: the same Philox4x32-10 stream as `shaders/dropout.wgsl`, bit for bit.

use crate::dropout::Dropout;

/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
pub fn philox4x32_10(mut c: [u32; 4], mut k: [u32; 2]) -> [u32; 4] {
    for _ in 0..10 {
        let p0 = 0xD251_1F53u64 * c[0] as u64;
        let p1 = 0xCD9E_8D57u64 * c[2] as u64;
        c = [(p1 >> 32) as u32 ^ c[1] ^ k[0], p1 as u32, (p0 >> 32) as u32 ^ c[3] ^ k[1], p0 as u32];
        k = [k[0].wrapping_add(0x9E37_79B9), k[1].wrapping_add(0xBB67_AE85)];
    }
    c
}

/// Whether element `i` survives.
pub fn keeps(d: &Dropout, i: usize) -> bool {
    let counter = [(i / 4) as u32, 0, d.stream as u32, (d.stream >> 32) as u32];
    let words = philox4x32_10(counter, [d.seed as u32, (d.seed >> 32) as u32]);
    let u = (words[i % 4] >> 8) as f32 * (1.0 / 16_777_216.0);
    u >= d.p
}

/// y = x / (1 - p) where the mask keeps an element, else 0.
pub fn dropout(d: &Dropout, x: &[f32], y: &mut [f32]) {
    let scale = d.scale();
    for i in 0..d.n {
        y[i] = if keeps(d, i) { x[i] * scale } else { 0.0 };
    }
}
