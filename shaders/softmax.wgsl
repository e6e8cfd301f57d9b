// Softmax and log-softmax over the last axis of [rows, cols], their backward, and the fused
// softmax-cross-entropy loss (PyTorch semantics: mean over rows whose target is not
// `ignore_index`, optional label smoothing). One invocation owns one row; the loss mean is
// one workgroup's deterministic tree sum. Targets >= cols are treated as ignored (the data
// loader rejects them before they get here).

override WG: u32 = 256u;
override LOG: bool = false; // log-softmax instead of softmax

struct Params { rows: u32, cols: u32, smoothing: f32, ignore_index: u32 }

@group(0) @binding(0) var<uniform> p: Params;

// Binding 1 of both softmax_forward and cross_entropy_rows: the [rows, cols] input.
@group(0) @binding(1) var<storage, read> x_in: array<f32>;

// log(sum(exp(x))) of the row starting at `base`, shifted by its max.
fn row_logsumexp(base: u32) -> f32 {
    var m = x_in[base];
    for (var c = 1u; c < p.cols; c++) { m = max(m, x_in[base + c]); }
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) { s += exp(x_in[base + c] - m); }
    return m + log(s);
}

@group(0) @binding(2) var<storage, read_write> sm_y: array<f32>;

@compute @workgroup_size(WG)
fn softmax_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = linear_id(gid, groups, WG);
    if r >= p.rows { return; }
    let base = r * p.cols;
    let lse = row_logsumexp(base);
    for (var c = 0u; c < p.cols; c++) {
        let z = x_in[base + c] - lse;
        sm_y[base + c] = select(exp(z), z, LOG);
    }
}

@group(0) @binding(1) var<storage, read> sb_y: array<f32>;
@group(0) @binding(2) var<storage, read> sb_dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> sb_dx: array<f32>;

// softmax: dx = y * (dy - sum(dy * y)); log-softmax: dx = dy - exp(y) * sum(dy).
@compute @workgroup_size(WG)
fn softmax_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = linear_id(gid, groups, WG);
    if r >= p.rows { return; }
    let base = r * p.cols;
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += select(sb_dy[base + c] * sb_y[base + c], sb_dy[base + c], LOG);
    }
    for (var c = 0u; c < p.cols; c++) {
        let y = sb_y[base + c];
        let dy = sb_dy[base + c];
        sb_dx[base + c] = select(y * (dy - s), dy - exp(y) * s, LOG);
    }
}

fn is_ignored(t: u32) -> bool {
    return t == p.ignore_index || t >= p.cols;
}

// Per row: loss_r = lse - (1 - eps) x_t - eps/C sum_c x_c (0 for ignored rows), and lse.
@group(0) @binding(2) var<storage, read> ce_targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> ce_rows: array<f32>; // [rows, 2]: loss, lse

@compute @workgroup_size(WG)
fn cross_entropy_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = linear_id(gid, groups, WG);
    if r >= p.rows { return; }
    let base = r * p.cols;
    let lse = row_logsumexp(base);
    let t = ce_targets[r];
    var loss = 0.0;
    if !is_ignored(t) {
        var sum = 0.0;
        for (var c = 0u; c < p.cols; c++) { sum += x_in[base + c]; }
        loss = lse - (1.0 - p.smoothing) * x_in[base + t] - p.smoothing / f32(p.cols) * sum;
    }
    ce_rows[2u * r] = loss;
    ce_rows[2u * r + 1u] = lse;
}

@group(0) @binding(1) var<storage, read> cm_rows: array<f32>;
@group(0) @binding(2) var<storage, read> cm_targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> cm_out: array<f32>; // [mean loss, counted rows]

@compute @workgroup_size(REDUCE_WG)
fn cross_entropy_mean(@builtin(local_invocation_index) li: u32) {
    var loss = 0.0;
    var count = 0.0;
    for (var r = li; r < p.rows; r += REDUCE_WG) {
        loss += cm_rows[2u * r];
        count += select(1.0, 0.0, is_ignored(cm_targets[r]));
    }
    let total = workgroup_sum(li, loss);
    let counted = workgroup_sum(li, count);
    if li == 0u {
        cm_out[0] = select(total / counted, 0.0, counted == 0.0);
        cm_out[1] = counted;
    }
}

// dlogits = (softmax - smoothed one-hot) * dloss / counted, 0 on ignored rows.
@group(0) @binding(1) var<storage, read> cb_logits: array<f32>;
@group(0) @binding(2) var<storage, read> cb_targets: array<u32>;
@group(0) @binding(3) var<storage, read> cb_rows: array<f32>;
@group(0) @binding(4) var<storage, read> cb_mean: array<f32>;  // cross_entropy_mean's output
@group(0) @binding(5) var<storage, read> cb_dloss: array<f32>; // [1]
@group(0) @binding(6) var<storage, read_write> cb_dlogits: array<f32>;

@compute @workgroup_size(WG)
fn cross_entropy_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.rows * p.cols { return; }
    let r = e / p.cols;
    let c = e % p.cols;
    let t = cb_targets[r];
    if is_ignored(t) || cb_mean[1] == 0.0 {
        cb_dlogits[e] = 0.0;
        return;
    }
    let prob = exp(cb_logits[e] - cb_rows[2u * r + 1u]);
    let goal = select(0.0, 1.0 - p.smoothing, c == t) + p.smoothing / f32(p.cols);
    cb_dlogits[e] = (prob - goal) * cb_dloss[0] / cb_mean[1];
}

// Top-k accuracy, one invocation per row: hits[r] = 1 when fewer than k logits of the row
// are >= the label's (the label itself excluded), so a tie counts against the label.
// p.ignore_index carries k.
@group(0) @binding(1) var<storage, read> tk_logits: array<f32>;
@group(0) @binding(2) var<storage, read> tk_targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> tk_hits: array<f32>;

@compute @workgroup_size(WG)
fn top_k_hits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = linear_id(gid, groups, WG);
    if r >= p.rows { return; }
    let base = r * p.cols;
    let t = tk_targets[r];
    let label_logit = tk_logits[base + min(t, p.cols - 1u)];
    var above = 0u;
    for (var c = 0u; c < p.cols; c++) {
        if c != t && tk_logits[base + c] >= label_logit { above += 1u; }
    }
    tk_hits[r] = select(0.0, 1.0, t < p.cols && above < p.ignore_index);
}

// Binary cross-entropy with logits, one invocation per element: terms[i] = (max(x, 0) - x t +
// log(1 + exp(-|x|))) / n, the stable form, so that their sum is the mean loss. p.rows = n.
@group(0) @binding(1) var<storage, read> bce_x: array<f32>;
@group(0) @binding(2) var<storage, read> bce_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> bce_terms: array<f32>;

@compute @workgroup_size(WG)
fn bce_with_logits_terms(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    if i >= p.rows { return; }
    let x = bce_x[i];
    bce_terms[i] = (max(x, 0.0) - x * bce_t[i] + log(1.0 + exp(-abs(x)))) / f32(p.rows);
}
