//! The CPU executor allocates no tensor buffer after a run is prepared. A training step of the
//! reference CNN after the first makes at most five allocations of 4 KiB or more, all inside
//! the gemm crate (its packing buffers for the larger products: with its AVX-512 kernels
//! 204800, 8448, 619520, 73728 and 131072 bytes at batch 16, with its AVX2 ones four), against
//! 518 before the pooling references stopped allocating per plane; every
//! tensor of the step (about 30 of them over 4 KiB) lives in buffers planned once. Each node
//! still builds a few small vectors of slice references per run; those stay under 4 KiB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use graph::{CpuExecutor, Feed, Supervised, Trainer, Training};

/// Counts allocations of 4 KiB or more.
struct Counting;

static LARGE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= 4096 {
            LARGE.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn training_steps_after_the_first_allocate_no_tensor() {
    let built = graph::zoo::mnist_cnn(0, 16).unwrap();
    let model = Supervised::classifier(built.model, built.input, built.logits, 0.0).unwrap();
    let mut trainer = Trainer::new(CpuExecutor::new(), &model, Training::adam(1e-3)).unwrap();
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), (0..16 * 784).map(|i| (i % 7) as f32 / 7.0).collect());
    feed.labels.insert("y".into(), (0..16).map(|i| i % 10).collect());
    trainer.train_step(&feed).unwrap();
    let before = LARGE.load(Ordering::SeqCst);
    for _ in 0..3 {
        trainer.train_step(&feed).unwrap();
    }
    let per_step = (LARGE.load(Ordering::SeqCst) - before) / 3;
    assert!(per_step <= 5, "{per_step} allocations of 4 KiB or more per step after the first (gemm's packing: 5)");
}
