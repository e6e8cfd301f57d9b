// Fused scaled-dot-product attention, O = softmax(Q Kᵀ * scale + mask) V, per (batch*head):
// Q [BH, TQ, D], K and V [BH, TK, D], O [BH, TQ, D]. Masks: causal (key j > query i is
// hidden, PyTorch's top-left alignment) and key padding (mask[b, j] == 0 hides key j of batch
// b = bh / heads). A row with every key hidden outputs zeros.
//
// Forward: a workgroup owns BQ query rows (one per invocation) and streams K and V through
// workgroup memory in tiles of BKV keys, keeping an online softmax (running max, sum and
// output) per row, rescaled once per tile (FlashAttention-2's order): the TQ x TK score
// matrix never exists in device memory. It saves each row's log-sum-exp; with WRITE_PROBS it
// also writes the probabilities (explain needs them), the only case that allocates TQ x TK.
// Backward recomputes the probabilities from the log-sum-exp: delta_i = dO_i . O_i, then dQ
// with one invocation per query row and dK, dV with one invocation per key row, so every
// output row has one owner and no atomics are needed.
//
// Rows are handled as D4 = ceil(D / 4) vec4 chunks (zero-padded past D), so the loops over the
// head dimension are short and unroll, and the per-row accumulators stay in registers. On
// llvmpipe/lavapipe that also matters for correctness: its loop limiter cuts a shader's loops
// short after 65,535 iterations per invocation, so only the key loop may be long.

override D: u32 = 64u;          // head dimension
override D4: u32 = 16u;         // ceil(D / 4)
override BQ: u32 = 64u;         // query (or key) rows per workgroup
override BKV: u32 = 16u;        // rows per staged tile
override TILE: u32 = 256u;      // BKV * D4
override WRITE_PROBS: bool = false;
override WG: u32 = 256u;

const MAX_D4: u32 = 64u; // head dimension up to 256
const MAX_BKV: u32 = 32u;
const NEG: f32 = -3.0e38;

struct Params { bh: u32, heads: u32, tq: u32, tk: u32, scale: f32, causal: u32, has_mask: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> tile_a: array<vec4<f32>, TILE>; // K rows (forward, dQ) or scale * Q rows (dK/dV)
var<workgroup> tile_b: array<vec4<f32>, TILE>; // V rows (forward, dQ) or dO rows (dK/dV)
var<workgroup> tile_lse: array<f32, BKV>;
var<workgroup> tile_delta: array<f32, BKV>;

// Helpers read the bindings of whichever entry point calls them: every entry point binds its
// inputs in the same order (1 Q, 2 K, 3 V, 4 mask, 5 dO, 6 lse, 7 delta).
@group(0) @binding(1) var<storage, read> in_q: array<f32>;
@group(0) @binding(2) var<storage, read> in_k: array<f32>;
@group(0) @binding(3) var<storage, read> in_v: array<f32>;
@group(0) @binding(4) var<storage, read> in_mask: array<u32>;

// Chunk c of row `row` of a [rows, D] tensor, zero past D.
fn chunk_q(row: u32, c: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) { if 4u * c + k < D { v[k] = in_q[row * D + 4u * c + k]; } }
    return v;
}
fn chunk_k(row: u32, c: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) { if 4u * c + k < D { v[k] = in_k[row * D + 4u * c + k]; } }
    return v;
}
fn chunk_v(row: u32, c: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) { if 4u * c + k < D { v[k] = in_v[row * D + 4u * c + k]; } }
    return v;
}

fn visible(bh: u32, i: u32, j: u32) -> bool {
    if p.causal != 0u && j > i { return false; }
    if p.has_mask != 0u && in_mask[(bh / p.heads) * p.tk + j] == 0u { return false; }
    return true;
}

// One past the last key any query of the workgroup starting at q0 can see.
fn key_end(q0: u32) -> u32 {
    if p.causal != 0u { return min(p.tk, q0 + BQ); }
    return p.tk;
}

