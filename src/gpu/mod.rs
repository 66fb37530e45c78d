//! The element-wise delta-pruning kernels of the delta module's CPU kernels as wgpu compute shaders
//! (`delta.wgsl`), bit-identical to the CPU. Uses the wgpu that eframe renders with, on whatever
//! adapter wgpu finds (a software one such as llvmpipe included).
//!
//! Tensors are streamed through fixed device buffers in chunks that respect the adapter's
//! buffer/binding limits and the 65535-workgroup dispatch limit; a chunk never crosses a multiple
//! of 2³² in the global element index, so the high index word (mixed on the CPU) is a uniform.
//!
//! Bit-identity rests on WGSL f32 add/sub/mul being correctly rounded, no FMA contraction (see
//! `no_fma` in the shader) and subnormals being kept. WGSL allows an implementation to flush
//! subnormals; llvmpipe keeps them, a hardware driver might not (irrelevant for real weights).

use std::sync::{mpsc, Mutex};

use anyhow::{anyhow, bail, ensure, Context, Result};
use eframe::egui_wgpu::wgpu;

use crate::counter_rng::{high_word_mix, DropThreshold, MaskKey};

/// Invocations per workgroup; must match `WG` in `delta.wgsl`.
const WG: u64 = 256;
/// Upper bound on elements per chunk (16 MiB per buffer): large enough to amortise a submit and
/// readback, small enough to keep the four device buffers modest on any adapter.
const MAX_CHUNK: u64 = 1 << 22;
/// Size of `Params` in `delta.wgsl`.
const PARAMS_BYTES: u64 = 48;

pub struct DeltaGpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    layout: wgpu::BindGroupLayout,
    drop_pipeline: wgpu::ComputePipeline,
    magnitude_pipeline: wgpu::ComputePipeline,
    params: wgpu::Buffer,
    /// Elements per chunk: the adapter's limits and `MAX_CHUNK` (lowered in tests to force splits).
    pub(crate) max_chunk: usize,
    /// Device buffers, grown on demand and kept between calls (the lock also serialises calls).
    buffers: Mutex<Option<Buffers>>,
}

struct Buffers {
    capacity: usize,
    base: wgpu::Buffer,
    finetuned: wgpu::Buffer,
    out: wgpu::Buffer,
    /// `out` is a storage buffer, which need not be mappable; results come back through this.
    readback: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// Per-call kernel arguments; the per-chunk ones (n, lo0, hi_mix) are added by `run_chunk`.
#[derive(Clone, Copy, Default)]
struct Args {
    key: (u32, u32),
    threshold: u32,
    scale: f32,
    min_abs: f32,
}

crate::named_enum! {
    "device";
    /// Where delta kernels run.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum DeviceChoice {
        /// A hardware GPU when wgpu finds one, else the CPU (software adapters are slower than
        /// the CPU kernels).
        Auto = "auto",
        /// The CPU kernels.
        Cpu = "cpu",
        /// Any wgpu adapter, software ones included.
        Gpu = "gpu",
    }
}

impl Default for DeviceChoice {
    fn default() -> Self {
        DeviceChoice::Auto
    }
}

impl DeviceChoice {
    /// The wgpu device to run on (`None`: the CPU).
    pub fn open(self) -> Result<Option<DeltaGpu>> {
        Ok(match self {
            DeviceChoice::Cpu => None,
            DeviceChoice::Gpu => {
                Some(DeltaGpu::new()?.ok_or_else(|| anyhow!("device gpu: wgpu finds no adapter"))?)
            }
            DeviceChoice::Auto => DeltaGpu::new().ok().flatten().filter(|g| !g.is_software()),
        })
    }
}

