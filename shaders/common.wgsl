// Helpers every kernel family may use; prepended to each shader by `kernels::shader!`.

// Linear invocation index for kernels dispatched with `kernels::linear_grid` (a 2-D grid so
// that more than 65,535 workgroups fit).
fn linear_id(gid: vec3<u32>, groups: vec3<u32>, wg: u32) -> u32 {
    return gid.x + gid.y * groups.x * wg;
}

// Axis `axis` of an 8-axis shape or stride list packed as two vec4s.
fn axis_of(v_lo: vec4<u32>, v_hi: vec4<u32>, axis: u32) -> u32 {
    if axis < 4u { return v_lo[axis]; }
    return v_hi[axis - 4u];
}

// The offsets of flat index i of a shape (rank <= 8, axis 0 first) under two stride lists:
// how broadcasting binaries read their inputs and strided copies map source to destination.
fn strided_offsets(i: u32, rank: u32, shape_lo: vec4<u32>, shape_hi: vec4<u32>,
                   a_lo: vec4<u32>, a_hi: vec4<u32>, b_lo: vec4<u32>, b_hi: vec4<u32>) -> vec2<u32> {
    var rest = i;
    var offsets = vec2<u32>(0u, 0u);
    for (var k = rank; k > 0u; k--) {
        let axis = k - 1u;
        let dim = axis_of(shape_lo, shape_hi, axis);
        let idx = rest % dim;
        rest = rest / dim;
        offsets += idx * vec2<u32>(axis_of(a_lo, a_hi, axis), axis_of(b_lo, b_hi, axis));
    }
    return offsets;
}

// Deterministic tree sum across a workgroup of REDUCE_WG invocations (kernels that reduce a
// whole channel or tensor in one workgroup use @workgroup_size(REDUCE_WG)). Call from uniform
// control flow; every invocation gets the total.
const REDUCE_WG: u32 = 256u;
var<workgroup> reduce_scratch: array<f32, REDUCE_WG>;

fn workgroup_sum(li: u32, v: f32) -> f32 {
    reduce_scratch[li] = v;
    workgroupBarrier();
    for (var s = REDUCE_WG / 2u; s > 0u; s >>= 1u) {
        if li < s { reduce_scratch[li] += reduce_scratch[li + s]; }
        workgroupBarrier();
    }
    let total = reduce_scratch[0];
    workgroupBarrier();
    return total;
}
