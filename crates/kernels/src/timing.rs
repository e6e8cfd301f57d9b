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
    let timestamps = gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps {
        out.push(if timestamps { timed_by_gpu(gpu, dispatches)? } else { timed_by_host(gpu, dispatches)? });
    }
    Ok((if timestamps { Clock::GpuTimestamps } else { Clock::WallClock }, out))
}

fn timed_by_host(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<f64> {
    let start = Instant::now();
    gpu.run(dispatches)?;
    Ok(start.elapsed().as_secs_f64())
}

fn timed_by_gpu(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<f64> {
    let ticks = gpu.tensor(4)?;
    gpu.scoped("timing", || {
        let device = gpu.device();
        let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timing"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timing"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        gpu.record(
            &mut encoder,
            dispatches,
            Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            }),
        );
        encoder.resolve_query_set(&queries, 0..2, &resolve, 0);
        encoder.copy_buffer_to_buffer(&resolve, 0, ticks.buffer(), 0, 16);
        gpu.queue().submit([encoder.finish()]);
    })?;
    let ticks: Vec<u64> = gpu.read::<u32>(&ticks)?.chunks(2).map(|w| w[0] as u64 | (w[1] as u64) << 32).collect();
    let period = gpu.queue().get_timestamp_period() as f64;
    let ns = ticks[1].checked_sub(ticks[0]).ok_or_else(|| KernelError::Readback {
        op: "timestamps",
        detail: format!("end {} before start {}", ticks[1], ticks[0]),
    })?;
    Ok(ns as f64 * period * 1e-9)
}
