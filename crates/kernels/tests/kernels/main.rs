//! Every kernel against its CPU reference on seeded random inputs, at sizes that are not
//! multiples of any tile, with outputs poisoned before dispatch; backward kernels also against
//! finite differences of the forward reference.

mod attention;
mod common;
mod context;
mod conv;
mod dropout;
mod elementwise;
mod embedding;
mod layout;
mod matmul;
mod norm;
mod optimizer;
mod pool;
mod recurrent;
mod softmax;

/// Every test of this binary again on wgpu's GL backend, in parallel: where wgpu goes without
/// a Vulkan driver, and where several threads share one context.
#[test]
fn every_kernel_test_passes_on_the_gl_backend_too() {
    kernels::rerun_on_gl("every_kernel_test_passes_on_the_gl_backend_too");
}
