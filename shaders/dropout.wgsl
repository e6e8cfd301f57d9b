// Inverted dropout with a counter-based RNG: element i keeps its value (scaled by
// 1 / (1 - p)) unless word i % 4 of Philox4x32-10(counter = (i / 4, 0, stream), key = seed)
// falls below p. The mask is a pure function of (seed, stream, i): the same on every device
// and in `kernels::cpu::dropout`, and backward re-applies it to dy instead of storing it.

override WG: u32 = 256u;

struct Params { n: u32, p: f32, scale: f32, seed_lo: u32, seed_hi: u32, stream_lo: u32, stream_hi: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// High and low words of the 64-bit product a * b, from 16-bit halves (WGSL has no mulhi).
fn mul_hi_lo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let hi = a_hi * b_hi + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        let p0 = mul_hi_lo(0xD2511F53u, c.x);
        let p1 = mul_hi_lo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k += vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

@compute @workgroup_size(WG)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    if i >= p.n { return; }
    let words = philox4x32_10(vec4<u32>(i / 4u, 0u, p.stream_lo, p.stream_hi), vec2<u32>(p.seed_lo, p.seed_hi));
    // 24 random bits: exactly representable, so the CPU reference draws the same uniform.
    let u = f32(words[i % 4u] >> 8u) * (1.0 / 16777216.0);
    y[i] = select(0.0, x[i] * p.scale, u >= p.p);
}
