//! Timing prepared dispatches: GPU timestamps when the adapter has them, wall clock otherwise.

use std::time::Instant;

use crate::error::{KernelError, Result};
use crate::gpu::{Dispatch, Gpu};

/// How a duration was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Timestamps written by the GPU at the start and end of the compute pass.
    GpuTimestamps,
    /// Host time around submit and wait.
    WallClock,
}

/// Runs `dispatches` once to warm up (lavapipe compiles at first dispatch), then `reps` times,
/// and returns the seconds each repetition took.
pub fn time_dispatches(gpu: &Gpu, dispatches: &[&Dispatch], reps: usize) -> Result<(Clock, Vec<f64>)> {
    gpu.run(dispatches)?;
    let (mut clock, mut out) = (Clock::WallClock, Vec::with_capacity(reps));
    for _ in 0..reps {
        let (used, seconds) = run_timed(gpu, &[dispatches])?;
        clock = used;
        out.extend(seconds);
    }
    Ok((clock, out))
}

/// Runs `groups` in order and returns the seconds each took: one submission with timestamps
/// written around each group's compute pass where the adapter has them, else each group
/// submitted and waited for on its own, timed by the host.
pub fn run_timed(gpu: &Gpu, groups: &[&[&Dispatch]]) -> Result<(Clock, Vec<f64>)> {
    if gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        return Ok((Clock::GpuTimestamps, timed_by_gpu(gpu, groups)?));
    }
    let seconds = groups.iter().map(|group| timed_by_host(gpu, group)).collect::<Result<_>>()?;
    Ok((Clock::WallClock, seconds))
}

fn timed_by_host(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<f64> {
    let start = Instant::now();
    gpu.run(dispatches)?;
    Ok(start.elapsed().as_secs_f64())
}

/// Queries one query set holds (wgpu's limit).
const QUERIES_PER_SET: usize = 4096;

fn timed_by_gpu(gpu: &Gpu, groups: &[&[&Dispatch]]) -> Result<Vec<f64>> {
    let queries = 2 * groups.len();
    // Each timestamp is a u64: two 32-bit elements.
    let ticks = gpu.tensor(2 * queries)?;
    gpu.scoped("timing", || {
        let device = gpu.device();
        let sets: Vec<(wgpu::QuerySet, usize)> = (0..queries)
            .step_by(QUERIES_PER_SET)
            .map(|first| {
                let count = (queries - first).min(QUERIES_PER_SET);
                let descriptor = wgpu::QuerySetDescriptor {
                    label: Some("timing"),
                    ty: wgpu::QueryType::Timestamp,
                    count: count as u32,
                };
                (device.create_query_set(&descriptor), count)
            })
            .collect();
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timing"),
            size: 8 * queries as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        for (i, group) in groups.iter().enumerate() {
            let (set, at) = (&sets[2 * i / QUERIES_PER_SET].0, (2 * i % QUERIES_PER_SET) as u32);
            let writes = wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(at),
                end_of_pass_write_index: Some(at + 1),
            };
            gpu.record(&mut encoder, group, Some(writes));
        }
        for (k, (set, count)) in sets.iter().enumerate() {
            encoder.resolve_query_set(set, 0..*count as u32, &resolve, (8 * k * QUERIES_PER_SET) as u64);
        }
        encoder.copy_buffer_to_buffer(&resolve, 0, ticks.buffer(), 0, 8 * queries as u64);
        gpu.submit(encoder);
    })?;
    let ticks: Vec<u64> = gpu.read::<u32>(&ticks)?.chunks(2).map(|w| w[0] as u64 | (w[1] as u64) << 32).collect();
    let period = gpu.queue().get_timestamp_period() as f64;
    (ticks.chunks(2))
        .map(|pair| {
            let ns = pair[1].checked_sub(pair[0]).ok_or_else(|| KernelError::Readback {
                op: "timestamps",
                detail: format!("end {} before start {}", pair[1], pair[0]),
            })?;
            Ok(ns as f64 * period * 1e-9)
        })
        .collect()
}
