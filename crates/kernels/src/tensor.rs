//! Device buffers and the pool they come from.
//!
//! A [`GpuTensor`] is a flat storage buffer of 32-bit words (f32 or u32; the kernel decides).
//! Shapes live with the caller. Dropping the last handle returns the buffer to the pool, so a
//! training loop that asks for the same sizes every step allocates nothing after the first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A pooled storage buffer holding `len` 32-bit elements. Cloning shares the buffer.
#[derive(Clone)]
pub struct GpuTensor {
    pooled: Arc<Pooled>,
    len: usize,
}

impl GpuTensor {
    pub(crate) fn new(buffer: wgpu::Buffer, len: usize, pool: Arc<BufferPool>) -> Self {
        GpuTensor { pooled: Arc::new(Pooled::new(buffer, pool)), len }
    }

    /// Number of 32-bit elements the caller asked for (the buffer may be larger).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The wgpu buffer behind it.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.pooled.buffer
    }

    /// Bytes the caller's elements occupy.
    pub fn bytes(&self) -> u64 {
        self.len as u64 * 4
    }

    /// The first `len` elements, sharing the buffer: how an executor hands one planned buffer
    /// to tensors of different sizes over a step.
    pub fn prefix(&self, len: usize) -> GpuTensor {
        assert!(len <= self.len, "prefix of {len} elements of a tensor of {}", self.len);
        GpuTensor { pooled: self.pooled.clone(), len }
    }
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor({} elements)", self.len)
    }
}

/// A buffer on loan from the pool; dropping it gives the buffer back.
pub(crate) struct Pooled {
    buffer: wgpu::Buffer,
    pool: Arc<BufferPool>,
}

impl Pooled {
    pub(crate) fn new(buffer: wgpu::Buffer, pool: Arc<BufferPool>) -> Self {
        Pooled { buffer, pool }
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(self.buffer.clone());
    }
}

/// Free buffers keyed by (size class, usage), and counters that tests and benchmarks read.
#[derive(Default)]
pub struct BufferPool {
    free: Mutex<HashMap<(u64, wgpu::BufferUsages), Vec<wgpu::Buffer>>>,
    created: AtomicU64,
    created_bytes: AtomicU64,
}

/// What the pool has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers created on the device since the context was opened.
    pub buffers_created: u64,
    /// Their total size in bytes.
    pub bytes_created: u64,
}

impl BufferPool {
    /// A free buffer of at least `bytes` with exactly `usage`, if one is waiting.
    pub(crate) fn take(&self, bytes: u64, usage: wgpu::BufferUsages) -> Option<wgpu::Buffer> {
        let key = (size_class(bytes), usage);
        self.free.lock().unwrap().get_mut(&key)?.pop()
    }

    pub(crate) fn record_created(&self, bytes: u64) {
        self.created.fetch_add(1, Ordering::Relaxed);
        self.created_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn give_back(&self, buffer: wgpu::Buffer) {
        let key = (buffer.size(), buffer.usage());
        self.free.lock().unwrap().entry(key).or_default().push(buffer);
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            buffers_created: self.created.load(Ordering::Relaxed),
            bytes_created: self.created_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Rounds a request up to a size class: 256-byte steps up to 4 KiB, then eight classes per
/// power of two, so reuse is likely and at most 1/8 of a buffer is wasted.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(4);
    if bytes <= 4096 {
        return bytes.div_ceil(256) * 256;
    }
    let step = bytes.next_power_of_two() / 16; // an eighth of the power of two below
    bytes.div_ceil(step) * step
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_the_request_and_waste_at_most_an_eighth() {
        for bytes in [1u64, 4, 255, 256, 257, 4096, 4097, 65_536, 1_000_003, 123_456_789] {
            let class = size_class(bytes);
            assert!(class >= bytes, "{bytes} -> {class}");
            assert!(class.is_multiple_of(4));
            if bytes > 4096 {
                assert!((class - bytes) * 8 <= class, "{bytes} -> {class}");
            }
        }
    }
}
