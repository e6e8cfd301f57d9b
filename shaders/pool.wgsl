// Max and average pooling over NCHW, forward and backward. Forward: one invocation per output.
// Backward gathers: one invocation per input pixel sums the gradients of the windows that
// contain it (max: only where the saved argmax is this pixel), so there are no atomics.
// Max pooling ignores padding (as if padded with -inf); average pooling divides by the full
// window (count_include_pad, PyTorch's default) or by the pixels inside the image.

override WG: u32 = 256u;

struct Params {
    planes: u32, h: u32, w: u32, oh: u32,
    ow: u32, kh: u32, kw: u32, sh: u32,
    sw: u32, ph: u32, pw: u32, include_pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// First and one-past-last output row (or column) whose window covers input coordinate `i`.
fn covering(i: u32, k: u32, s: u32, pad: u32, count: u32) -> vec2<u32> {
    let hi = min((i + pad) / s + 1u, count);
    let reach = i + pad + 1u;
    let lo = select(0u, (reach - k + s - 1u) / s, reach > k);
    return vec2<u32>(lo, max(hi, lo));
}

@group(0) @binding(1) var<storage, read> mf_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mf_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> mf_idx: array<u32>; // argmax within the plane

@compute @workgroup_size(WG)
fn max_pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.planes * p.oh * p.ow { return; }
    let ox = e % p.ow;
    let oy = (e / p.ow) % p.oh;
    let plane = e / (p.ow * p.oh);
    var best = -3.4028235e38;
    var at = 0u;
    var found = false;
    for (var i = 0u; i < p.kh; i++) {
        let y = i32(oy * p.sh + i) - i32(p.ph);
        if y < 0 || y >= i32(p.h) { continue; }
        for (var j = 0u; j < p.kw; j++) {
            let x = i32(ox * p.sw + j) - i32(p.pw);
            if x < 0 || x >= i32(p.w) { continue; }
            let idx = u32(y) * p.w + u32(x);
            let v = mf_x[plane * p.h * p.w + idx];
            if !found || v > best || v != v {
                best = v;
                at = idx;
                found = true;
                if v != v { break; } // NaN propagates, as in PyTorch
            }
        }
    }
    mf_y[e] = best;
    mf_idx[e] = at;
}

@group(0) @binding(1) var<storage, read> mb_dy: array<f32>;
@group(0) @binding(2) var<storage, read> mb_idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> mb_dx: array<f32>;

@compute @workgroup_size(WG)
fn max_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.planes * p.h * p.w { return; }
    let x = e % p.w;
    let y = (e / p.w) % p.h;
    let plane = e / (p.w * p.h);
    let me = y * p.w + x;
    let rows = covering(y, p.kh, p.sh, p.ph, p.oh);
    let cols = covering(x, p.kw, p.sw, p.pw, p.ow);
    var acc = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            let o = (plane * p.oh + oy) * p.ow + ox;
            if mb_idx[o] == me { acc += mb_dy[o]; }
        }
    }
    mb_dx[e] = acc;
}

// Pixels of the window of output (oy, ox) that lie inside the image.
fn inside_count(oy: u32, ox: u32) -> f32 {
    let y0 = max(i32(oy * p.sh) - i32(p.ph), 0);
    let y1 = min(i32(oy * p.sh + p.kh) - i32(p.ph), i32(p.h));
    let x0 = max(i32(ox * p.sw) - i32(p.pw), 0);
    let x1 = min(i32(ox * p.sw + p.kw) - i32(p.pw), i32(p.w));
    return f32(max(y1 - y0, 0) * max(x1 - x0, 0));
}

fn divisor(oy: u32, ox: u32) -> f32 {
    return select(inside_count(oy, ox), f32(p.kh * p.kw), p.include_pad != 0u);
}

@group(0) @binding(1) var<storage, read> af_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> af_y: array<f32>;

@compute @workgroup_size(WG)
fn avg_pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.planes * p.oh * p.ow { return; }
    let ox = e % p.ow;
    let oy = (e / p.ow) % p.oh;
    let plane = e / (p.ow * p.oh);
    var acc = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        let y = i32(oy * p.sh + i) - i32(p.ph);
        if y < 0 || y >= i32(p.h) { continue; }
        for (var j = 0u; j < p.kw; j++) {
            let x = i32(ox * p.sw + j) - i32(p.pw);
            if x < 0 || x >= i32(p.w) { continue; }
            acc += af_x[(plane * p.h + u32(y)) * p.w + u32(x)];
        }
    }
    af_y[e] = acc / divisor(oy, ox);
}

@group(0) @binding(1) var<storage, read> ab_dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> ab_dx: array<f32>;

@compute @workgroup_size(WG)
fn avg_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.planes * p.h * p.w { return; }
    let x = e % p.w;
    let y = (e / p.w) % p.h;
    let plane = e / (p.w * p.h);
    let rows = covering(y, p.kh, p.sh, p.ph, p.oh);
    let cols = covering(x, p.kw, p.sw, p.pw, p.ow);
    var acc = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            acc += ab_dy[(plane * p.oh + oy) * p.ow + ox] / divisor(oy, ox);
        }
    }
    ab_dx[e] = acc;
}