// Stages keys j0 .. j0 + BKV of K into tile_a and of V into tile_b (rows past TK repeat the
// last one; callers skip them).
fn stage_keys(bh: u32, j0: u32, li: u32) {
    for (var e = li; e < BKV * D4; e += BQ) {
        let key = bh * p.tk + min(j0 + e / D4, p.tk - 1u);
        tile_a[e] = chunk_k(key, e % D4);
        tile_b[e] = chunk_v(key, e % D4);
    }
}

// ---- forward ----
@group(0) @binding(5) var<storage, read_write> f_o: array<f32>;
@group(0) @binding(6) var<storage, read_write> f_lse: array<f32>;
@group(0) @binding(7) var<storage, read_write> f_probs: array<f32>;

@compute @workgroup_size(BQ)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let bh = wid.y;
    let q0 = wid.x * BQ;
    let i = q0 + li;
    let in_range = i < p.tq;
    let row = bh * p.tq + min(i, p.tq - 1u); // idle invocations still help stage tiles
    var q: array<vec4<f32>, MAX_D4>;
    var acc: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < D4; c++) { q[c] = chunk_q(row, c) * p.scale; }
    var m = NEG;
    var l = 0.0;
    let end = key_end(q0);
    for (var j0 = 0u; j0 < end; j0 += BKV) {
        stage_keys(bh, j0, li);
        workgroupBarrier();
        var scores: array<f32, MAX_BKV>;
        var tile_max = NEG;
        for (var jj = 0u; jj < BKV; jj++) {
            var s = NEG;
            if in_range && j0 + jj < end && visible(bh, i, j0 + jj) {
                s = 0.0;
                for (var c = 0u; c < D4; c++) { s += dot(q[c], tile_a[jj * D4 + c]); }
                tile_max = max(tile_max, s);
            }
            scores[jj] = s;
        }
        if tile_max > NEG {
            let m_new = max(m, tile_max);
            let correction = exp(m - m_new);
            l *= correction;
            for (var c = 0u; c < D4; c++) { acc[c] *= correction; }
            for (var jj = 0u; jj < BKV; jj++) {
                if scores[jj] == NEG { continue; }
                let w = exp(scores[jj] - m_new);
                l += w;
                for (var c = 0u; c < D4; c++) { acc[c] += w * tile_b[jj * D4 + c]; }
            }
            m = m_new;
        }
        workgroupBarrier();
    }
    if !in_range { return; }
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var d = 0u; d < D; d++) { f_o[row * D + d] = acc[d / 4u][d % 4u] * inv; }
    let lse = select(NEG, m + log(l), l > 0.0);
    f_lse[row] = lse;
    if WRITE_PROBS {
        for (var j = 0u; j < p.tk; j++) {
            var prob = 0.0;
            if l > 0.0 && visible(bh, i, j) {
                var s = 0.0;
                for (var c = 0u; c < D4; c++) { s += dot(q[c], chunk_k(bh * p.tk + j, c)); }
                prob = exp(s - lse);
            }
            f_probs[row * p.tk + j] = prob;
        }
    }
}

// ---- backward: delta_i = dO_i . O_i (binding 1 is O here, read through in_q) ----
@group(0) @binding(2) var<storage, read> d_do: array<f32>;
@group(0) @binding(3) var<storage, read_write> d_delta: array<f32>;

@compute @workgroup_size(WG)
fn attention_backward_delta(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = linear_id(gid, groups, WG);
    if r >= p.bh * p.tq { return; }
    var s = 0.0;
    for (var d = 0u; d < D; d++) { s += in_q[r * D + d] * d_do[r * D + d]; }
    d_delta[r] = s;
}

// ---- backward: dQ_i = scale * sum_j P_ij (dO_i . V_j - delta_i) K_j ----
@group(0) @binding(5) var<storage, read> g_do: array<f32>;
@group(0) @binding(6) var<storage, read> g_lse: array<f32>;
@group(0) @binding(7) var<storage, read> g_delta: array<f32>;
@group(0) @binding(8) var<storage, read_write> q_dq: array<f32>;

fn chunk_do(row: u32, c: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) { if 4u * c + k < D { v[k] = g_do[row * D + 4u * c + k]; } }
    return v;
}

