// Convolution by im2col. The column matrix is [C*KH*KW, N*OH*OW]: row (c, i, j) holds input
// pixel (c, oy*SH - PH + i*DH, ox*SW - PW + j*DW) of image n at column n*OH*OW + oy*OW + ox.
// With it, forward is W[OC, C*KH*KW] . col, the weight gradient is dY' . colᵀ and the input
// gradient is col2im(Wᵀ . dY'), where dY' is dY permuted to [OC, N*OH*OW].
// im2col writes each column element once; col2im gathers: each input pixel sums the column
// entries that read it, so it needs no atomics.

override WG: u32 = 256u;

struct Params {
    n: u32, c: u32, h: u32, w: u32,
    kh: u32, kw: u32, sh: u32, sw: u32,
    ph: u32, pw: u32, dh: u32, dw: u32,
    oh: u32, ow: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    let cols = p.n * p.oh * p.ow;
    if e >= p.c * p.kh * p.kw * cols { return; }
    let row = e / cols;
    let col = e % cols;
    let j = row % p.kw;
    let i = (row / p.kw) % p.kh;
    let c = row / (p.kw * p.kh);
    let ox = col % p.ow;
    let oy = (col / p.ow) % p.oh;
    let n = col / (p.ow * p.oh);
    let y = i32(oy * p.sh + i * p.dh) - i32(p.ph);
    let x = i32(ox * p.sw + j * p.dw) - i32(p.pw);
    var v = 0.0;
    if y >= 0 && y < i32(p.h) && x >= 0 && x < i32(p.w) {
        v = src[((n * p.c + c) * p.h + u32(y)) * p.w + u32(x)];
    }
    dst[e] = v;
}

@compute @workgroup_size(WG)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = linear_id(gid, groups, WG);
    if e >= p.n * p.c * p.h * p.w { return; }
    let x = e % p.w;
    let y = (e / p.w) % p.h;
    let c = (e / (p.w * p.h)) % p.c;
    let n = e / (p.w * p.h * p.c);
    let cols = p.n * p.oh * p.ow;
    var acc = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        let ty = i32(y + p.ph) - i32(i * p.dh);
        if ty < 0 || ty % i32(p.sh) != 0 { continue; }
        let oy = u32(ty) / p.sh;
        if oy >= p.oh { continue; }
        for (var j = 0u; j < p.kw; j++) {
            let tx = i32(x + p.pw) - i32(j * p.dw);
            if tx < 0 || tx % i32(p.sw) != 0 { continue; }
            let ox = u32(tx) / p.sw;
            if ox >= p.ow { continue; }
            let row = (c * p.kh + i) * p.kw + j;
            acc += src[row * cols + (n * p.oh + oy) * p.ow + ox];
        }
    }
    dst[e] = acc;
}
