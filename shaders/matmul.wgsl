// Batched strided matrix product with a fused epilogue:
//   C[z] = act(alpha * op(A)[z] . op(B)[z] + bias) + beta * C[z]
// Operands are addressed through (offset, batch stride, row stride, column stride), so
// transposes, sub-matrices (a time step of a [B, T, F] tensor) and broadcast batches (stride 0)
// need no copies. beta = 0 never reads C, so an uninitialised C is fine.
//
// Two tilings of the same product, chosen per adapter class in `kernels::matmul`:
// - matmul_registers: each invocation accumulates a 16 x 16 block in registers straight from
//   memory, no workgroup memory and no barriers (what a CPU rasteriser like lavapipe wants).
// - matmul_shared: a workgroup stages BK-deep slices of A and B in workgroup memory and each
//   invocation accumulates TM x TN outputs spread across the block (what a GPU wants).
// Every output element is written by exactly one invocation; edges are bounds-checked.

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
override TM: u32 = 4u;        // rows per invocation (matmul_shared), <= MAX_T
override TN: u32 = 4u;        // columns per invocation (matmul_shared), <= MAX_T
override BK: u32 = 8u;        // depth of one staged slice (matmul_shared)
override A_TILE: u32 = 512u;  // BK * WG_Y * TM
override B_TILE: u32 = 512u;  // BK * WG_X * TN
override ACT: u32 = 0u;       // unary op code of the epilogue (activation.wgsl)

const MAX_T: u32 = 16u;
const BIAS_NONE: u32 = 0u;
const BIAS_PER_COLUMN: u32 = 1u;
const BIAS_PER_ROW: u32 = 2u;

struct Params {
    batch: u32, m: u32, n: u32, k: u32,
    a_off: u32, a_bs: u32, a_rs: u32, a_cs: u32,
    b_off: u32, b_bs: u32, b_rs: u32, b_cs: u32,
    c_off: u32, c_bs: u32, c_rs: u32, bias_mode: u32,
    alpha: f32, beta: f32, act_alpha: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

fn store(z: u32, row: u32, col: u32, acc: f32) {
    if row >= p.m || col >= p.n { return; }
    var v = p.alpha * acc;
    if p.bias_mode == BIAS_PER_COLUMN { v += bias[col]; }
    if p.bias_mode == BIAS_PER_ROW { v += bias[row]; }
    v = unary(ACT, v, p.act_alpha);
    let at = p.c_off + z * p.c_bs + row * p.c_rs + col;
    if p.beta != 0.0 { v += p.beta * c[at]; }
    c[at] = v;
}

// Outer product a bᵀ as a column-major matrix: column j is a * b[j].
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a * b.x, a * b.y, a * b.z, a * b.w);
}