impl DeltaGpu {
    /// The first adapter wgpu finds (any backend, software adapters included, e.g. llvmpipe via
    /// GL); `Ok(None)` when there is none with compute shaders.
    pub fn new() -> Result<Option<DeltaGpu>> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let has_compute = |a: &wgpu::Adapter| {
            a.get_downlevel_capabilities()
                .flags
                .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        };
        // request_adapter ranks discrete > integrated > … > CPU; enumerate as a fallback in case
        // its pick (e.g. a GL adapter without compute) is unusable while another one is fine.
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        };
        let adapter = match pollster::block_on(instance.request_adapter(&options)) {
            Ok(a) if has_compute(&a) => Some(a),
            _ => pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
                .into_iter()
                .find(has_compute),
        };
        let Some(adapter) = adapter else {
            return Ok(None);
        };
        let info = adapter.get_info();
        // The adapter's own limits first (the largest buffers it allows); some drivers refuse
        // what they report, so fall back to the downlevel defaults (chunks follow the device).
        let request = |limits: wgpu::Limits| {
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("alignscope delta"),
                required_limits: limits,
                ..Default::default()
            }))
        };
        let (device, queue) = request(adapter.limits())
            .or_else(|_| request(wgpu::Limits::downlevel_defaults()))
            .with_context(|| format!("requesting a device on {}", info.name))?;
        // wgpu's default handler panics; every call below runs inside error scopes, so anything
        // that still lands here is reported rather than allowed to abort the program.
        device.on_uncaptured_error(std::sync::Arc::new(|e| {
            eprintln!("alignscope gpu: uncaptured wgpu error: {e}")
        }));

        let (layout, drop_pipeline, magnitude_pipeline, params) =
            checked(&device, "creating the delta compute pipelines", || {
                let module = device.create_shader_module(wgpu::include_wgsl!("delta.wgsl"));
                let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                };
                let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("delta"),
                    entries: &[
                        storage(0, true),
                        storage(1, true),
                        storage(2, false),
                        wgpu::BindGroupLayoutEntry {
                            binding: 3,
                            visibility: wgpu::ShaderStages::COMPUTE,
                            ty: wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Uniform,
                                has_dynamic_offset: false,
                                min_binding_size: wgpu::BufferSize::new(PARAMS_BYTES),
                            },
                            count: None,
                        },
                    ],
                });
                let pipeline_layout =
                    device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some("delta"),
                        bind_group_layouts: &[Some(&layout)],
                        immediate_size: 0,
                    });
                let pipeline = |entry| {
                    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: Some(&pipeline_layout),
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: Default::default(),
                        cache: None,
                    })
                };
                let params = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("delta params"),
                    size: PARAMS_BYTES,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (
                    layout,
                    pipeline("drop_and_rescale"),
                    pipeline("magnitude_threshold"),
                    params,
                )
            })?;

        let l = device.limits();
        let by_binding = l.max_storage_buffer_binding_size.min(l.max_buffer_size) / 4;
        let by_dispatch = u64::from(l.max_compute_workgroups_per_dimension) * WG;
        // Multiple of WG so that full chunks dispatch whole workgroups (not needed, but tidy).
        let max_chunk = (by_binding.min(by_dispatch).min(MAX_CHUNK) / WG * WG) as usize;
        ensure!(
            max_chunk > 0,
            "{}: storage buffers are too small ({l:?})",
            info.name
        );

        Ok(Some(DeltaGpu {
            device,
            queue,
            info,
            layout,
            drop_pipeline,
            magnitude_pipeline,
            params,
            max_chunk,
            buffers: Mutex::new(None),
        }))
    }

    /// e.g. "llvmpipe (Gl, Cpu)" — adapter name, backend, device type.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// A CPU rasteriser (llvmpipe, lavapipe, WARP): correct, but slower than the CPU kernels.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Same contract as the CPU's `delta::kernels::drop_and_rescale`:
    /// `out = base + mask·(ft − base)·scale`, dropped elements take the base value.
    #[allow(clippy::too_many_arguments)] // mirrors the CPU kernel's signature
    pub fn drop_and_rescale(
        &self,
        base: &[f32],
        finetuned: &[f32],
        key: MaskKey,
        first_index: u64,
        threshold: DropThreshold,
        scale: f32,
        out: &mut [f32],
    ) -> Result<()> {
        check_lengths(base, finetuned, out)?;
        let threshold = match threshold {
            DropThreshold::Below(t) => t,
            DropThreshold::DropAll => {
                out.copy_from_slice(base);
                return Ok(());
            }
        };
        let args = Args {
            key: (key.k0, key.k1),
            threshold,
            scale,
            ..Default::default()
        };
        self.run(&self.drop_pipeline, base, finetuned, first_index, args, out)
    }

    /// Same contract as the CPU's `delta::kernels::magnitude_threshold`:
    /// `out = base + δ` where |δ| ≥ `min_abs`, else `base`.
    pub fn magnitude_threshold(
        &self,
        base: &[f32],
        finetuned: &[f32],
        min_abs: f32,
        out: &mut [f32],
    ) -> Result<()> {
        check_lengths(base, finetuned, out)?;
        let args = Args {
            min_abs,
            ..Default::default()
        };
        self.run(&self.magnitude_pipeline, base, finetuned, 0, args, out)
    }

    /// Streams the tensors through the device buffers chunk by chunk.
    fn run(
        &self,
        pipeline: &wgpu::ComputePipeline,
        base: &[f32],
        finetuned: &[f32],
        first_index: u64,
        args: Args,
        out: &mut [f32],
    ) -> Result<()> {
        let n = base.len();
        if n == 0 {
            return Ok(());
        }
        ensure!(
            first_index.checked_add(n as u64).is_some(),
            "element indices {first_index}+{n} overflow u64"
        );
        let mut guard = self
            .buffers
            .lock()
            .map_err(|_| anyhow!("GPU buffer cache poisoned by an earlier panic"))?;
        let bufs = match guard.take() {
            Some(b) if b.capacity >= n.min(self.max_chunk) => b,
            // Free the old buffers before allocating the larger ones.
            _ => self.allocate(n.min(self.max_chunk))?,
        };
        let mut start = 0;
        while start < n {
            let g = first_index + start as u64;
            // Stop at the next multiple of 2³² so the high word is constant within the chunk.
            let to_word_end = (1u64 << 32) - (g & 0xffff_ffff);
            let len = ((n - start) as u64)
                .min(self.max_chunk as u64)
                .min(to_word_end) as usize;
            let range = start..start + len;
            // On failure the buffers are dropped rather than cached: the readback buffer may be
            // left mapped or pending, which would make every later call fail too.
            self.run_chunk(
                pipeline,
                &bufs,
                g,
                args,
                &base[range.clone()],
                &finetuned[range.clone()],
                &mut out[range],
            )?;
            start += len;
        }
        *guard = Some(bufs);
        Ok(())
    }

    /// One dispatch over `out.len()` elements whose global indices start at `g`: upload, run,
    /// copy to the readback buffer, wait, copy out.
    #[allow(clippy::too_many_arguments)]
    fn run_chunk(
        &self,
        pipeline: &wgpu::ComputePipeline,
        bufs: &Buffers,
        g: u64,
        args: Args,
        base: &[f32],
        finetuned: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        let len = out.len();
        let bytes = len as u64 * 4;
        // `Params` in delta.wgsl, field by field.
        let params: [u32; (PARAMS_BYTES / 4) as usize] = [
            len as u32,
            g as u32,
            high_word_mix((g >> 32) as u32),
            args.key.0,
            args.key.1,
            args.threshold,
            args.scale.to_bits(),
            args.min_abs.to_bits(),
            0, // `zero`: the FMA barrier in delta.wgsl
            0,
            0,
            0,
        ];
        let (tx, rx) = mpsc::channel();
        checked(&self.device, "running a delta kernel", || {
            self.queue
                .write_buffer(&self.params, 0, &words_bytes(&params));
            self.queue.write_buffer(&bufs.base, 0, f32_bytes(base));
            self.queue
                .write_buffer(&bufs.finetuned, 0, f32_bytes(finetuned));
            let mut enc = self.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bufs.bind_group, &[]);
                pass.dispatch_workgroups((len as u64).div_ceil(WG) as u32, 1, 1);
            }
            enc.copy_buffer_to_buffer(&bufs.out, 0, &bufs.readback, 0, bytes);
            self.queue.submit([enc.finish()]);
            bufs.readback
                .map_async(wgpu::MapMode::Read, ..bytes, move |r| {
                    let _ = tx.send(r);
                });
        })?;
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .context("waiting for the GPU")?;
        rx.recv()
            .context("the GPU readback was abandoned")?
            .context("mapping the GPU result")?;
        {
            let view = bufs
                .readback
                .get_mapped_range(..bytes)
                .context("reading the GPU result")?;
            f32_bytes_mut(out).copy_from_slice(&view);
        }
        bufs.readback.unmap();
        Ok(())
    }

    fn allocate(&self, capacity: usize) -> Result<Buffers> {
        checked(&self.device, "allocating GPU buffers", || {
            let size = capacity as u64 * 4;
            let buffer = |label, usage| {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage,
                    mapped_at_creation: false,
                })
            };
            use wgpu::BufferUsages as U;
            let base = buffer("delta base", U::STORAGE | U::COPY_DST);
            let finetuned = buffer("delta finetuned", U::STORAGE | U::COPY_DST);
            let out = buffer("delta out", U::STORAGE | U::COPY_SRC);
            let readback = buffer("delta readback", U::MAP_READ | U::COPY_DST);
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("delta"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: base.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: finetuned.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: out.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: self.params.as_entire_binding(),
                    },
                ],
            });
            Buffers {
                capacity,
                base,
                finetuned,
                out,
                readback,
                bind_group,
            }
        })
    }
}

