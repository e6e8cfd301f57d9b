//! The GPU context: picks an adapter, opens the device with what it offers, caches pipelines,
//! hands out pooled buffers, and runs prepared [`Dispatch`]es.
//!
//! Kernels are prepared once ([`Gpu::dispatch`] builds pipeline, bind group and parameter
//! buffer) and then recorded as often as needed ([`Gpu::run`]); nothing is compiled or bound
//! per call. Every wgpu call that can fail on user-sized input runs inside error scopes, so
//! validation errors and out-of-memory come back as [`KernelError`] values, never as panics.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytemuck::Pod;

use crate::error::{KernelError, Result};
use crate::tensor::{BufferPool, GpuTensor, PoolStats, Pooled, size_class};

/// What kind of processor runs the kernels; tile sizes are chosen per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterClass {
    /// A real GPU: shared-memory tiles, many small invocations.
    Gpu,
    /// A software rasteriser on the CPU (lavapipe, WARP, SwiftShader): big per-invocation
    /// register tiles and no workgroup memory, since barriers are expensive there.
    Cpu,
}

/// The adapter in use, as reported to the user.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// The adapter's name.
    pub name: String,
    /// Vulkan, Metal, DX12 or GL.
    pub backend: wgpu::Backend,
    /// A discrete or integrated GPU, a virtual one, or a CPU rasteriser.
    pub device_type: wgpu::DeviceType,
    /// The driver's name.
    pub driver: String,
    /// The driver's version, as it says it.
    pub driver_info: String,
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        AdapterSummary {
            name: info.name,
            backend: info.backend,
            device_type: info.device_type,
            driver: info.driver,
            driver_info: info.driver_info,
        }
    }

    /// A hardware GPU or a CPU rasteriser.
    pub fn class(&self) -> AdapterClass {
        match self.device_type {
            wgpu::DeviceType::Cpu => AdapterClass::Cpu,
            _ => AdapterClass::Gpu,
        }
    }
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?}, {:?}, driver: {} {})",
            self.name, self.backend, self.device_type, self.driver, self.driver_info
        )
    }
}

/// Whether a kernel only reads a storage binding or also writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// The kernel only reads it.
    Read,
    /// The kernel writes it (and may read it).
    ReadWrite,
}

/// Builds a [`Shader`] from `shaders/common.wgsl` followed by the named files of `shaders/`;
/// after `unary,` also `shaders/activation.wgsl` and the unary switches generated from the
/// table in `unary.rs`.
#[macro_export]
#[doc(hidden)]
macro_rules! shader {
    ($name:literal, unary, $($file:literal),+) => {
        $crate::Shader {
            name: $name,
            source: concat!(
                include_str!("../../../shaders/common.wgsl"),
                include_str!("../../../shaders/activation.wgsl"),
                $(include_str!(concat!("../../../shaders/", $file))),+
            ),
            generated: Some($crate::unary::wgsl),
        }
    };
    ($name:literal, $($file:literal),+) => {
        $crate::Shader {
            name: $name,
            source: concat!(
                include_str!("../../../shaders/common.wgsl"),
                $(include_str!(concat!("../../../shaders/", $file))),+
            ),
            generated: None,
        }
    };
}

/// One WGSL source file (a kernel family), with the shared helpers prepended.
#[derive(Debug)]
pub struct Shader {
    /// The family's name, for errors and timings.
    pub name: &'static str,
    /// The WGSL, with the shared helpers before it.
    pub source: &'static str,
    /// WGSL generated from a Rust table, appended to `source` (module-scope declarations may
    /// come in any order).
    pub generated: Option<fn() -> String>,
}

impl Shader {
    /// The WGSL the device compiles: the source and what is generated after it.
    pub fn full_source(&self) -> std::borrow::Cow<'static, str> {
        match self.generated {
            Some(generate) => format!("{}\n{}", self.source, generate()).into(),
            None => self.source.into(),
        }
    }
}

