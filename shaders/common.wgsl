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