/// Runs `f` inside validation and out-of-memory error scopes and turns a captured error into an
/// `anyhow` error naming `what` (wgpu reports these asynchronously instead of returning them).
fn checked<T>(device: &wgpu::Device, what: &str, f: impl FnOnce() -> T) -> Result<T> {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = f();
    let error = pollster::block_on(validation.pop());
    let error = pollster::block_on(oom.pop()).or(error);
    match error {
        Some(e) => bail!("GPU error while {what}: {e}"),
        None => Ok(value),
    }
}

fn check_lengths(base: &[f32], finetuned: &[f32], out: &[f32]) -> Result<()> {
    ensure!(
        base.len() == finetuned.len() && base.len() == out.len(),
        "tensor lengths differ: base {}, finetuned {}, out {}",
        base.len(),
        finetuned.len(),
        out.len()
    );
    Ok(())
}

fn words_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

// Native-endian views of f32 data for upload/readback without copying; GPUs (and wgpu's
// supported hosts) are little-endian, as the shader's f32 layout assumes.
fn f32_bytes(x: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte pattern is a valid u8; the length covers exactly x.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), std::mem::size_of_val(x)) }
}

fn f32_bytes_mut(x: &mut [f32]) -> &mut [u8] {
    // SAFETY: as above, and every byte pattern is a valid f32, so writes cannot break invariants.
    unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), std::mem::size_of_val(x)) }
}