/// One entry point of a shader and its binding signature. Binding 0 is always the kernel's
/// uniform parameter block; bindings 1.. are the storage buffers listed in `bindings`.
#[derive(Debug)]
pub struct Kernel {
    /// The shader it is in.
    pub shader: &'static Shader,
    /// The entry point's name.
    pub entry: &'static str,
    /// Its storage bindings, from binding 1.
    pub bindings: &'static [Access],
}

/// A kernel ready to record: pipeline, bound buffers, parameters and grid. Holding a dispatch
/// keeps its buffers out of the pool.
pub struct Dispatch {
    label: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    params: Pooled,
    workgroups: [u32; 3],
    _tensors: Vec<GpuTensor>,
}

impl Dispatch {
    /// "shader/entry", for errors and timings.
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// Replaces the parameter block (a learning rate, a step counter, an RNG seed); takes effect
    /// at the next [`Gpu::run`].
    pub fn set_params<P: Pod>(&self, gpu: &Gpu, params: &P) {
        let _one_caller = gpu.exclusive();
        gpu.queue.write_buffer(self.params.buffer(), 0, &padded(params));
    }
}

/// A host-readable copy of a small tensor, which [`Gpu::run_with_copies`] fills in the run's
/// own submission: what a training step reads back every time (its loss and metrics) then
/// costs no submission of its own.
pub struct Staged {
    staging: Pooled,
    bytes: u64,
}

/// The bind group layout of a binding signature and the pipeline layout around it.
type Layouts = (wgpu::BindGroupLayout, wgpu::PipelineLayout);

type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// The device, its queue, and the caches built on them.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    summary: AdapterSummary,
    features: wgpu::Features,
    limits: wgpu::Limits,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    layouts: Mutex<HashMap<&'static [Access], Arc<Layouts>>>,
    pool: Arc<BufferPool>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Why the device was lost, once it is: every later call fails with that.
    lost: Arc<Mutex<Option<String>>>,
    /// Where the backend takes one caller at a time, held around every call into the device.
    serial: Option<Mutex<()>>,
    /// Submissions to the queue so far.
    submissions: AtomicU64,
}

/// Optional features we use when the adapter has them.
const WANTED_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::SUBGROUP_BARRIER)
    .union(wgpu::Features::SHADER_F16);

/// All adapters wgpu can see, best first.
pub fn list_adapters() -> Vec<AdapterSummary> {
    enumerate_adapters().1.iter().map(AdapterSummary::of).collect()
}

fn enumerate_adapters() -> (wgpu::Backends, Vec<wgpu::Adapter>) {
    let from_env = wgpu::Backends::from_env();
    // The GL backend starts threads of its own just to enumerate; only look there when the
    // primary backends have nothing (or the user asked for it through WGPU_BACKEND).
    let mut tried = from_env.unwrap_or(wgpu::Backends::PRIMARY);
    let mut adapters = adapters_on(tried);
    if adapters.is_empty() && from_env.is_none() {
        tried |= wgpu::Backends::GL;
        adapters = adapters_on(wgpu::Backends::GL);
    }
    adapters.sort_by_key(|a| rank(&a.get_info()));
    (tried, adapters)
}

fn adapters_on(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.enumerate_adapters(backends))
}

/// Lower is better: discrete > integrated > virtual > CPU, then native APIs before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (device, backend)
}

fn matches(summary: &AdapterSummary, wanted: &str) -> bool {
    let wanted = wanted.to_lowercase();
    summary.name.to_lowercase().contains(&wanted) || format!("{:?}", summary.backend).to_lowercase().contains(&wanted)
}

impl Gpu {
    /// Opens the best adapter, or the first one whose name or backend contains
    /// `DLCLI_ADAPTER` (case-insensitive) when that variable is set.
    pub fn open() -> Result<Gpu> {
        let wanted = std::env::var("DLCLI_ADAPTER").ok().filter(|s| !s.is_empty());
        Self::open_matching(wanted.as_deref())
    }

