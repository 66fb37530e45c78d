//! Single-precision matrix products for the training passes. Profiles of SmolLM2 fine-tuning
//! spent two thirds of each step in candle's CPU matmul (the `gemm` crate, ~65 GFLOP/s on two
//! cores for these shapes); OpenBLAS does the same products at ~170. OpenBLAS is loaded at run
//! time when the system has it, so nothing is needed to build and the `gemm` crate remains the
//! portable fallback. `ALIGNSCOPE_GEMM=portable` forces the fallback.

use std::sync::OnceLock;

use candle_core::{CpuStorage, Device, Layout, Result, Storage, Tensor};

/// Which implementation computes the products.
pub enum Backend {
    OpenBlas(OpenBlas),
    Portable,
}

/// `cblas_sgemm` from a dynamically loaded OpenBLAS, single-threaded per call: the products
/// are split here over candle's own worker pool, whose threads would otherwise spin between
/// candle's element-wise ops while OpenBLAS's pool competed with them for the cores.
pub struct OpenBlas {
    sgemm: Sgemm,
    name: String,
    _library: libloading::Library,
}

type Sgemm = unsafe extern "C" fn(
    order: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const f32,
    lda: i32,
    b: *const f32,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

impl OpenBlas {
    const LIBRARIES: [&'static str; 4] = [
        "libopenblas.so.0",
        "libopenblas.so",
        "libopenblas.dylib",
        "libopenblas.dll",
    ];

    fn load() -> Option<Self> {
        Self::LIBRARIES.iter().find_map(|name| {
            // SAFETY: OpenBLAS's initialisers only set up its own state.
            let library = unsafe { libloading::Library::new(name) }.ok()?;
            // SAFETY: the symbols are OpenBLAS's documented C interface, declared as above.
            unsafe {
                let sgemm = *library.get::<Sgemm>(b"cblas_sgemm\0").ok()?;
                let set_threads = library
                    .get::<unsafe extern "C" fn(i32)>(b"openblas_set_num_threads\0")
                    .ok()?;
                set_threads(1);
                let core = library
                    .get::<unsafe extern "C" fn() -> *const std::ffi::c_char>(
                        b"openblas_get_corename\0",
                    )
                    .ok()
                    .map(|f| std::ffi::CStr::from_ptr(f()).to_string_lossy().into_owned())
                    .unwrap_or_default();
                Some(Self {
                    sgemm,
                    name: format!("OpenBLAS ({name}, {core} kernels)"),
                    _library: library,
                })
            }
        })
    }
}

/// The backend chosen once per process: OpenBLAS when it loads, unless the environment asks
/// for the portable one.
pub fn backend() -> &'static Backend {
    static BACKEND: OnceLock<Backend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let portable = std::env::var("ALIGNSCOPE_GEMM").is_ok_and(|v| v == "portable");
        match OpenBlas::load() {
            Some(blas) if !portable => Backend::OpenBlas(blas),
            _ => Backend::Portable,
        }
    })
}

impl Backend {
    /// What runs the products, for benchmark records.
    pub fn name(&self) -> &str {
        match self {
            Backend::OpenBlas(blas) => &blas.name,
            Backend::Portable => "gemm crate (portable)",
        }
    }
}

/// A 2-D f32 operand: `values[offset + i·row_stride + j·col_stride]` is element `(i, j)`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    values: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout) -> Result<Self> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("matrix product: f32 operands only");
        };
        let (&[rows, cols], &[row_stride, col_stride]) = (layout.dims(), layout.stride()) else {
            candle_core::bail!("matrix product: 2-D operands only, got {:?}", layout.dims());
        };
        Ok(Self {
            values,
            offset: layout.start_offset(),
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// BLAS's view of this operand: row-major as is, or the transpose of a row-major matrix.
    /// `None` for layouts BLAS cannot read (neither stride is 1).
    fn blas(&self) -> Option<(i32, usize)> {
        if self.cols == 1 || self.col_stride == 1 {
            let ld = if self.rows == 1 {
                self.cols
            } else {
                self.row_stride
            };
            (ld >= self.cols).then_some((NO_TRANS, ld.max(1)))
        } else if self.rows == 1 || self.row_stride == 1 {
            let ld = if self.cols == 1 {
                self.rows
            } else {
                self.col_stride
            };
            (ld >= self.rows).then_some((TRANS, ld.max(1)))
        } else {
            None
        }
    }

    /// The operand restricted to rows `r0..r0 + rows`.
    fn rows(self, r0: usize, rows: usize) -> Self {
        Self {
            offset: self.offset + r0 * self.row_stride,
            rows,
            ..self
        }
    }

    /// The operand restricted to columns `c0..c0 + cols`.
    fn cols(self, c0: usize, cols: usize) -> Self {
        Self {
            offset: self.offset + c0 * self.col_stride,
            cols,
            ..self
        }
    }
}

/// `a · b` for two 2-D f32 tensors of any strides (transposed views included).
pub fn product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let mut c = Vec::new();
    let shape = product_into(a, b, &mut c)?;
    Tensor::from_vec(c, shape, &Device::Cpu)
}

