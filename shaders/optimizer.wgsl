// Fused optimizer updates (PyTorch semantics) and global-norm gradient clipping.
// Updates are elementwise: invocation i owns parameter i and its state. The norm is a
// two-stage deterministic sum: per-workgroup partial sums of squares (each gradient tensor
// writes its own range of `partials`), then one workgroup folds them into the clip factor.

override WG: u32 = 256u;

struct Params {
    n: u32, flags: u32, lr: f32, weight_decay: f32,
    a: f32, b: f32, c: f32, d: f32,
    e: f32, _pad0: u32, _pad1: u32, _pad2: u32,
}
// SGD: a = momentum, b = dampening; flags bit 0 = nesterov, bit 1 = first step (buffer = g).
// Adam: a = beta1, b = beta2, c = eps, d = 1 - beta1^t, e = sqrt(1 - beta2^t);
//   flags bit 0 = decoupled weight decay (AdamW).
// sum_squares: n = elements, flags = first partial slot. clip_factor: n = partials, a = max norm.

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> sgd_param: array<f32>;
@group(0) @binding(2) var<storage, read> sgd_grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> sgd_buf: array<f32>;

@compute @workgroup_size(WG)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    if i >= p.n { return; }
    var g = sgd_grad[i] + p.weight_decay * sgd_param[i];
    if p.a != 0.0 {
        var buf = g;
        if (p.flags & 2u) == 0u { buf = p.a * sgd_buf[i] + (1.0 - p.b) * g; }
        sgd_buf[i] = buf;
        g = select(buf, g + p.a * buf, (p.flags & 1u) != 0u);
    }
    sgd_param[i] -= p.lr * g;
}

@group(0) @binding(1) var<storage, read_write> adam_param: array<f32>;
@group(0) @binding(2) var<storage, read> adam_grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> adam_m: array<f32>;
@group(0) @binding(4) var<storage, read_write> adam_v: array<f32>;

@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    if i >= p.n { return; }
    var param = adam_param[i];
    var g = adam_grad[i];
    if (p.flags & 1u) != 0u {
        param *= 1.0 - p.lr * p.weight_decay;
    } else {
        g += p.weight_decay * param;
    }
    let m = p.a * adam_m[i] + (1.0 - p.a) * g;
    let v = p.b * adam_v[i] + (1.0 - p.b) * g * g;
    adam_m[i] = m;
    adam_v[i] = v;
    adam_param[i] = param - p.lr * (m / p.d) / (sqrt(v) / p.e + p.c);
}

const NORM_CHUNK: u32 = 4096u; // elements per workgroup of sum_squares

@group(0) @binding(1) var<storage, read> ss_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> ss_partials: array<f32>;

@compute @workgroup_size(REDUCE_WG)
fn sum_squares(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let start = wid.x * NORM_CHUNK;
    let end = min(start + NORM_CHUNK, p.n);
    var s = 0.0;
    for (var i = start + li; i < end; i += REDUCE_WG) { s += ss_x[i] * ss_x[i]; }
    let total = workgroup_sum(li, s);
    if li == 0u { ss_partials[p.flags + wid.x] = total; }
}

@group(0) @binding(1) var<storage, read> cf_partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> cf_out: array<f32>; // [norm, factor]

@compute @workgroup_size(REDUCE_WG)
fn clip_factor(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var i = li; i < p.n; i += REDUCE_WG) { s += cf_partials[i]; }
    let norm = sqrt(workgroup_sum(li, s));
    if li == 0u {
        cf_out[0] = norm;
        cf_out[1] = min(1.0, p.a / (norm + 1e-6));
    }
}

@group(0) @binding(1) var<storage, read> sc_factor: array<f32>;
@group(0) @binding(2) var<storage, read_write> sc_x: array<f32>;

@compute @workgroup_size(WG)
fn scale_by_factor(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    if i >= p.n { return; }
    sc_x[i] *= sc_factor[1];
}
