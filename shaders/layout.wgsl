// One strided copy moves data between layouts: out[dst(idx)] = in[src(idx)] for every index
// idx of a shape of rank <= 8, where src/dst are offset + sum(idx * stride). Permute and
// transpose (permuted source strides), slice (source offset), concat (one copy per input into
// a destination offset) and broadcast-expand (zero source strides) are all this kernel.
// Each destination element is written by exactly one invocation (destinations must not alias).

override WG: u32 = 256u;

struct Params {
    n: u32, rank: u32, src_off: u32, dst_off: u32,
    shape_lo: vec4<u32>, shape_hi: vec4<u32>,
    src_lo: vec4<u32>, src_hi: vec4<u32>,
    dst_lo: vec4<u32>, dst_hi: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn strided_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    if i >= p.n { return; }
    let at = strided_offsets(i, p.rank, p.shape_lo, p.shape_hi, p.src_lo, p.src_hi, p.dst_lo, p.dst_hi);
    dst[p.dst_off + at.y] = src[p.src_off + at.x];
}