    /// The adapter whose description contains `wanted` (any adapter's when None), the best first, opened.
    pub fn open_matching(wanted: Option<&str>) -> Result<Gpu> {
        let (tried, adapters) = enumerate_adapters();
        if adapters.is_empty() {
            return Err(KernelError::NoAdapter { backends: format!("{tried:?}") });
        }
        let chosen = match wanted {
            None => &adapters[0],
            Some(wanted) => adapters.iter().find(|a| matches(&AdapterSummary::of(a), wanted)).ok_or_else(|| {
                KernelError::AdapterNotFound {
                    wanted: wanted.to_string(),
                    available: adapters
                        .iter()
                        .map(|a| AdapterSummary::of(a).to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            })?,
        };
        Self::open_adapter(chosen)
    }

    fn open_adapter(adapter: &wgpu::Adapter) -> Result<Gpu> {
        let summary = AdapterSummary::of(adapter);
        let features = adapter.features() & WANTED_FEATURES;
        // Everything the adapter allows: big storage bindings and workgroup memory matter.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("dlcli"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|error| KernelError::RequestDevice { adapter: summary.to_string(), error })?;
        // The default handler panics; keep the message and report it from the next call.
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(e.to_string());
        }));
        let lost = Arc::new(Mutex::new(None));
        let record = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            *record.lock().unwrap() = Some(format!("{reason:?}: {message}"));
        });
        Ok(Gpu {
            device,
            queue,
            features,
            limits,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            layouts: Mutex::default(),
            pool: Arc::default(),
            uncaptured,
            lost,
            serial: serialised(summary.backend).then(Mutex::default),
            submissions: AtomicU64::new(0),
            summary,
        })
    }

    /// The adapter in use.
    pub fn summary(&self) -> &AdapterSummary {
        &self.summary
    }

    /// A hardware GPU or a CPU rasteriser.
    pub fn class(&self) -> AdapterClass {
        self.summary.class()
    }

    /// The optional features the device was opened with.
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// The device's limits (the adapter's own, not wgpu's defaults).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The wgpu device, for code that prepares its own pipelines.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The device's queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Loop iterations one invocation may run in total, where the driver caps them. llvmpipe's
    /// shader compiler (lavapipe) cuts every loop short once an invocation has run 65,535
    /// iterations across all its loops (measured on Mesa 22.3: a second loop then runs once),
    /// silently. Loops the compiler fully unrolls do not count.
    pub fn loop_budget(&self) -> Option<u64> {
        match self.class() {
            AdapterClass::Cpu => Some(65_535),
            AdapterClass::Gpu => None,
        }
    }

    /// Fails with a clear error when `iterations` loop iterations per invocation exceed the
    /// adapter's [`loop budget`](Self::loop_budget), instead of computing garbage.
    pub(crate) fn check_loop_budget(
        &self,
        op: &'static str,
        iterations: u64,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        match self.loop_budget() {
            Some(budget) if iterations > budget => {
                Err(KernelError::LoopBudget { op, iterations, budget, what: what() })
            }
            _ => Ok(()),
        }
    }

    /// How the buffer pool has served allocations so far.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// The right to call into the device, on a backend that takes one caller at a time: wgpu's
    /// GL backend has one context, which each call locks, and a call that waits more than a
    /// few seconds for it (another thread's long kernel or shader compile) panics with "Could
    /// not lock adapter context". Callers wait here instead, as long as it takes. Not
    /// re-entrant: taken only around wgpu calls, never around a method that takes it.
    fn exclusive(&self) -> Option<MutexGuard<'_, ()>> {
        // A panic while held poisons nothing the lock protects (it guards no data).
        self.serial.as_ref().map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Runs `f` inside out-of-memory, validation and internal error scopes and turns the
    /// first error caught into a [`KernelError`] naming `op`. `f` has the device to itself
    /// where the backend needs that ([`Gpu::exclusive`]).
    pub(crate) fn scoped<T>(&self, op: &str, f: impl FnOnce() -> T) -> Result<T> {
        let _one_caller = self.exclusive();
        self.check_not_lost(op)?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = f();
        let errors =
            [pollster::block_on(internal.pop()), pollster::block_on(validation.pop()), pollster::block_on(oom.pop())];
        // A lost device fails what was asked of it with validation errors: say why instead.
        self.check_not_lost(op)?;
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(convert_error(op, e));
        }
        if let Some(e) = self.uncaptured.lock().unwrap().drain(..).next() {
            return Err(KernelError::Internal { op: op.to_string(), detail: e });
        }
        Ok(value)
    }

    fn check_not_lost(&self, op: &str) -> Result<()> {
        match self.lost.lock().unwrap().clone() {
            Some(detail) => Err(KernelError::DeviceLost { op: op.to_string(), detail }),
            None => Ok(()),
        }
    }

    // ----- buffers -------------------------------------------------------------------------

    fn raw_buffer(&self, op: &'static str, bytes: u64, usage: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
        if let Some(buffer) = self.pool.take(bytes, usage) {
            return Ok(buffer);
        }
        let size = size_class(bytes);
        let limit = self.limits.max_buffer_size;
        if size > limit {
            return Err(KernelError::TooLarge { op, what: "buffer", bytes, limit });
        }
        let buffer = self.scoped(op, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(op),
                size,
                usage,
                mapped_at_creation: false,
            })
        })?;
        self.pool.record_created(size);
        Ok(buffer)
    }

    /// A storage tensor of `len` 32-bit elements with unspecified contents.
    pub fn tensor(&self, len: usize) -> Result<GpuTensor> {
        let bytes = (len as u64 * 4).max(4);
        let limit = self.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(KernelError::TooLarge { op: "tensor", what: "storage binding", bytes, limit });
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let buffer = self.raw_buffer("tensor", bytes, usage)?;
        Ok(GpuTensor::new(buffer, len, self.pool.clone()))
    }

    /// A tensor holding a copy of `data` (f32 or u32).
    pub fn upload<T: Pod>(&self, data: &[T]) -> Result<GpuTensor> {
        assert_eq!(std::mem::size_of::<T>(), 4, "tensors hold 32-bit elements");
        let tensor = self.tensor(data.len())?;
        self.write(&tensor, data)?;
        Ok(tensor)
    }

    /// Overwrites the start of `tensor` with `data`.
    pub fn write<T: Pod>(&self, tensor: &GpuTensor, data: &[T]) -> Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() as u64 > tensor.bytes() {
            return Err(crate::error::shape_error(
                "write",
                format!("{} bytes into a tensor of {}", bytes.len(), tensor.bytes()),
            ));
        }
        if !bytes.is_empty() {
            let _one_caller = self.exclusive();
            self.queue.write_buffer(tensor.buffer(), 0, bytes);
        }
        Ok(())
    }

    /// Copies `tensor` back to the host, waiting for all submitted work.
    pub fn read<T: Pod>(&self, tensor: &GpuTensor) -> Result<Vec<T>> {
        let bytes = tensor.bytes();
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let staging = self.raw_buffer("readback", bytes, usage)?;
        self.scoped("readback", || {
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(tensor.buffer(), 0, &staging, 0, bytes);
            self.submit(encoder);
        })?;
        let out = self.mapped(&staging, bytes);
        self.pool.give_back(staging);
        out
    }

    /// A staging buffer for `tensor`, for [`Gpu::run_with_copies`] and [`Gpu::read_staged`].
    pub fn staged(&self, tensor: &GpuTensor) -> Result<Staged> {
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let bytes = tensor.bytes().max(4);
        Ok(Staged { staging: Pooled::new(self.raw_buffer("staging", bytes, usage)?, self.pool.clone()), bytes })
    }

    /// Bytes [`Gpu::run_with_copies`] copies into `staged`.
    pub fn staged_bytes(staged: &Staged) -> u64 {
        staged.bytes
    }

    /// What the last [`Gpu::run_with_copies`] copied into `staged`: no submission, the run
    /// having waited for its copy.
    pub fn read_staged<T: Pod>(&self, staged: &Staged) -> Result<Vec<T>> {
        self.mapped(staged.staging.buffer(), staged.bytes)
    }

    /// Submissions to the queue so far (a training step makes one).
    pub fn submissions(&self) -> u64 {
        self.submissions.load(Ordering::Relaxed)
    }

    pub(crate) fn submit(&self, encoder: wgpu::CommandEncoder) {
        self.submissions.fetch_add(1, Ordering::Relaxed);
        self.queue.submit([encoder.finish()]);
    }

    /// The first `bytes` of `staging` (MAP_READ), mapped, copied out and unmapped.
    fn mapped<T: Pod>(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<T>> {
        let slice = staging.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        self.scoped("readback", || {
            slice.map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            })
        })?;
        self.wait("readback")?;
        let readback_error = |detail: String| KernelError::Readback { op: "read", detail };
        rx.recv().map_err(|e| readback_error(e.to_string()))?.map_err(|e| readback_error(e.to_string()))?;
        let out = {
            let _one_caller = self.exclusive();
            let view = slice.get_mapped_range().map_err(|e| readback_error(e.to_string()))?;
            let out = bytemuck::cast_slice(&view).to_vec();
            drop(view);
            staging.unmap();
            out
        };
        Ok(out)
    }

    fn wait(&self, op: &'static str) -> Result<()> {
        let _one_caller = self.exclusive();
        let polled = self.device.poll(wgpu::PollType::wait_indefinitely());
        self.check_not_lost(op)?;
        polled.map(|_| ()).map_err(|e| KernelError::Internal { op: op.into(), detail: e.to_string() })
    }

    // ----- kernels ---------------------------------------------------------------------------

    fn module(&self, shader: &'static Shader) -> Result<wgpu::ShaderModule> {
        if let Some(m) = self.modules.lock().unwrap().get(shader.name) {
            return Ok(m.clone());
        }
        let module = self.scoped(shader.name, || {
            self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(shader.full_source()),
            })
        })?;
        self.modules.lock().unwrap().insert(shader.name, module.clone());
        Ok(module)
    }

    fn layout(&self, kernel: &Kernel) -> Arc<Layouts> {
        let mut layouts = self.layouts.lock().unwrap();
        let _one_caller = self.exclusive();
        layouts
            .entry(kernel.bindings)
            .or_insert_with(|| {
                let storage = |binding: u32, access: Access| wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: access == Access::Read },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                };
                let uniform = wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                };
                let entries: Vec<_> = std::iter::once(uniform)
                    .chain(kernel.bindings.iter().enumerate().map(|(i, &a)| storage(i as u32 + 1, a)))
                    .collect();
                let bind = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(kernel.entry),
                    entries: &entries,
                });
                let pipeline = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(kernel.entry),
                    bind_group_layouts: &[Some(&bind)],
                    immediate_size: 0,
                });
                Arc::new((bind, pipeline))
            })
            .clone()
    }

    /// The compiled pipeline for `kernel` with the given override constants (cached).
    fn pipeline(&self, kernel: &Kernel, constants: &[(&'static str, f64)]) -> Result<Arc<wgpu::ComputePipeline>> {
        let key: PipelineKey =
            (kernel.shader.name, kernel.entry, constants.iter().map(|&(k, v)| (k, v.to_bits())).collect());
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(kernel.shader)?;
        let layout = self.layout(kernel);
        let pipeline = self.scoped(kernel.entry, || {
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: Some(&layout.1),
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    // Every kernel initialises the workgroup memory it reads.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        })?;
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Prepares `kernel` over `tensors` (bindings 1..) with `params` (binding 0) and a grid of
    /// `workgroups`.
    pub fn dispatch<P: Pod>(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        params: &P,
        tensors: &[&GpuTensor],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        assert_eq!(tensors.len(), kernel.bindings.len(), "{}: binding count", kernel.entry);
        let max = self.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            return Err(KernelError::TooLarge {
                op: kernel.entry,
                what: "dispatch dimension (workgroups)",
                bytes: *workgroups.iter().max().unwrap() as u64,
                limit: max as u64,
            });
        }
        let pipeline = self.pipeline(kernel, constants)?;
        let layout = self.layout(kernel);
        let bytes = padded(params);
        let uniform = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let params = Pooled::new(self.raw_buffer(kernel.entry, bytes.len() as u64, uniform)?, self.pool.clone());
        self.scoped(kernel.entry, || self.queue.write_buffer(params.buffer(), 0, &bytes))?;
        let bind_group = self.scoped(kernel.entry, || {
            let entries: Vec<_> = std::iter::once(params.buffer().as_entire_binding())
                .chain(tensors.iter().map(|t| t.buffer().as_entire_binding()))
                .enumerate()
                .map(|(i, resource)| wgpu::BindGroupEntry { binding: i as u32, resource })
                .collect();
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.entry),
                layout: &layout.0,
                entries: &entries,
            })
        })?;
        Ok(Dispatch {
            label: kernel.entry,
            pipeline,
            bind_group,
            params,
            workgroups,
            _tensors: tensors.iter().map(|&t| t.clone()).collect(),
        })
    }

    /// Prepares a kernel that runs one invocation per element of a flat index space of `n`
    /// (workgroup size [`LINEAR_WG`], given to the shader as override `WG`).
    pub fn dispatch_linear<P: Pod>(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        params: &P,
        tensors: &[&GpuTensor],
        n: usize,
    ) -> Result<Dispatch> {
        let mut all = constants.to_vec();
        all.push(("WG", LINEAR_WG as f64));
        self.dispatch(kernel, &all, params, tensors, linear_grid(n, LINEAR_WG))
    }

    /// Records `dispatches` in order into one compute pass of `encoder`. wgpu inserts the
    /// barriers between dependent dispatches.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        dispatches: &[&Dispatch],
        timestamps: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) {
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("dlcli"), timestamp_writes: timestamps });
        for d in dispatches {
            let [x, y, z] = d.workgroups;
            if x == 0 || y == 0 || z == 0 {
                continue;
            }
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(x, y, z);
        }
    }

    /// Runs `dispatches` in order as one submission and waits for them.
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<()> {
        self.run_with_copies(dispatches, &[])
    }

    /// As [`Gpu::run`], copying each tensor of `copies` into its staging buffer after the
    /// dispatches, in the same submission.
    pub fn run_with_copies(&self, dispatches: &[&Dispatch], copies: &[(&GpuTensor, &Staged)]) -> Result<()> {
        let op = dispatches.first().map_or("run", |d| d.label);
        self.scoped(op, || {
            let mut encoder = self.device.create_command_encoder(&Default::default());
            self.record(&mut encoder, dispatches, None);
            for (tensor, staged) in copies {
                encoder.copy_buffer_to_buffer(tensor.buffer(), 0, staged.staging.buffer(), 0, staged.bytes);
            }
            self.submit(encoder);
        })?;
        self.wait(op)
    }
}

