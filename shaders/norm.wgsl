// Batch normalisation over x [N, C, S] (S = H*W, or 1 for BatchNorm1d) and layer
// normalisation over the last axis of x [R, D], forward and backward, PyTorch semantics:
// biased variance for normalising, unbiased for the running variance, running stats updated
// as (1 - momentum) * old + momentum * batch.
//
// Per-channel statistics are one workgroup per channel (two passes, mean then variance, for
// accuracy; deterministic tree sums). LayerNorm rows and columns are one invocation each.

override WG: u32 = 256u;

struct Params { n: u32, c: u32, s: u32, train: u32, eps: f32, momentum: f32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;

fn bn_at(c: u32, i: u32) -> u32 {
    // i-th of the N*S elements of channel c
    return ((i / p.s) * p.c + c) * p.s + i % p.s;
}

@group(0) @binding(1) var<storage, read> bs_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> bs_running_mean: array<f32>; // [C]
@group(0) @binding(3) var<storage, read_write> bs_running_var: array<f32>;  // [C]
@group(0) @binding(4) var<storage, read_write> bs_saved: array<f32>;        // [mean C, invstd C]

// Training: batch statistics, saved for backward, folded into the running ones. Evaluation:
// the running statistics, saved in the same form.
@compute @workgroup_size(REDUCE_WG)
fn batch_norm_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let c = wid.x;
    let m = p.n * p.s;
    if p.train == 0u {
        if li == 0u {
            bs_saved[c] = bs_running_mean[c];
            bs_saved[p.c + c] = inverseSqrt(bs_running_var[c] + p.eps);
        }
        return;
    }
    var sum = 0.0;
    for (var i = li; i < m; i += REDUCE_WG) { sum += bs_x[bn_at(c, i)]; }
    let mean = workgroup_sum(li, sum) / f32(m);
    var sq = 0.0;
    for (var i = li; i < m; i += REDUCE_WG) { let d = bs_x[bn_at(c, i)] - mean; sq += d * d; }
    let var_sum = workgroup_sum(li, sq);
    if li == 0u {
        let biased = var_sum / f32(m);
        let unbiased = var_sum / f32(max(m, 2u) - 1u);
        bs_saved[c] = mean;
        bs_saved[p.c + c] = inverseSqrt(biased + p.eps);
        bs_running_mean[c] = (1.0 - p.momentum) * bs_running_mean[c] + p.momentum * mean;
        bs_running_var[c] = (1.0 - p.momentum) * bs_running_var[c] + p.momentum * unbiased;
    }
}

@group(0) @binding(1) var<storage, read> ba_x: array<f32>;
@group(0) @binding(2) var<storage, read> ba_saved: array<f32>;
@group(0) @binding(3) var<storage, read> ba_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> ba_beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> ba_y: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.n * p.c * p.s { return; }
    let c = (e / p.s) % p.c;
    ba_y[e] = (ba_x[e] - ba_saved[c]) * ba_saved[p.c + c] * ba_gamma[c] + ba_beta[c];
}

@group(0) @binding(1) var<storage, read> br_x: array<f32>;
@group(0) @binding(2) var<storage, read> br_dy: array<f32>;
@group(0) @binding(3) var<storage, read> br_saved: array<f32>;
@group(0) @binding(4) var<storage, read_write> br_dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> br_dbeta: array<f32>;

// dgamma = sum(dy * xhat), dbeta = sum(dy) per channel.
@compute @workgroup_size(REDUCE_WG)
fn batch_norm_backward_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let c = wid.x;
    let mean = br_saved[c];
    let invstd = br_saved[p.c + c];
    var dy_sum = 0.0;
    var dy_xhat = 0.0;
    for (var i = li; i < p.n * p.s; i += REDUCE_WG) {
        let at = bn_at(c, i);
        dy_sum += br_dy[at];
        dy_xhat += br_dy[at] * (br_x[at] - mean) * invstd;
    }
    let dbeta = workgroup_sum(li, dy_sum);
    let dgamma = workgroup_sum(li, dy_xhat);
    if li == 0u {
        br_dgamma[c] = dgamma;
        br_dbeta[c] = dbeta;
    }
}

@group(0) @binding(1) var<storage, read> bb_x: array<f32>;
@group(0) @binding(2) var<storage, read> bb_dy: array<f32>;
@group(0) @binding(3) var<storage, read> bb_saved: array<f32>;
@group(0) @binding(4) var<storage, read> bb_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> bb_dgamma: array<f32>;
@group(0) @binding(6) var<storage, read> bb_dbeta: array<f32>;
@group(0) @binding(7) var<storage, read_write> bb_dx: array<f32>;

