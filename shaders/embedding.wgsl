// Embedding lookup and its backward without float atomics.
//
// Forward gathers rows: out[i, :] = weight[ids[i], :] (ids >= vocab give zeros; the data
// loader rejects them first). Backward must sum the rows of dy that share a token. It sorts
// (token, position) pairs with a bitonic network (one dispatch per step, no atomics,
// deterministic), then one invocation per (token, feature) binary-searches its token's run
// and sums dy over it in position order, so the result is bit-identical run to run.

override WG: u32 = 256u;

struct Params { tokens: u32, vocab: u32, dim: u32, padded: u32, j: u32, k: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> f_ids: array<u32>;
@group(0) @binding(2) var<storage, read> f_weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> f_out: array<f32>;

@compute @workgroup_size(WG)
fn embedding_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.tokens * p.dim { return; }
    let id = f_ids[e / p.dim];
    var v = 0.0;
    if id < p.vocab { v = f_weight[id * p.dim + e % p.dim]; }
    f_out[e] = v;
}

@group(0) @binding(1) var<storage, read> s_ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> s_keys: array<u32>;
@group(0) @binding(3) var<storage, read_write> s_pos: array<u32>;

// Pairs (token, position), padded to a power of two with keys that sort last.
@compute @workgroup_size(WG)
fn sort_init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    if i >= p.padded { return; }
    s_keys[i] = select(0xFFFFFFFFu, s_ids[i], i < p.tokens);
    s_pos[i] = i;
}

@group(0) @binding(1) var<storage, read_write> b_keys: array<u32>;
@group(0) @binding(2) var<storage, read_write> b_pos: array<u32>;

// One compare-exchange step (k, j) of the bitonic network: invocation i owns pair (i, i ^ j).
@compute @workgroup_size(WG)
fn bitonic_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    let l = i ^ p.j;
    if i >= p.padded || l <= i { return; }
    let ascending = (i & p.k) == 0u;
    let ki = b_keys[i];
    let kl = b_keys[l];
    let pi = b_pos[i];
    let pl = b_pos[l];
    let greater = ki > kl || (ki == kl && pi > pl);
    if greater == ascending {
        b_keys[i] = kl;
        b_keys[l] = ki;
        b_pos[i] = pl;
        b_pos[l] = pi;
    }
}

@group(0) @binding(1) var<storage, read> r_keys: array<u32>;
@group(0) @binding(2) var<storage, read> r_pos: array<u32>;
@group(0) @binding(3) var<storage, read> r_dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> r_dweight: array<f32>;

@compute @workgroup_size(WG)
fn embedding_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.vocab * p.dim { return; }
    let token = e / p.dim;
    let d = e % p.dim;
    // First sorted slot whose key is >= token.
    var lo = 0u;
    var hi = p.tokens;
    while lo < hi {
        let mid = (lo + hi) / 2u;
        if r_keys[mid] < token { lo = mid + 1u; } else { hi = mid; }
    }
    var acc = 0.0;
    for (var s = lo; s < p.tokens && r_keys[s] == token; s++) {
        acc += r_dy[r_pos[s] * p.dim + d];
    }
    r_dweight[e] = acc;
}