/// Whether `backend` takes one caller at a time (see [`Gpu::exclusive`]).
fn serialised(backend: wgpu::Backend) -> bool {
    backend == wgpu::Backend::Gl
}

fn convert_error(op: &str, e: wgpu::Error) -> KernelError {
    let op = op.to_string();
    match e {
        wgpu::Error::OutOfMemory { .. } => KernelError::OutOfMemory { op, detail: e.to_string() },
        wgpu::Error::Validation { description, .. } => KernelError::Validation { op, detail: description },
        wgpu::Error::Internal { description, .. } => KernelError::Internal { op, detail: description },
    }
}

/// The bytes of `params`, zero-padded to the 16-byte multiple a uniform block needs.
fn padded<P: Pod>(params: &P) -> Vec<u8> {
    let mut bytes = bytemuck::bytes_of(params).to_vec();
    bytes.resize(bytes.len().div_ceil(16).max(1) * 16, 0);
    bytes
}

/// Workgroup size of the kernels that index a flat range.
pub const LINEAR_WG: u32 = 256;

/// A 2-D grid of workgroups covering `n` invocations of `wg` threads each, for kernels that
/// index linearly: x stays within the 65,535 limit, y takes the rest. Shaders rebuild the
/// linear index as `gid.x + gid.y * num_workgroups.x * WG`.
pub fn linear_grid(n: usize, wg: u32) -> [u32; 3] {
    let groups = n.div_ceil(wg as usize).max(1) as u64;
    let x = groups.min(65_535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}