// Training: dx = gamma * invstd * (dy - dbeta / M - xhat * dgamma / M); evaluation (fixed
// statistics): dx = gamma * invstd * dy.
@compute @workgroup_size(WG)
fn batch_norm_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.n * p.c * p.s { return; }
    let c = (e / p.s) % p.c;
    let invstd = bb_saved[p.c + c];
    var g = bb_dy[e];
    if p.train != 0u {
        let m = f32(p.n * p.s);
        let xhat = (bb_x[e] - bb_saved[c]) * invstd;
        g = g - bb_dbeta[c] / m - xhat * bb_dgamma[c] / m;
    }
    bb_dx[e] = bb_gamma[c] * invstd * g;
}

// LayerNorm: p.n = rows R, p.s = features D (p.c unused).
@group(0) @binding(1) var<storage, read> lf_x: array<f32>;
@group(0) @binding(2) var<storage, read> lf_gamma: array<f32>;
@group(0) @binding(3) var<storage, read> lf_beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> lf_y: array<f32>;
@group(0) @binding(5) var<storage, read_write> lf_saved: array<f32>; // [mean R, invstd R]

@compute @workgroup_size(WG)
fn layer_norm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = linear_id(gid, groups, WG);
    if r >= p.n { return; }
    let base = r * p.s;
    var sum = 0.0;
    for (var d = 0u; d < p.s; d++) { sum += lf_x[base + d]; }
    let mean = sum / f32(p.s);
    var sq = 0.0;
    for (var d = 0u; d < p.s; d++) { let v = lf_x[base + d] - mean; sq += v * v; }
    let invstd = inverseSqrt(sq / f32(p.s) + p.eps);
    for (var d = 0u; d < p.s; d++) {
        lf_y[base + d] = (lf_x[base + d] - mean) * invstd * lf_gamma[d] + lf_beta[d];
    }
    lf_saved[r] = mean;
    lf_saved[p.n + r] = invstd;
}

@group(0) @binding(1) var<storage, read> lb_x: array<f32>;
@group(0) @binding(2) var<storage, read> lb_dy: array<f32>;
@group(0) @binding(3) var<storage, read> lb_saved: array<f32>;
@group(0) @binding(4) var<storage, read> lb_gamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> lb_dx: array<f32>;

// dx = invstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma.
@compute @workgroup_size(WG)
fn layer_norm_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = linear_id(gid, groups, WG);
    if r >= p.n { return; }
    let base = r * p.s;
    let mean = lb_saved[r];
    let invstd = lb_saved[p.n + r];
    var g_sum = 0.0;
    var gx_sum = 0.0;
    for (var d = 0u; d < p.s; d++) {
        let g = lb_dy[base + d] * lb_gamma[d];
        g_sum += g;
        gx_sum += g * (lb_x[base + d] - mean) * invstd;
    }
    let g_mean = g_sum / f32(p.s);
    let gx_mean = gx_sum / f32(p.s);
    for (var d = 0u; d < p.s; d++) {
        let xhat = (lb_x[base + d] - mean) * invstd;
        lb_dx[base + d] = invstd * (lb_dy[base + d] * lb_gamma[d] - g_mean - xhat * gx_mean);
    }
}

@group(0) @binding(1) var<storage, read> lp_x: array<f32>;
@group(0) @binding(2) var<storage, read> lp_dy: array<f32>;
@group(0) @binding(3) var<storage, read> lp_saved: array<f32>;
@group(0) @binding(4) var<storage, read_write> lp_dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> lp_dbeta: array<f32>;

// Per feature d: dgamma = sum over rows of dy * xhat, dbeta = sum over rows of dy.
@compute @workgroup_size(WG)
fn layer_norm_backward_params(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let d = linear_id(gid, groups, WG);
    if d >= p.s { return; }
    var dg = 0.0;
    var db = 0.0;
    for (var r = 0u; r < p.n; r++) {
        let at = r * p.s + d;
        db += lp_dy[at];
        dg += lp_dy[at] * (lp_x[at] - lp_saved[r]) * lp_saved[p.n + r];
    }
    lp_dgamma[d] = dg;
    lp_dbeta[d] = db;
}
