// LSTM and GRU cells, forward and backward, one invocation per (batch row, hidden unit).
// The gate pre-activations come from matmuls (x Wᵢₕᵀ + bᵢₕ for every step at once, plus
// h Wₕₕᵀ + bₕₕ per step); these kernels apply the nonlinearities and the state update.
// PyTorch gate order: LSTM i, f, g, o; GRU r, z, n with n = tanh(xₙ + r * (hₙ)), where hₙ
// includes bₕₙ.
//
// Every tensor is read through a row view (offset, row stride), so a cell works on time step t
// of [B, T, width] buffers in place. All bindings are read_write so a state and its
// predecessor (c_{t-1}, c_t) may live in one buffer.

override WG: u32 = 256u;

struct Params {
    batch: u32, hidden: u32, _pad0: u32, _pad1: u32,
    offset: array<vec4<u32>, 2>, // view k: offset[k / 4][k % 4]
    stride: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;

// Index of column `col` of row `b` in view `k`.
fn at(k: u32, b: u32, col: u32) -> u32 {
    return p.offset[k / 4u][k % 4u] + b * p.stride[k / 4u][k % 4u] + col;
}

fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn tanh_safe(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }

@group(0) @binding(1) var<storage, read_write> t1: array<f32>;
@group(0) @binding(2) var<storage, read_write> t2: array<f32>;
@group(0) @binding(3) var<storage, read_write> t3: array<f32>;
@group(0) @binding(4) var<storage, read_write> t4: array<f32>;
@group(0) @binding(5) var<storage, read_write> t5: array<f32>;
@group(0) @binding(6) var<storage, read_write> t6: array<f32>;
@group(0) @binding(7) var<storage, read_write> t7: array<f32>;
@group(0) @binding(8) var<storage, read_write> t8: array<f32>;

// LSTM gates (i, f, g, o) of unit j of row b, activated, from t1 at view 0.
fn lstm_gates(b: u32, j: u32) -> vec4<f32> {
    let h = p.hidden;
    return vec4<f32>(
        sigmoid(t1[at(0u, b, j)]),
        sigmoid(t1[at(0u, b, h + j)]),
        tanh_safe(t1[at(0u, b, 2u * h + j)]),
        sigmoid(t1[at(0u, b, 3u * h + j)]),
    );
}

// GRU gates (r, z, n) and the hidden part hₙ of n, from t1 (view 0) and t2 (view 1).
fn gru_gates(b: u32, j: u32) -> vec4<f32> {
    let h = p.hidden;
    let hn = t2[at(1u, b, 2u * h + j)];
    let r = sigmoid(t1[at(0u, b, j)] + t2[at(1u, b, j)]);
    let z = sigmoid(t1[at(0u, b, h + j)] + t2[at(1u, b, h + j)]);
    let n = tanh_safe(t1[at(0u, b, 2u * h + j)] + r * hn);
    return vec4<f32>(r, z, n, hn);
}

// LSTM forward. t1 gates [B, 4H] (view 0), t2 c_prev (1), t3 h (2), t4 c (3).
@compute @workgroup_size(WG)
fn lstm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.batch * p.hidden { return; }
    let b = e / p.hidden;
    let j = e % p.hidden;
    let gate = lstm_gates(b, j);
    let c = gate.y * t2[at(1u, b, j)] + gate.x * gate.z;
    t3[at(2u, b, j)] = gate.w * tanh_safe(c);
    t4[at(3u, b, j)] = c;
}

// LSTM backward. t1 gates (view 0), t2 c_prev (1), t3 dh from the layer's output (2), t4 dh
// from the next step through the recurrence (3), t5 dc from the next step (4); writes t6
// dgates (5) and t7 dc_prev (6). c is recomputed from the gates.
@compute @workgroup_size(WG)
fn lstm_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.batch * p.hidden { return; }
    let b = e / p.hidden;
    let j = e % p.hidden;
    let h = p.hidden;
    let gate = lstm_gates(b, j);
    let i = gate.x;
    let f = gate.y;
    let g = gate.z;
    let o = gate.w;
    let c_prev = t2[at(1u, b, j)];
    let tc = tanh_safe(f * c_prev + i * g);
    let dh = t3[at(2u, b, j)] + t4[at(3u, b, j)];
    let dc = t5[at(4u, b, j)] + dh * o * (1.0 - tc * tc);
    t6[at(5u, b, j)] = dc * g * i * (1.0 - i);
    t6[at(5u, b, h + j)] = dc * c_prev * f * (1.0 - f);
    t6[at(5u, b, 2u * h + j)] = dc * i * (1.0 - g * g);
    t6[at(5u, b, 3u * h + j)] = dh * tc * o * (1.0 - o);
    t7[at(6u, b, j)] = dc * f;
}

// GRU forward. t1 input gates x Wᵢₕᵀ + bᵢₕ [B, 3H] (view 0), t2 hidden gates h Wₕₕᵀ + bₕₕ
// (1), t3 h_prev (2), t4 h (3).
@compute @workgroup_size(WG)
fn gru_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.batch * p.hidden { return; }
    let b = e / p.hidden;
    let j = e % p.hidden;
    let gate = gru_gates(b, j);
    t4[at(3u, b, j)] = (1.0 - gate.y) * gate.z + gate.y * t3[at(2u, b, j)];
}

// GRU backward. t1 input gates (view 0), t2 hidden gates (1), t3 h_prev (2), t4 dh from the
// layer's output (3), t5 dh from the next step (4); writes t6 dinput-gates (5), t7
// dhidden-gates (6) and t8 = z * dh (7), the direct part of dh_prev (the caller adds
// dhidden-gates . Wₕₕ to it with a beta = 1 matmul).
@compute @workgroup_size(WG)
fn gru_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.batch * p.hidden { return; }
    let b = e / p.hidden;
    let j = e % p.hidden;
    let h = p.hidden;
    let gate = gru_gates(b, j);
    let r = gate.x;
    let z = gate.y;
    let n = gate.z;
    let hn = gate.w;
    let h_prev = t3[at(2u, b, j)];
    let dh = t4[at(3u, b, j)] + t5[at(4u, b, j)];
    let dn = dh * (1.0 - z) * (1.0 - n * n);
    let dz = dh * (h_prev - n) * z * (1.0 - z);
    let dr = dn * hn * r * (1.0 - r);
    t6[at(5u, b, j)] = dr;
    t6[at(5u, b, h + j)] = dz;
    t6[at(5u, b, 2u * h + j)] = dn;
    t7[at(6u, b, j)] = dr;
    t7[at(6u, b, h + j)] = dz;
    t7[at(6u, b, 2u * h + j)] = dn * r;
    t8[at(7u, b, j)] = dh * z;
}