@compute @workgroup_size(BQ)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let bh = wid.y;
    let q0 = wid.x * BQ;
    let i = q0 + li;
    let in_range = i < p.tq;
    let row = bh * p.tq + min(i, p.tq - 1u);
    var q: array<vec4<f32>, MAX_D4>;
    var g: array<vec4<f32>, MAX_D4>;
    var dq: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < D4; c++) {
        q[c] = chunk_q(row, c) * p.scale;
        g[c] = chunk_do(row, c);
    }
    let lse = g_lse[row];
    let delta = g_delta[row];
    let end = key_end(q0);
    for (var j0 = 0u; j0 < end; j0 += BKV) {
        stage_keys(bh, j0, li);
        workgroupBarrier();
        for (var jj = 0u; jj < BKV; jj++) {
            if !in_range || j0 + jj >= end || !visible(bh, i, j0 + jj) { continue; }
            var s = 0.0;
            var dp = 0.0;
            for (var c = 0u; c < D4; c++) {
                s += dot(q[c], tile_a[jj * D4 + c]);
                dp += dot(g[c], tile_b[jj * D4 + c]);
            }
            let ds = exp(s - lse) * (dp - delta);
            for (var c = 0u; c < D4; c++) { dq[c] += ds * tile_a[jj * D4 + c]; }
        }
        workgroupBarrier();
    }
    if !in_range { return; }
    for (var d = 0u; d < D; d++) { q_dq[row * D + d] = dq[d / 4u][d % 4u] * p.scale; }
}

// ---- backward: dV_j = sum_i P_ij dO_i, dK_j = scale * sum_i P_ij (dO_i . V_j - delta_i) Q_i ----
@group(0) @binding(8) var<storage, read_write> k_dk: array<f32>;
@group(0) @binding(9) var<storage, read_write> k_dv: array<f32>;

@compute @workgroup_size(BQ)
fn attention_backward_dkdv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let bh = wid.y;
    let j = wid.x * BQ + li; // this invocation's key row
    let in_range = j < p.tk;
    let jc = min(j, p.tk - 1u);
    let row = bh * p.tk + jc;
    let hidden = p.has_mask != 0u && in_mask[(bh / p.heads) * p.tk + jc] == 0u;
    var k: array<vec4<f32>, MAX_D4>;
    var v: array<vec4<f32>, MAX_D4>;
    var dk: array<vec4<f32>, MAX_D4>;
    var dv: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < D4; c++) {
        k[c] = chunk_k(row, c);
        v[c] = chunk_v(row, c);
    }
    // Causal: queries before the workgroup's first key see none of its keys.
    let start = select(0u, (wid.x * BQ / BKV) * BKV, p.causal != 0u);
    for (var i0 = start; i0 < p.tq; i0 += BKV) {
        for (var e = li; e < BKV * D4; e += BQ) {
            let query = bh * p.tq + min(i0 + e / D4, p.tq - 1u);
            tile_a[e] = chunk_q(query, e % D4) * p.scale;
            tile_b[e] = chunk_do(query, e % D4);
        }
        for (var e = li; e < BKV; e += BQ) {
            let query = bh * p.tq + min(i0 + e, p.tq - 1u);
            tile_lse[e] = g_lse[query];
            tile_delta[e] = g_delta[query];
        }
        workgroupBarrier();
        for (var ii = 0u; ii < BKV; ii++) {
            if !in_range || hidden || i0 + ii >= p.tq || (p.causal != 0u && j > i0 + ii) { continue; }
            var s = 0.0;
            var dp = 0.0;
            for (var c = 0u; c < D4; c++) {
                s += dot(tile_a[ii * D4 + c], k[c]);
                dp += dot(tile_b[ii * D4 + c], v[c]);
            }
            let prob = exp(s - tile_lse[ii]);
            let ds = prob * (dp - tile_delta[ii]);
            for (var c = 0u; c < D4; c++) {
                dv[c] += prob * tile_b[ii * D4 + c];
                dk[c] += ds * tile_a[ii * D4 + c]; // tile_a holds scale * Q
            }
        }
        workgroupBarrier();
    }
    if !in_range { return; }
    for (var d = 0u; d < D; d++) {
        k_dk[row * D + d] = dk[d / 4u][d % 4u];
        k_dv[row * D + d] = dv[d / 4u][d % 4u];
    }
}
