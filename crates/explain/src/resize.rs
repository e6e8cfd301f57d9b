//! Bilinear resizing with PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`
//! sampling: output pixel centres mapped onto input pixel centres, clamped at the border.

/// `map` [height, width] resized to [out_height, out_width].
pub fn bilinear(map: &[f32], height: usize, width: usize, out_height: usize, out_width: usize) -> Vec<f32> {
    let axis = |o: usize, inp: usize, out: usize| {
        let src = ((o as f32 + 0.5) * inp as f32 / out as f32 - 0.5).clamp(0.0, (inp - 1) as f32);
        let lo = src.floor() as usize;
        (lo, (lo + 1).min(inp - 1), src - lo as f32)
    };
    let mut out = Vec::with_capacity(out_height * out_width);
    for oy in 0..out_height {
        let (y0, y1, fy) = axis(oy, height, out_height);
        for ox in 0..out_width {
            let (x0, x1, fx) = axis(ox, width, out_width);
            let at = |y: usize, x: usize| map[y * width + x];
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}
