// Reductions along one axis of a tensor seen as [outer, axis, inner]: one invocation owns one
// (outer, inner) output and walks the axis, so results are deterministic and need no atomics.
// Sums accumulate in f32 with Kahan compensation (WGSL has no f64 on most adapters).

override OP: u32 = 0u; // 0 sum, 1 mean, 2 max
override WG: u32 = 256u;

struct Params { outer: u32, axis: u32, inner: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let o = linear_id(gid, groups, WG);
    if o >= p.outer * p.inner { return; }
    let base = (o / p.inner) * p.axis * p.inner + o % p.inner;
    if OP == 2u {
        var m = x[base];
        for (var a = 1u; a < p.axis; a++) { m = max(m, x[base + a * p.inner]); }
        y[o] = m;
        return;
    }
    var sum = 0.0;
    var comp = 0.0;
    for (var a = 0u; a < p.axis; a++) {
        let v = x[base + a * p.inner] - comp;
        let t = sum + v;
        comp = (t - sum) - v;
        sum = t;
    }
    y[o] = select(sum, sum / f32(p.axis), OP == 1u);
}

@group(0) @binding(1) var<storage, read> am_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> am_y: array<u32>;

// Index of the first maximum along the axis (NaN never wins).
@compute @workgroup_size(WG)
fn argmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let o = linear_id(gid, groups, WG);
    if o >= p.outer * p.inner { return; }
    let base = (o / p.inner) * p.axis * p.inner + o % p.inner;
    var best = 0u;
    var m = am_x[base];
    for (var a = 1u; a < p.axis; a++) {
        let v = am_x[base + a * p.inner];
        if v > m || (m != m && v == v) { m = v; best = a; }
    }
    am_y[o] = best;
}