// 16 x 16 outputs per invocation in sixteen mat4x4 accumulators: named values, not an indexed
// array, so the compiler keeps them in registers (an indexed private array lands in scratch
// memory on lavapipe and runs ~20x slower). On lavapipe every storage load costs about as much
// as 100 FMAs, so the block is as large as registers allow: 32 loads feed 256 FMAs per k.
@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_registers(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 16u;
    let col0 = gid.x * 16u;
    let z = gid.z;
    if row0 >= p.m || col0 >= p.n { return; }
    // Clamp edge rows/columns onto the last valid one: loads stay branch-free and in bounds,
    // and `store` drops the duplicates.
    let a_base = p.a_off + z * p.a_bs;
    let b_base = p.b_off + z * p.b_bs;
    let last_row = p.m - 1u;
    let last_col = p.n - 1u;
    let ra0 = vec4<u32>(min(row0, last_row), min(row0 + 1u, last_row), min(row0 + 2u, last_row), min(row0 + 3u, last_row)) * p.a_rs + a_base;
    let ra1 = vec4<u32>(min(row0 + 4u, last_row), min(row0 + 5u, last_row), min(row0 + 6u, last_row), min(row0 + 7u, last_row)) * p.a_rs + a_base;
    let ra2 = vec4<u32>(min(row0 + 8u, last_row), min(row0 + 9u, last_row), min(row0 + 10u, last_row), min(row0 + 11u, last_row)) * p.a_rs + a_base;
    let ra3 = vec4<u32>(min(row0 + 12u, last_row), min(row0 + 13u, last_row), min(row0 + 14u, last_row), min(row0 + 15u, last_row)) * p.a_rs + a_base;
    let cb0 = vec4<u32>(min(col0, last_col), min(col0 + 1u, last_col), min(col0 + 2u, last_col), min(col0 + 3u, last_col)) * p.b_cs + b_base;
    let cb1 = vec4<u32>(min(col0 + 4u, last_col), min(col0 + 5u, last_col), min(col0 + 6u, last_col), min(col0 + 7u, last_col)) * p.b_cs + b_base;
    let cb2 = vec4<u32>(min(col0 + 8u, last_col), min(col0 + 9u, last_col), min(col0 + 10u, last_col), min(col0 + 11u, last_col)) * p.b_cs + b_base;
    let cb3 = vec4<u32>(min(col0 + 12u, last_col), min(col0 + 13u, last_col), min(col0 + 14u, last_col), min(col0 + 15u, last_col)) * p.b_cs + b_base;
    var c00 = mat4x4<f32>();
    var c01 = mat4x4<f32>();
    var c02 = mat4x4<f32>();
    var c03 = mat4x4<f32>();
    var c10 = mat4x4<f32>();
    var c11 = mat4x4<f32>();
    var c12 = mat4x4<f32>();
    var c13 = mat4x4<f32>();
    var c20 = mat4x4<f32>();
    var c21 = mat4x4<f32>();
    var c22 = mat4x4<f32>();
    var c23 = mat4x4<f32>();
    var c30 = mat4x4<f32>();
    var c31 = mat4x4<f32>();
    var c32 = mat4x4<f32>();
    var c33 = mat4x4<f32>();
    for (var kk = 0u; kk < p.k; kk++) {
        let ak = kk * p.a_cs;
        let bk = kk * p.b_rs;
        let a0 = vec4<f32>(a[ra0.x + ak], a[ra0.y + ak], a[ra0.z + ak], a[ra0.w + ak]);
        let a1 = vec4<f32>(a[ra1.x + ak], a[ra1.y + ak], a[ra1.z + ak], a[ra1.w + ak]);
        let a2 = vec4<f32>(a[ra2.x + ak], a[ra2.y + ak], a[ra2.z + ak], a[ra2.w + ak]);
        let a3 = vec4<f32>(a[ra3.x + ak], a[ra3.y + ak], a[ra3.z + ak], a[ra3.w + ak]);
        let b0 = vec4<f32>(b[cb0.x + bk], b[cb0.y + bk], b[cb0.z + bk], b[cb0.w + bk]);
        let b1 = vec4<f32>(b[cb1.x + bk], b[cb1.y + bk], b[cb1.z + bk], b[cb1.w + bk]);
        let b2 = vec4<f32>(b[cb2.x + bk], b[cb2.y + bk], b[cb2.z + bk], b[cb2.w + bk]);
        let b3 = vec4<f32>(b[cb3.x + bk], b[cb3.y + bk], b[cb3.z + bk], b[cb3.w + bk]);
        c00 += outer(a0, b0); c01 += outer(a0, b1); c02 += outer(a0, b2); c03 += outer(a0, b3);
        c10 += outer(a1, b0); c11 += outer(a1, b1); c12 += outer(a1, b2); c13 += outer(a1, b3);
        c20 += outer(a2, b0); c21 += outer(a2, b1); c22 += outer(a2, b2); c23 += outer(a2, b3);
        c30 += outer(a3, b0); c31 += outer(a3, b1); c32 += outer(a3, b2); c33 += outer(a3, b3);
    }
    store_block(z, row0 + 0u, col0 + 0u, c00);
    store_block(z, row0 + 0u, col0 + 4u, c01);
    store_block(z, row0 + 0u, col0 + 8u, c02);
    store_block(z, row0 + 0u, col0 + 12u, c03);
    store_block(z, row0 + 4u, col0 + 0u, c10);
    store_block(z, row0 + 4u, col0 + 4u, c11);
    store_block(z, row0 + 4u, col0 + 8u, c12);
    store_block(z, row0 + 4u, col0 + 12u, c13);
    store_block(z, row0 + 8u, col0 + 0u, c20);
    store_block(z, row0 + 8u, col0 + 4u, c21);
    store_block(z, row0 + 8u, col0 + 8u, c22);
    store_block(z, row0 + 8u, col0 + 12u, c23);
    store_block(z, row0 + 12u, col0 + 0u, c30);
    store_block(z, row0 + 12u, col0 + 4u, c31);
    store_block(z, row0 + 12u, col0 + 8u, c32);
    store_block(z, row0 + 12u, col0 + 12u, c33);
}

// Stores a 4 x 4 block held column-major (column j, row i at acc[j][i]).
fn store_block(z: u32, row: u32, col: u32, acc: mat4x4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        for (var i = 0u; i < 4u; i++) {
            store(z, row + i, col + j, acc[j][i]);
        }
    }
}

var<workgroup> a_tile: array<f32, A_TILE>; // [BK][BM], BM = WG_Y * TM
var<workgroup> b_tile: array<f32, B_TILE>; // [BK][BN], BN = WG_X * TN

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_shared(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let bm = WG_Y * TM;
    let bn = WG_X * TN;
    let threads = WG_X * WG_Y;
    let row_base = wid.y * bm;
    let col_base = wid.x * bn;
    let z = wid.z;
    let a_base = p.a_off + z * p.a_bs;
    let b_base = p.b_off + z * p.b_bs;
    var acc: array<f32, 256>;
    var av: array<f32, MAX_T>;
    var bv: array<f32, MAX_T>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // Consecutive invocations read consecutive k of A and consecutive columns of B, which
        // is contiguous memory for the common row-major layouts.
        for (var e = li; e < BK * bm; e += threads) {
            let kk = e % BK;
            let r = e / BK;
            var v = 0.0;
            if row_base + r < p.m && k0 + kk < p.k {
                v = a[a_base + (row_base + r) * p.a_rs + (k0 + kk) * p.a_cs];
            }
            a_tile[kk * bm + r] = v;
        }
        for (var e = li; e < BK * bn; e += threads) {
            let col = e % bn;
            let kk = e / bn;
            var v = 0.0;
            if col_base + col < p.n && k0 + kk < p.k {
                v = b[b_base + (k0 + kk) * p.b_rs + (col_base + col) * p.b_cs];
            }
            b_tile[kk * bn + col] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            // Invocation (x, y) owns rows y + i * WG_Y and columns x + j * WG_X: neighbouring
            // invocations read neighbouring words, so workgroup memory has no bank conflicts.
            for (var i = 0u; i < TM; i++) { av[i] = a_tile[kk * bm + lid.y + i * WG_Y]; }
            for (var j = 0u; j < TN; j++) { bv[j] = b_tile[kk * bn + lid.x + j * WG_X]; }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * MAX_T + j] = fma(av[i], bv[j], acc[i * MAX_T + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
            store(z, row_base + lid.y + i * WG_Y, col_base + lid.x + j * WG_X, acc[i * MAX_T + j]);
        }
    }
}