/// `a · b` written over `c` (resized to fit), as for [`product`]; returns `(rows, cols)`.
pub fn product_into(a: &Tensor, b: &Tensor, c: &mut Vec<f32>) -> Result<(usize, usize)> {
    let (a_storage, a_layout) = a.storage_and_layout();
    let (b_storage, b_layout) = b.storage_and_layout();
    let (Storage::Cpu(a_cpu), Storage::Cpu(b_cpu)) = (&*a_storage, &*b_storage) else {
        candle_core::bail!("matrix product: CPU tensors only");
    };
    storage_product_into(a_cpu, a_layout, b_cpu, b_layout, c)
}

/// `a · b` on a custom op's storages: the values and their `(rows, cols)`.
pub fn product_of(
    a: &CpuStorage,
    a_layout: &Layout,
    b: &CpuStorage,
    b_layout: &Layout,
) -> Result<(Vec<f32>, (usize, usize))> {
    let mut c = Vec::new();
    let shape = storage_product_into(a, a_layout, b, b_layout, &mut c)?;
    Ok((c, shape))
}

fn storage_product_into(
    a: &CpuStorage,
    a_layout: &Layout,
    b: &CpuStorage,
    b_layout: &Layout,
    c: &mut Vec<f32>,
) -> Result<(usize, usize)> {
    let (a, b) = (Operand::new(a, a_layout)?, Operand::new(b, b_layout)?);
    if a.cols != b.rows {
        candle_core::bail!(
            "matrix product: [{}, {}] · [{}, {}]",
            a.rows,
            a.cols,
            b.rows,
            b.cols
        );
    }
    c.resize(a.rows * b.cols, 0.0);
    multiply(backend(), a, b, c);
    Ok((a.rows, b.cols))
}

/// `c = a · b` with `c` row-major `[a.rows, b.cols]`.
fn multiply(backend: &Backend, a: Operand, b: Operand, c: &mut [f32]) {
    match backend {
        Backend::OpenBlas(blas) if a.blas().is_some() && b.blas().is_some() => {
            split_over_threads(blas, a, b, c)
        }
        // The portable kernel also takes the layouts BLAS cannot read.
        _ => portable(a, b, c),
    }
}

/// Below this many multiply-adds a product runs on one thread.
const PARALLEL_WORK: usize = 1 << 21;

/// One block of `c` per thread of candle's pool (the calling thread included), along `c`'s
/// longer side.
fn split_over_threads(blas: &OpenBlas, a: Operand, b: Operand, c: &mut [f32]) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let pool = candle_core::utils::barrier_pool();
    let threads = pool.n_workers() + 1;
    let out = SharedOut(c.as_mut_ptr());
    if threads == 1 || m * n * k < PARALLEL_WORK {
        return blas_sgemm(blas, a, b, &out, 0, n);
    }
    let long = m.max(n);
    let block = long.div_ceil(threads);
    pool.execute(|thread| {
        let start = thread * block;
        if start >= long {
            return;
        }
        let len = block.min(long - start);
        if m >= n {
            blas_sgemm(blas, a.rows(start, len), b, &out, start * n, n)
        } else {
            blas_sgemm(blas, a, b.cols(start, len), &out, start, n)
        }
    });
}

