// Elementwise kernels. `unary` and `unary_backward` work on flat arrays; `binary` broadcasts
// two inputs of rank <= 8 against the output shape through per-input strides (stride 0 on a
// broadcast axis). Each output element is written by exactly one invocation.
//
// Overrides: OP selects the function (so each op compiles to its own branch-free pipeline),
// WG the workgroup size.

override OP: u32 = 0u;
override WG: u32 = 256u;

const B_ADD: u32 = 0u;
const B_SUB: u32 = 1u;
const B_MUL: u32 = 2u;
const B_DIV: u32 = 3u;

struct Params {
    n: u32,
    rank: u32,
    alpha: f32,
    _pad: u32,
    // Output shape and the two inputs' strides, axis 0 first, padded to 8 axes.
    shape_lo: vec4<u32>, shape_hi: vec4<u32>,
    a_lo: vec4<u32>, a_hi: vec4<u32>,
    b_lo: vec4<u32>, b_hi: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;

// unary: y = f(x)
@group(0) @binding(1) var<storage, read> u_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> u_y: array<f32>;

@compute @workgroup_size(WG)
fn unary_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    if i >= p.n { return; }
    u_y[i] = unary(OP, u_x[i], p.alpha);
}

// unary_backward: dx = dy * f'(x)
@group(0) @binding(1) var<storage, read> ub_x: array<f32>;
@group(0) @binding(2) var<storage, read> ub_dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> ub_dx: array<f32>;

@compute @workgroup_size(WG)
fn unary_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    if i >= p.n { return; }
    ub_dx[i] = ub_dy[i] * unary_grad(OP, ub_x[i], p.alpha);
}

// binary: out = a (op) b with broadcasting
@group(0) @binding(1) var<storage, read> b_a: array<f32>;
@group(0) @binding(2) var<storage, read> b_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> b_out: array<f32>;

@compute @workgroup_size(WG)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_id(gid, groups, WG);
    if i >= p.n { return; }
    let at = strided_offsets(i, p.rank, p.shape_lo, p.shape_hi, p.a_lo, p.a_hi, p.b_lo, p.b_hi);
    let a = b_a[at.x];
    let b = b_b[at.y];
    var r: f32;
    switch OP {
        case B_SUB: { r = a - b; }
        case B_MUL: { r = a * b; }
        case B_DIV: { r = a / b; }
        default: { r = a + b; }
    }
    b_out[i] = r;
}
