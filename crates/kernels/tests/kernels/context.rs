//! The GPU context itself: errors come back as values, and the pool stops allocating.

use crate::common::*;
use kernels::{Access, Kernel, KernelError, Shader, Unary, elementwise};

static BROKEN: Shader = Shader {
    name: "broken",
    source: "@compute @workgroup_size(1) fn main() { let target = 1u; }", // reserved word
    generated: None,
};
static BROKEN_KERNEL: Kernel = Kernel { shader: &BROKEN, entry: "main", bindings: &[Access::ReadWrite] };

gpu_test!(a_shader_that_fails_validation_is_an_error_not_a_panic, |gpu| {
    let t = upload(gpu, &[0.0]);
    match gpu.dispatch(&BROKEN_KERNEL, &[], &[0u32; 4], &[&t], [1, 1, 1]) {
        Err(KernelError::Validation { op, detail }) => {
            assert_eq!(op, "broken");
            assert!(detail.contains("target"), "{detail}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an invalid shader compiled"),
    }
    // The device is still usable afterwards.
    let (x, y) = (upload(gpu, &[-1.0, 2.0]), poisoned(gpu, 2));
    run(gpu, &[&elementwise::unary(gpu, Unary::Relu, &x, &y, 2).unwrap()]);
    assert_eq!(read(gpu, &y), vec![0.0, 2.0]);
});

gpu_test!(a_tensor_beyond_the_adapter_limits_is_an_error, |gpu| {
    let too_many = (gpu.limits().max_storage_buffer_binding_size / 4 + 1) as usize;
    let err = gpu.tensor(too_many).unwrap_err();
    assert!(matches!(err, KernelError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("exceed the adapter's limit"), "{err}");
});

gpu_test!(repeated_steps_allocate_nothing_after_the_first, |shared| {
    // A device of its own, so that tests running in parallel do not touch its pool.
    let _ = shared;
    let gpu = &kernels::Gpu::open().unwrap();
    // One "step": fresh tensors of the same sizes, a dispatch, a read-back. After the first,
    // the pool hands back the same buffers every time.
    let step = || {
        let (x, y) = (upload(gpu, &[1.0; 1000]), gpu.tensor(1000).unwrap());
        run(gpu, &[&elementwise::unary(gpu, Unary::Exp, &x, &y, 1000).unwrap()]);
        read(gpu, &y)
    };
    step();
    let after_first = gpu.pool_stats();
    // x, y, the parameter block and the read-back buffer
    assert!(after_first.buffers_created >= 4, "{after_first:?}");
    for _ in 0..5 {
        step();
    }
    assert_eq!(gpu.pool_stats(), after_first, "buffers were created after the first step");
});

gpu_test!(a_lost_device_is_an_error_with_advice_never_a_panic, |shared| {
    // A device of its own: this one is destroyed.
    let _ = shared;
    let gpu = &kernels::Gpu::open().unwrap();
    let (x, y) = (upload(gpu, &[-1.0, 2.0]), gpu.tensor(2).unwrap());
    let relu = elementwise::unary(gpu, Unary::Relu, &x, &y, 2).unwrap();
    gpu.device().destroy();
    let lost = |result: kernels::Result<()>| match result {
        Err(e @ KernelError::DeviceLost { .. }) => {
            let message = e.to_string();
            assert!(message.contains("--device cpu") && message.contains("Destroyed"), "{message}");
        }
        other => panic!("not a lost device: {other:?}"),
    };
    lost(gpu.run(&[&relu]));
    lost(gpu.read::<f32>(&y).map(drop));
    lost(gpu.tensor(1 << 20).map(drop));
    lost(gpu.dispatch(&BROKEN_KERNEL, &[], &[0u32; 4], &[&x], [1, 1, 1]).map(drop));
});