/// The output, shared by threads that write disjoint blocks of it.
struct SharedOut(*mut f32);
// SAFETY: only `blas_sgemm` writes through it, each thread to its own block.
unsafe impl Sync for SharedOut {}

/// The block `a · b` of the output starting at element `offset`, its rows `ldc` apart, by one
/// `cblas_sgemm` call.
fn blas_sgemm(blas: &OpenBlas, a: Operand, b: Operand, c: &SharedOut, offset: usize, ldc: usize) {
    let ((trans_a, lda), (trans_b, ldb)) = (
        a.blas().expect("checked by the caller"),
        b.blas().expect("checked by the caller"),
    );
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    // SAFETY: the operands' offsets and strides address elements inside their slices (candle
    // layouts), and the output holds `a.rows` rows of `ldc` from `offset`, `b.cols` of each
    // written here.
    unsafe {
        (blas.sgemm)(
            ROW_MAJOR,
            trans_a,
            trans_b,
            a.rows as i32,
            b.cols as i32,
            a.cols as i32,
            1.0,
            a.values.as_ptr().add(a.offset),
            lda as i32,
            b.values.as_ptr().add(b.offset),
            ldb as i32,
            0.0,
            c.0.add(offset),
            ldc as i32,
        )
    }
}

/// `c = a · b` by the `gemm` crate, parallel over rayon's threads.
fn portable(a: Operand, b: Operand, c: &mut [f32]) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: as in `blas_sgemm`; `gemm` reads strided operands directly. Its `alpha` scales
    // the old destination and `beta` the product.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            c.as_mut_ptr(),
            1,
            b.cols as isize,
            false,
            a.values.as_ptr().add(a.offset),
            a.col_stride as isize,
            a.row_stride as isize,
            b.values.as_ptr().add(b.offset),
            b.col_stride as isize,
            b.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize) -> Result<Tensor> {
        Tensor::rand(-1f32, 1f32, (rows, cols), &Device::Cpu)
    }

    fn naive(a: &Tensor, b: &Tensor) -> Result<Vec<f32>> {
        let (a, b) = (a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
        let mut c = vec![0f32; a.len() * b[0].len()];
        for (i, row) in a.iter().enumerate() {
            for j in 0..b[0].len() {
                c[i * b[0].len() + j] = row.iter().zip(&b).map(|(x, r)| x * r[j]).sum();
            }
        }
        Ok(c)
    }

    /// Every backend this machine has, on plain, transposed, offset and strided operands, and
    /// on both split directions, against a naive product.
    #[test]
    fn products_match_a_naive_product_for_every_layout_and_backend() -> Result<()> {
        let mut backends = vec![Backend::Portable];
        backends.extend(OpenBlas::load().map(Backend::OpenBlas));
        let big = matrix(300, 200)?;
        let cases = [
            (matrix(70, 40)?, matrix(40, 90)?),
            (matrix(40, 70)?.t()?, matrix(90, 40)?.t()?),
            (
                big.narrow(0, 13, 120)?.narrow(1, 7, 150)?,
                matrix(150, 140)?,
            ),
            // Taller than wide and wider than tall, above the threshold for threads.
            (matrix(400, 160)?, matrix(160, 60)?.narrow(1, 10, 40)?),
            (matrix(40, 160)?, matrix(400, 160)?.t()?),
            (matrix(1, 30)?, matrix(30, 1)?),
        ];
        for backend in &backends {
            for (a, b) in &cases {
                let (sa, la) = a.storage_and_layout();
                let (sb, lb) = b.storage_and_layout();
                let (Storage::Cpu(sa), Storage::Cpu(sb)) = (&*sa, &*sb) else {
                    unreachable!("CPU tensors")
                };
                let (oa, ob) = (Operand::new(sa, la)?, Operand::new(sb, lb)?);
                let mut c = vec![0f32; oa.rows * ob.cols];
                multiply(backend, oa, ob, &mut c);
                let want = naive(a, b)?;
                let worst = c
                    .iter()
                    .zip(&want)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-3,
                    "{}: {:?}·{:?} off by {worst}",
                    backend.name(),
                    a.dims(),
                    b.dims()
                );
            }
        }
        Ok(())
    }
}
