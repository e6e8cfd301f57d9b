//! The CPU executor allocates no tensor buffer after a run is prepared: every tensor of a
//! training step (about 30 of them over 4 KiB for the reference CNN) lives in buffers planned
//! once. What a step still allocates is the gemm crate's packing buffers, one per product at
//! most, every one freed before the step ends: at batch 16 the convolutions' 80 products
//! (per image, the second's forward, weight and input gradient, the first's forward and
//! weight gradient) and the dense layers' 6. Which of them pack depends on gemm's kernel for
//! the CPU: 50 a step on a Zen 4 (AVX2), 83 on a Sapphire Rapids (AVX-512). A tensor allocated
//! per step would add one per node and image, and one kept would grow the live bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use graph::{CpuExecutor, Feed, Supervised, Trainer, Training};

/// Counts allocations of 4 KiB or more, and the bytes of them still held.
struct Counting;

static LARGE: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= 4096 {
            LARGE.fetch_add(1, Ordering::SeqCst);
            LIVE.fetch_add(layout.size(), Ordering::SeqCst);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= 4096 {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        }
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
    // The gemm crate keeps a packing slab the size of L2 (1 MiB on Zen 4, 2 MiB on Sapphire
    // Rapids) per thread, made the first time that thread packs; which threads pack in a
    // step is rayon's choice (a loaded machine can leave a thread idle for several steps). So
    // warm up until the live bytes hold for three steps in a row, which a step that kept a
    // tensor would never let them do.
    let (mut live, mut held) = (LIVE.load(Ordering::SeqCst), 0);
    for _ in 0..20 {
        trainer.train_step(&feed).unwrap();
        let now = LIVE.load(Ordering::SeqCst);
        held = if now == live { held + 1 } else { 0 };
        live = now;
        if held == 3 {
            break;
        }
    }
    assert_eq!(held, 3, "the live bytes grew through 20 steps: a step keeps memory it allocated");
    let mut counts = Vec::new();
    for _ in 0..3 {
        let before = LARGE.load(Ordering::SeqCst);
        trainer.train_step(&feed).unwrap();
        counts.push(LARGE.load(Ordering::SeqCst) - before);
        assert_eq!(LIVE.load(Ordering::SeqCst), live, "a step kept memory it allocated");
    }
    // gemm's packing: at most one buffer per product, 5 per image and 6 for the dense layers.
    assert!(
        counts.iter().all(|&n| n == counts[0] && n <= 5 * 16 + 6),
        "allocations of 4 KiB or more per step: {counts:?}"
    );
}
