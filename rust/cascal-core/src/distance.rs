//! Pairwise distances between row vectors: cosine, euclidean and squared euclidean.
//!
//! Public entry points (all generic over [`Real`] = `f32` / `f64`, row-major input of `n × d`):
//! - [`pdist`]: condensed distances in scipy's order (pairs `i < j`, row-major),
//! - [`pdist_square`]: the full symmetric `n × n` matrix with an exact zero diagonal,
//! - [`cdist`]: the full `nx × ny` matrix between two sets.
//!
//! # Method
//! Rows are *prepared* once: L2-normalised for cosine; for the euclidean metrics shifted by a
//! centre (the mean of the reference rows, rounded to `T`) and divided by a power of two `s` so
//! that every prepared value lies in `[-1, 1]` (exact, and immune to overflow/underflow of huge or
//! tiny inputs). Dot products of prepared rows come from a blocked GEMM over row blocks (rayon
//! over blocks, single-threaded GEMM inside), and each block is turned into distances and written
//! straight into the output: no `n × n` temporary beyond the output itself.
//!
//! Euclidean distances use `‖a‖² + ‖b‖² − 2a·b`, which loses relative precision when the distance
//! is small against the norms (near-duplicates). Whenever that formula gives
//! `d² ≤ τ · (‖a‖² + ‖b‖²)` (τ = [`Real::RECOMPUTE_RATIO`]: 1e-3 for f64, 0.5 for f32), the pair
//! is recomputed directly as `‖a − b‖` in f64 from the original rows, scaled by the pair's largest
//! coordinate difference (no underflow for tiny differences next to large values). Centring removes any
//! common offset first, so huge offsets cost nothing extra.
//!
//! Cosine distance is `clamp(1 − â·b̂, 0, 2)`. A zero vector has no direction: by definition its
//! cosine distance is 0 to another zero vector and 1 to any non-zero vector.
//!
//! Inputs must be finite and have at least one column; `n = 0` gives an empty result.

use rayon::prelude::*;

use crate::alloc::{checked_len, try_vec, try_zeroed};
use crate::error::{KResult, KernelError};
use crate::gemm_util::dot_block;
use crate::real::Real;
use crate::shared_out::SharedOut;

/// Distance metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// `1 − cos(a, b)`, see the module docs for zero vectors.
    Cosine,
    /// `‖a − b‖₂`.
    Euclidean,
    /// `‖a − b‖₂²`.
    SqEuclidean,
}

impl Metric {
    /// Parse scipy's metric names: `"cosine"`, `"euclidean"`, `"sqeuclidean"`.
    pub fn parse(name: &str) -> KResult<Metric> {
        match name {
            "cosine" => Ok(Metric::Cosine),
            "euclidean" => Ok(Metric::Euclidean),
            "sqeuclidean" => Ok(Metric::SqEuclidean),
            other => Err(KernelError::new(
                "metric",
                format!("unknown metric {other:?}; expected one of \"cosine\", \"euclidean\", \"sqeuclidean\""),
            )),
        }
    }

    /// The scipy name of the metric.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Euclidean => "euclidean",
            Metric::SqEuclidean => "sqeuclidean",
        }
    }
}

/// Check that `x` holds `n × d` finite values with `d ≥ 1`; errors name `arg` and the first bad row.
pub fn check_matrix<T: Real>(arg: &'static str, x: &[T], n: usize, d: usize) -> KResult<()> {
    if d == 0 {
        return Err(KernelError::new(arg, "must have at least one column (d >= 1)"));
    }
    let expected = n
        .checked_mul(d)
        .ok_or_else(|| KernelError::new(arg, "shape overflows"))?;
    if x.len() != expected {
        return Err(KernelError::new(
            arg,
            format!("has {} values, expected {n} x {d} = {expected}", x.len()),
        ));
    }
    let bad_row = |r: &[T]| r.iter().any(|v| !v.is_finite());
    // waking the thread pool costs more than scanning a small matrix
    let first_bad = if x.len() <= SMALL_ELEMENTS {
        x.chunks(d).position(bad_row)
    } else {
        x.par_chunks(d).position_first(bad_row)
    };
    if let Some(row) = first_bad {
        return Err(KernelError::new(arg, format!("contains NaN or infinity at row {row}")));
    }
    Ok(())
}

/// Inputs up to this many values are scanned on the calling thread (no rayon dispatch).
const SMALL_ELEMENTS: usize = 1 << 18;

/// Where rows go before the GEMM (see the module docs).
pub(crate) struct Geometry<T: Real> {
    metric: Metric,
    /// Euclidean only: per-column centre, exactly representable in `T`.
    centre: Vec<T>,
    /// Euclidean only: power-of-two scale `s` (prepared = (x − centre) / s) and its inverse.
    scale: f64,
    inv_scale: f64,
}

impl<T: Real> Geometry<T> {
    /// Fit the preparation for distances between rows of `xs` (all sets that will be compared);
    /// the euclidean centre is the mean of the rows of `centre_rows`.
    pub(crate) fn fit(metric: Metric, centre_rows: &[T], xs: &[&[T]], d: usize) -> Self {
        if metric == Metric::Cosine {
            return Self { metric, centre: Vec::new(), scale: 1.0, inv_scale: 1.0 };
        }
        let centre = column_mean(centre_rows, d);
        let max_dev = xs
            .iter()
            .map(|x| {
                x.par_chunks(d)
                    .map(|row| {
                        row.iter()
                            .zip(&centre)
                            .map(|(v, c)| (v.to_f64() - c.to_f64()).abs())
                            .fold(0.0f64, f64::max)
                    })
                    .reduce(|| 0.0, f64::max)
            })
            .fold(0.0f64, f64::max);
        let exponent = if max_dev > 0.0 && max_dev.is_finite() {
            (max_dev.log2().ceil() as i32).clamp(-1000, 1000)
        } else {
            0
        };
        let scale = 2f64.powi(exponent);
        Self { metric, centre, scale, inv_scale: 2f64.powi(-exponent) }
    }

    /// Prepare `rows` rows of `src` into `dst`, filling their squared norms and zero flags.
    ///
    /// Every loop below is a lane-wise map or reduction (no division in the per-element work), so
    /// it vectorises: for the small inputs of a k-means step a scalar preparation would cost more
    /// than the GEMM itself.
    pub(crate) fn prepare(&self, src: &[T], d: usize, dst: &mut [T], sq: &mut [f64], zero: &mut [bool]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                return unsafe { self.prepare_avx2(src, d, dst, sq, zero) };
            }
        }
        self.prepare_rows(src, d, dst, sq, zero)
    }

    /// [`Self::prepare_rows`] compiled for AVX2 (4 doubles per instruction; no FMA, so the same
    /// bits as the baseline build).
    ///
    /// # Safety
    /// The CPU must support AVX2 (callers check `is_x86_feature_detected!("avx2")`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn prepare_avx2(&self, src: &[T], d: usize, dst: &mut [T], sq: &mut [f64], zero: &mut [bool]) {
        self.prepare_rows(src, d, dst, sq, zero)
    }

    #[inline(always)]
    fn prepare_rows(&self, src: &[T], d: usize, dst: &mut [T], sq: &mut [f64], zero: &mut [bool]) {
        for (r, row) in src.chunks_exact(d).enumerate() {
            let out = &mut dst[r * d..(r + 1) * d];
            match self.metric {
                Metric::Cosine => {
                    let m = lane_max_abs(row);
                    if m == 0.0 {
                        out.fill(T::from_f64(0.0));
                        sq[r] = 0.0;
                        zero[r] = true;
                        continue;
                    }
                    // Scale by the largest magnitude first, then by the norm of the scaled row:
                    // m · √ss itself could underflow (subnormal rows) or overflow. 1/m is
                    // infinite only for a subnormal m; those rows take the dividing path.
                    let inv_m = 1.0 / m;
                    if inv_m.is_finite() {
                        let ss = lane_sum(row, |v| {
                            let u = v * inv_m;
                            u * u
                        });
                        let inv_norm = 1.0 / ss.sqrt();
                        for (o, v) in out.iter_mut().zip(row) {
                            *o = T::from_f64((v.to_f64() * inv_m) * inv_norm);
                        }
                    } else {
                        let ss: f64 = row.iter().map(|v| (v.to_f64() / m).powi(2)).sum();
                        let inv_norm = 1.0 / ss.sqrt();
                        for (o, v) in out.iter_mut().zip(row) {
                            *o = T::from_f64((v.to_f64() / m) * inv_norm);
                        }
                    }
                    sq[r] = lane_sum(out, |v| v * v);
                    zero[r] = false;
                }
                Metric::Euclidean | Metric::SqEuclidean => {
                    for ((o, v), c) in out.iter_mut().zip(row).zip(&self.centre) {
                        *o = T::from_f64((v.to_f64() - c.to_f64()) * self.inv_scale);
                    }
                    let acc = lane_sum(out, |v| v * v);
                    sq[r] = acc;
                    zero[r] = acc == 0.0;
                }
            }
        }
    }

    /// The distance of a pair from the dot product `g` of their prepared rows.
    #[inline(always)]
    pub(crate) fn finish(&self, g: f64, a: PairSide<'_, T>, b: PairSide<'_, T>) -> f64 {
        match self.metric {
            Metric::Cosine => {
                if a.zero || b.zero {
                    if a.zero && b.zero {
                        0.0
                    } else {
                        1.0
                    }
                } else {
                    (1.0 - g).clamp(0.0, 2.0)
                }
            }
            Metric::Euclidean | Metric::SqEuclidean => {
                let norms = a.sq + b.sq;
                let d2 = norms - 2.0 * g;
                // distance in prepared units
                let dist = if d2 <= T::RECOMPUTE_RATIO * norms {
                    self.direct_distance(a.row, b.row)
                } else {
                    d2.max(0.0).sqrt()
                };
                if self.metric == Metric::Euclidean {
                    self.scale * dist
                } else {
                    (self.scale * dist) * (self.scale * dist)
                }
            }
        }
    }

    /// Distances of `a` to rows `j0, j0 + 1, …` of the prepared set `b` (original rows `b_rows`)
    /// from their dot products `dots`, into `out` (same length as `dots`). Cosine without zero
    /// vectors takes a branch-free loop the compiler vectorises.
    #[inline]
    // reason: a per-row hot helper taking one row pair's borrowed parts; a struct would only rename them
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_row(
        &self,
        dots: &[T],
        a: PairSide<'_, T>,
        j0: usize,
        b: &Prepared<T>,
        b_rows: &[T],
        d: usize,
        out: &mut [f64],
    ) {
        if self.metric == Metric::Cosine && !a.zero && !b.any_zero {
            cosine_from_dots(dots, out);
            return;
        }
        for (k, (o, g)) in out.iter_mut().zip(dots).enumerate() {
            let j = j0 + k;
            let side = PairSide { row: &b_rows[j * d..(j + 1) * d], sq: b.sq[j], zero: b.zero[j] };
            *o = self.finish(g.to_f64(), a, side);
        }
    }

    /// `‖(a − b) / s‖` from the original rows, in f64, scaled by the pair's largest coordinate
    /// difference so that squaring neither underflows (tiny differences next to large values) nor
    /// overflows.
    #[inline]
    fn direct_distance(&self, a: &[T], b: &[T]) -> f64 {
        let diff = |(x, y): (&T, &T)| x.to_f64() * self.inv_scale - y.to_f64() * self.inv_scale;
        let largest = a.iter().zip(b).map(diff).fold(0.0f64, |m, t| m.max(t.abs()));
        if largest == 0.0 {
            return 0.0;
        }
        let sum: f64 = a
            .iter()
            .zip(b)
            .map(|p| {
                let t = diff(p) / largest;
                t * t
            })
            .sum();
        largest * sum.sqrt()
    }
}

/// `out[j] = clamp(1 − dots[j], 0, 2)`: cosine distances from the dot products of unit rows, with
/// the widest SIMD the CPU has (the same bits on every path).
fn cosine_from_dots<T: Real>(dots: &[T], out: &mut [f64]) {
    #[inline(always)]
    fn body<T: Real>(dots: &[T], out: &mut [f64]) {
        for (o, g) in out.iter_mut().zip(dots) {
            *o = (1.0 - g.to_f64()).clamp(0.0, 2.0);
        }
    }
    /// `body` compiled for AVX2.
    ///
    /// # Safety
    /// The CPU must support AVX2 (checked by the caller).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn body_avx2<T: Real>(dots: &[T], out: &mut [f64]) {
        body(dots, out)
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { body_avx2(dots, out) };
        }
    }
    body(dots, out)
}

/// One side of a pair: original row, squared norm and zero flag of its prepared row.
#[derive(Clone, Copy)]
pub(crate) struct PairSide<'a, T> {
    pub row: &'a [T],
    pub sq: f64,
    pub zero: bool,
}

/// Column means of the rows of `x`, accumulated in f64, rounded to `T`.
fn column_mean<T: Real>(x: &[T], d: usize) -> Vec<T> {
    let n = x.len() / d;
    if n == 0 {
        return vec![T::from_f64(0.0); d];
    }
    // Fixed blocks summed in order: the same sums whatever the threads do (rayon's adaptive
    // `fold` splits where work stealing happens, which made the centre, and with it every
    // euclidean distance, differ in the last bit from one call to the next).
    const BLOCK_ROWS: usize = 1024;
    let partial: Vec<Vec<f64>> = x
        .par_chunks(d * BLOCK_ROWS)
        .map(|block| {
            let mut acc = vec![0.0f64; d];
            for row in block.chunks_exact(d) {
                for (a, v) in acc.iter_mut().zip(row) {
                    *a += v.to_f64();
                }
            }
            acc
        })
        .collect();
    let mut sums = vec![0.0f64; d];
    for block in &partial {
        for (s, b) in sums.iter_mut().zip(block) {
            *s += b;
        }
    }
    sums.into_iter().map(|s| T::from_f64(s / n as f64)).collect()
}

/// A whole set of prepared rows.
pub(crate) struct Prepared<T> {
    pub rows: Vec<T>,
    pub sq: Vec<f64>,
    pub zero: Vec<bool>,
    /// Some prepared row is the zero vector (cosine: needs the convention's branches).
    pub any_zero: bool,
}

impl<T: Real> Prepared<T> {
    /// Prepare every row of `x`; the copies are allocated fallibly (`arg` names the input).
    pub(crate) fn new(geom: &Geometry<T>, x: &[T], d: usize, arg: &'static str) -> KResult<Self> {
        let n = x.len() / d;
        let mut rows = try_vec(arg, "prepared copy of the rows", n * d, T::from_f64(0.0))?;
        let mut sq = try_zeroed(arg, "row norms", n)?;
        let mut zero = try_zeroed(arg, "zero-row flags", n)?;
        const CHUNK: usize = 256;
        if n <= CHUNK {
            geom.prepare(x, d, &mut rows, &mut sq, &mut zero);
            let any_zero = zero.iter().any(|&z| z);
            return Ok(Self { rows, sq, zero, any_zero });
        }
        rows.par_chunks_mut(CHUNK * d)
            .zip(sq.par_chunks_mut(CHUNK))
            .zip(zero.par_chunks_mut(CHUNK))
            .zip(x.par_chunks(CHUNK * d))
            .for_each(|(((dst, s), z), src)| geom.prepare(src, d, dst, s, z));
        let any_zero = zero.iter().any(|&z| z);
        Ok(Self { rows, sq, zero, any_zero })
    }
}

/// Rows per task (the lhs of one GEMM).
const ROW_BLOCK: usize = 128;
/// Columns per GEMM tile.
const COL_TILE: usize = 1024;

/// Shape of the block sweep in [`sweep`].
pub(crate) struct Sweep {
    pub row_block: usize,
    pub col_tile: usize,
    /// Only tiles with columns `>= r0` of the row block (pairs `i < j` of a single set).
    pub upper: bool,
}

/// What a tile visitor sees: a block of prepared lhs rows and a tile of their dot products.
pub(crate) struct Tile<'a, T> {
    pub r0: usize,
    pub rows: usize,
    pub c0: usize,
    pub cols: usize,
    /// Row-major `rows × cols` dot products.
    pub dots: &'a [T],
    /// Squared norms and zero flags of the block's prepared rows.
    pub sq: &'a [f64],
    pub zero: &'a [bool],
}

/// Number of row blocks [`sweep`] cuts `n` rows into (`row_block` rows each, the last one
/// shorter).
pub(crate) fn sweep_blocks(n: usize, row_block: usize) -> usize {
    n.div_ceil(row_block.max(1))
}

/// Prepare `x` block by block (memory bounded by the block), multiply each block with tiles of
/// the prepared `other` and hand every tile to `visit`, together with the block's own output
/// `outs[b]` (one per row block, [`sweep_blocks`] of them: typically the block's disjoint
/// `&mut` part of the result). Parallel over row blocks.
pub(crate) fn sweep<T: Real, B: Send, F>(geom: &Geometry<T>, x: &[T], other: &Prepared<T>, d: usize, shape: Sweep, outs: Vec<B>, visit: F)
where
    F: Fn(&Tile<'_, T>, &mut B) + Sync,
{
    let n = x.len() / d;
    let nb = other.sq.len();
    let rb = shape.row_block.max(1);
    let ct = shape.col_tile.max(1);
    let blocks = sweep_blocks(n, rb);
    assert_eq!(outs.len(), blocks, "sweep: one output per row block");
    let scratch = || (vec![T::from_f64(0.0); rb * d], vec![0.0f64; rb], vec![false; rb], vec![T::from_f64(0.0); rb * ct]);
    let run_block = |(prep, sq, zero, dots): &mut (Vec<T>, Vec<f64>, Vec<bool>, Vec<T>), bi: usize, out: &mut B| {
        let r0 = bi * rb;
        let rows = rb.min(n - r0);
        geom.prepare(&x[r0 * d..(r0 + rows) * d], d, &mut prep[..rows * d], &mut sq[..rows], &mut zero[..rows]);
        let mut c0 = if shape.upper { r0 } else { 0 };
        while c0 < nb {
            let cols = ct.min(nb - c0);
            dot_block(&prep[..rows * d], rows, &other.rows[c0 * d..(c0 + cols) * d], cols, d, &mut dots[..rows * cols]);
            visit(&Tile { r0, rows, c0, cols, dots: &dots[..rows * cols], sq: &sq[..rows], zero: &zero[..rows] }, out);
            c0 += cols;
        }
    };
    if blocks <= 1 {
        // one block: nothing to share out, and waking the pool would cost more than the work
        let mut buffers = scratch();
        outs.into_iter().enumerate().for_each(|(bi, mut out)| run_block(&mut buffers, bi, &mut out));
    } else {
        outs.into_par_iter().enumerate().for_each_init(scratch, |buffers, (bi, mut out)| run_block(buffers, bi, &mut out));
    }
}

/// Index of pair `(i, j)`, `i < j`, in the condensed vector of `n` points.
#[inline(always)]
pub fn condensed_index(n: usize, i: usize, j: usize) -> usize {
    debug_assert!(i < j && j < n);
    i * n - i * (i + 1) / 2 + (j - i - 1)
}

/// Upper-triangle sweep of one set, in row blocks of [`ROW_BLOCK`] rows: calls
/// `emit_row(i, j0, values, out)` with the distances of row `i` to rows `j0, j0 + 1, …` so that
/// every pair `i < j` is emitted exactly once, and `after_tile(r0, rows, c0, cols)` once a
/// tile's pairs have all been emitted (same task). `out` is `outs[b]` of the row block holding
/// `i` (one per block, see [`sweep`]).
fn upper_pairs<T: Real, B: Send, F, G>(x: &[T], d: usize, metric: Metric, outs: Vec<B>, emit_row: F, after_tile: G) -> KResult<()>
where
    F: Fn(usize, usize, &[f64], &mut B) + Sync,
    G: Fn(usize, usize, usize, usize) + Sync,
{
    let geom = Geometry::fit(metric, x, &[x], d);
    let prepared = Prepared::new(&geom, x, d, "X")?;
    let shape = Sweep { row_block: ROW_BLOCK, col_tile: COL_TILE, upper: true };
    sweep(&geom, x, &prepared, d, shape, outs, |t, block_out| {
        let mut values = vec![0.0f64; t.cols];
        for ii in 0..t.rows {
            let i = t.r0 + ii;
            let j0 = t.c0.max(i + 1);
            let end = t.c0 + t.cols;
            if j0 >= end {
                continue;
            }
            let a = PairSide { row: &x[i * d..(i + 1) * d], sq: t.sq[ii], zero: t.zero[ii] };
            let dots = &t.dots[ii * t.cols + (j0 - t.c0)..(ii + 1) * t.cols];
            let out = &mut values[..end - j0];
            geom.finish_row(dots, a, j0, &prepared, x, d, out);
            emit_row(i, j0, out, block_out);
        }
        after_tile(t.r0, t.rows, t.c0, t.cols);
    });
    Ok(())
}

/// Condensed pairwise distances of the `n` rows of `x` (`n × d`, row-major), in scipy's order:
/// `out[condensed_index(n, i, j)] = dist(x_i, x_j)` for `i < j`; length `n(n−1)/2`.
pub fn pdist<T: Real>(x: &[T], n: usize, d: usize, metric: Metric) -> KResult<Vec<T>> {
    check_matrix("X", x, n, d)?;
    // n(n−1)/2 without overflowing in the product: halve the even factor first.
    let m = n.saturating_sub(1);
    let len = if n % 2 == 0 { checked_len("X", "condensed distance matrix", &[n / 2, m])? } else { checked_len("X", "condensed distance matrix", &[n, m / 2])? };
    // zeroed, so safe code can hand it out in pieces (fresh pages: no pass over the memory)
    let mut out: Vec<T> = try_zeroed("X", "condensed distance matrix", len)?;
    if len > 0 {
        // The condensed rows of a row block are contiguous: block b owns the entries of its rows
        // i (pairs (i, j > i)), starting at condensed_index(n, r0, r0 + 1).
        let mut outs: Vec<(usize, &mut [T])> = Vec::with_capacity(sweep_blocks(n, ROW_BLOCK));
        let (mut rest, mut base): (&mut [T], usize) = (&mut out, 0);
        for r0 in (0..n).step_by(ROW_BLOCK) {
            let block_len: usize = (r0..(r0 + ROW_BLOCK).min(n)).map(|i| n - i - 1).sum();
            let (block, tail) = std::mem::take(&mut rest).split_at_mut(block_len);
            outs.push((base, block));
            (rest, base) = (tail, base + block_len);
        }
        let emit_row = |i: usize, j0: usize, values: &[f64], (base, block): &mut (usize, &mut [T])| {
            let at = condensed_index(n, i, j0) - *base;
            for (o, &v) in block[at..at + values.len()].iter_mut().zip(values) {
                *o = T::from_f64(v);
            }
        };
        upper_pairs(x, d, metric, outs, emit_row, |_, _, _, _| {})?;
    }
    Ok(out)
}

/// Full symmetric `n × n` distance matrix of the rows of `x`: exactly symmetric, zero diagonal.
pub fn pdist_square<T: Real>(x: &[T], n: usize, d: usize, metric: Metric) -> KResult<Vec<T>> {
    check_matrix("X", x, n, d)?;
    let len = checked_len("X", "square distance matrix", &[n, n])?;
    // zeroed: the diagonal is already 0, every other entry is written once below
    let mut out: Vec<T> = try_zeroed("X", "square distance matrix", len)?;
    if len > 0 {
        // A task writes the upper entries (i, j > i) of its block's rows and their mirrors (j, i)
        // in other rows, so its entries are not one contiguous piece: they go through SharedOut.
        let shared = SharedOut::new(&mut out);
        upper_pairs(
            x,
            d,
            metric,
            vec![(); sweep_blocks(n, ROW_BLOCK)],
            |i, j0, values, _| {
                // SAFETY: the entries (i, j0 ..) of the emitted pairs i < j belong to the task
                // of i's row block alone: each pair is emitted exactly once, by that task.
                let row = unsafe { shared.slice_mut(i * n + j0, values.len()) };
                for (o, &v) in row.iter_mut().zip(values) {
                    *o = T::from_f64(v);
                }
            },
            |r0, rows, c0, cols| {
                // Mirror the tile just emitted (going column by column keeps the writes
                // contiguous).
                for j in c0..c0 + cols {
                    for i in r0..(r0 + rows).min(j) {
                        // SAFETY: the pair (i, j), i < j, belongs to this task (it just emitted
                        // it): it alone wrote (i, j) and writes its mirror (j, i).
                        unsafe { shared.write(j * n + i, shared.read(i * n + j)) };
                    }
                }
            },
        )?;
    }
    Ok(out)
}

/// Full `nx × ny` matrix of distances between rows of `x` (`nx × d`) and rows of `y` (`ny × d`).
pub fn cdist<T: Real>(x: &[T], nx: usize, y: &[T], ny: usize, d: usize, metric: Metric) -> KResult<Vec<T>> {
    check_matrix("X", x, nx, d)?;
    check_matrix("Y", y, ny, d)?;
    let len = checked_len("Y", "distance matrix", &[nx, ny])?;
    // zeroed, so safe code can hand it out in row blocks (fresh pages: no pass over the memory)
    let mut out: Vec<T> = try_zeroed("Y", "distance matrix", len)?;
    if len > 0 {
        let geom = Geometry::fit(metric, y, &[x, y], d);
        let prepared = Prepared::new(&geom, y, d, "Y")?;
        let shape = Sweep { row_block: ROW_BLOCK, col_tile: COL_TILE, upper: false };
        // row block b owns output rows b·ROW_BLOCK .. : one contiguous piece
        let outs: Vec<&mut [T]> = out.chunks_mut(ROW_BLOCK * ny).collect();
        sweep(&geom, x, &prepared, d, shape, outs, |t, block| {
            let mut values = vec![0.0f64; t.cols];
            for ii in 0..t.rows {
                let i = t.r0 + ii;
                let a = PairSide { row: &x[i * d..(i + 1) * d], sq: t.sq[ii], zero: t.zero[ii] };
                let dots = &t.dots[ii * t.cols..(ii + 1) * t.cols];
                geom.finish_row(dots, a, t.c0, &prepared, y, d, &mut values);
                let row = &mut block[ii * ny + t.c0..ii * ny + t.c0 + t.cols];
                for (o, &v) in row.iter_mut().zip(&values) {
                    *o = T::from_f64(v);
                }
            }
        });
    }
    Ok(out)
}

/// Lanes of the vectorisable reductions below.
const LANES: usize = 8;

/// `Σ f(v)` over `row` in f64, accumulated in [`LANES`] independent partial sums (so the compiler
/// can vectorise it); the summation order differs from a sequential sum only by rounding.
#[inline(always)]
fn lane_sum<T: Real>(row: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v.to_f64());
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v.to_f64())).sum();
    acc.iter().sum::<f64>() + tail
}

/// Largest `|v|` of `row` (finite input), in [`LANES`] independent maxima.
#[inline(always)]
fn lane_max_abs<T: Real>(row: &[T]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.max(v.to_f64().abs());
        }
    }
    let tail = chunks.remainder().iter().map(|v| v.to_f64().abs()).fold(0.0f64, f64::max);
    acc.iter().copied().fold(tail, f64::max)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn tiny_difference_next_to_a_unit_row_does_not_underflow() {
        // |1.2e-246 - 0| squared underflows f64; the distance itself is representable
        let x = [1.0f64, 0.0, 1.22594275e-246, 0.0];
        let y = [0.0f64, 0.0];
        let got = cdist(&x, 2, &y, 1, 2, Metric::Euclidean).unwrap();
        assert_eq!(got, vec![1.0, 1.22594275e-246]);
        let sq = cdist(&x, 2, &y, 1, 2, Metric::SqEuclidean).unwrap();
        assert_eq!(sq[0], 1.0);
        assert_eq!(sq[1], 0.0); // the true value, 1.5e-492, is below the smallest f64
    }

    /// Small deterministic generator for test data (no external crates).
    pub(crate) struct Lcg(pub u64);
    impl Lcg {
        pub(crate) fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64) / ((1u64 << 53) as f64) * 2.0 - 1.0
        }
        pub(crate) fn matrix(&mut self, n: usize, d: usize) -> Vec<f64> {
            (0..n * d).map(|_| self.next()).collect()
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_and_baseline_preparation_give_the_same_bits() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let (n, d) = (37, 45); // odd sizes: the lane loops' remainders
        let mut g = Lcg(21);
        let mut x = g.matrix(n, d);
        x[3 * d..4 * d].fill(0.0); // a zero row
        x[5 * d..6 * d].iter_mut().for_each(|v| *v *= 1e-310); // a subnormal row
        x[6 * d..7 * d].iter_mut().for_each(|v| *v *= 1e300);
        let x32: Vec<f32> = x.iter().map(|&v| (v * 1e3) as f32).collect();
        fn both<T: Real>(x: &[T], n: usize, d: usize, metric: Metric) {
            let geom = Geometry::fit(metric, x, &[x], d);
            let (mut a, mut b) = (vec![T::from_f64(0.0); n * d], vec![T::from_f64(0.0); n * d]);
            let (mut sa, mut sb) = (vec![0.0; n], vec![0.0; n]);
            let (mut za, mut zb) = (vec![false; n], vec![false; n]);
            geom.prepare_rows(x, d, &mut a, &mut sa, &mut za);
            // SAFETY: AVX2 is present (checked by the caller)
            unsafe { geom.prepare_avx2(x, d, &mut b, &mut sb, &mut zb) };
            assert!(a.iter().zip(&b).all(|(u, v)| u.to_f64().to_bits() == v.to_f64().to_bits()), "{metric:?}");
            assert!(sa.iter().zip(&sb).all(|(u, v)| u.to_bits() == v.to_bits()), "{metric:?}");
            assert_eq!(za, zb);
            // the cosine finish: dispatched vs the plain loop
            let dots: Vec<T> = a[..d].to_vec();
            let mut got = vec![0.0; d];
            cosine_from_dots(&dots, &mut got);
            for (o, g) in got.iter().zip(&dots) {
                assert_eq!(o.to_bits(), (1.0 - g.to_f64()).clamp(0.0, 2.0).to_bits());
            }
        }
        for metric in [Metric::Cosine, Metric::Euclidean, Metric::SqEuclidean] {
            both(&x, n, d, metric);
            both(&x32, n, d, metric);
        }
    }

    /// Textbook distance in f64, used as the truth.
    pub(crate) fn naive(a: &[f64], b: &[f64], metric: Metric) -> f64 {
        match metric {
            Metric::Cosine => {
                let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
                let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
                match (na == 0.0, nb == 0.0) {
                    (true, true) => 0.0,
                    (true, false) | (false, true) => 1.0,
                    _ => 1.0 - dot / (na * nb),
                }
            }
            Metric::Euclidean => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt(),
            Metric::SqEuclidean => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        }
    }

    fn close(got: f64, want: f64, rtol: f64, atol: f64) -> bool {
        (got - want).abs() <= rtol * want.abs() + atol
    }

    const METRICS: [Metric; 3] = [Metric::Cosine, Metric::Euclidean, Metric::SqEuclidean];

    #[test]
    fn pdist_f64_matches_naive_across_block_boundaries() {
        let (n, d) = (300, 7);
        let x = Lcg(1).matrix(n, d);
        for m in METRICS {
            let out = pdist(&x, n, d, m).unwrap();
            assert_eq!(out.len(), n * (n - 1) / 2);
            for i in 0..n {
                for j in i + 1..n {
                    let want = naive(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d], m);
                    let got = out[condensed_index(n, i, j)];
                    assert!(close(got, want, 1e-10, 1e-13), "{m:?} {i} {j}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn pdist_f32_matches_naive() {
        let (n, d) = (150, 33);
        let x64 = Lcg(2).matrix(n, d);
        let x: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        let xw: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for m in METRICS {
            let out = pdist(&x, n, d, m).unwrap();
            for i in 0..n {
                for j in i + 1..n {
                    let want = naive(&xw[i * d..(i + 1) * d], &xw[j * d..(j + 1) * d], m);
                    assert!(close(out[condensed_index(n, i, j)] as f64, want, 1e-5, 1e-6), "{m:?}");
                }
            }
        }
    }

    #[test]
    fn euclidean_near_duplicates_with_huge_offset_keep_relative_precision() {
        let (n, d) = (40, 16);
        let mut g = Lcg(3);
        let base: Vec<f64> = (0..d).map(|_| 1e8 + g.next()).collect();
        let x: Vec<f64> = (0..n * d).map(|k| base[k % d] + 1e-4 * g.next()).collect();
        let out = pdist(&x, n, d, Metric::Euclidean).unwrap();
        for i in 0..n {
            for j in i + 1..n {
                let want = naive(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d], Metric::Euclidean);
                assert!(close(out[condensed_index(n, i, j)], want, 1e-10, 0.0));
            }
        }
    }

    #[test]
    fn huge_and_tiny_magnitudes_do_not_overflow() {
        let (n, d) = (20, 5);
        for scale in [1e150, 1e-150] {
            let x: Vec<f64> = Lcg(4).matrix(n, d).iter().map(|v| v * scale).collect();
            for m in METRICS {
                let out = pdist(&x, n, d, m).unwrap();
                for i in 0..n {
                    for j in i + 1..n {
                        let a: Vec<f64> = x[i * d..(i + 1) * d].iter().map(|v| v / scale).collect();
                        let b: Vec<f64> = x[j * d..(j + 1) * d].iter().map(|v| v / scale).collect();
                        let factor = match m {
                            Metric::Cosine => 1.0,
                            Metric::Euclidean => scale,
                            Metric::SqEuclidean => scale * scale,
                        };
                        let want = naive(&a, &b, m) * factor;
                        let got = out[condensed_index(n, i, j)];
                        assert!(close(got, want, 1e-10, 1e-13 * factor), "{m:?} {scale}: {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn subnormal_rows_keep_their_direction_under_cosine() {
        let x = vec![5e-324f64, 5e-324, 0.0, 1.0];
        let out = pdist(&x, 2, 2, Metric::Cosine).unwrap();
        assert!((out[0] - (1.0 - 0.5f64.sqrt())).abs() < 1e-15, "{out:?}");
    }

    #[test]
    fn zero_vectors_under_cosine() {
        let x = vec![0.0f64, 0.0, 1.0, 0.0, 0.0, 0.0];
        let out = pdist(&x, 3, 2, Metric::Cosine).unwrap();
        assert_eq!(out, vec![1.0, 0.0, 1.0]);
    }

    #[test]
    fn euclidean_centre_and_distances_do_not_depend_on_the_threads() {
        // a centre summed in an order that depends on rayon's work stealing would make repeated
        // calls differ in the last bit
        let (n, d) = (20_000, 3);
        let x = Lcg(9).matrix(n, d);
        let in_pool = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| column_mean(&x, d))
        };
        let first = in_pool(1);
        for threads in [2, 3, 4, 7] {
            let again = in_pool(threads);
            assert!(first.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()), "{first:?} != {again:?}");
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let a = pool.install(|| pdist(&x[..600 * d], 600, d, Metric::Euclidean).unwrap());
        let b = pool.install(|| pdist(&x[..600 * d], 600, d, Metric::Euclidean).unwrap());
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    }

    #[test]
    fn square_is_symmetric_with_zero_diagonal_and_matches_condensed() {
        let (n, d) = (131, 4);
        let x = Lcg(5).matrix(n, d);
        for m in METRICS {
            let sq = pdist_square(&x, n, d, m).unwrap();
            let cond = pdist(&x, n, d, m).unwrap();
            for i in 0..n {
                assert_eq!(sq[i * n + i], 0.0);
                for j in i + 1..n {
                    assert_eq!(sq[i * n + j], sq[j * n + i]);
                    assert_eq!(sq[i * n + j], cond[condensed_index(n, i, j)]);
                }
            }
        }
    }

    #[test]
    fn cdist_matches_naive() {
        let (nx, ny, d) = (170, 1100, 3);
        let x = Lcg(6).matrix(nx, d);
        let y = Lcg(7).matrix(ny, d);
        for m in METRICS {
            let out = cdist(&x, nx, &y, ny, d, m).unwrap();
            for i in 0..nx {
                for j in 0..ny {
                    let want = naive(&x[i * d..(i + 1) * d], &y[j * d..(j + 1) * d], m);
                    assert!(close(out[i * ny + j], want, 1e-10, 1e-13));
                }
            }
        }
    }

    #[test]
    fn empty_and_single_inputs() {
        assert!(pdist::<f64>(&[], 0, 3, Metric::Cosine).unwrap().is_empty());
        assert!(pdist(&[1.0f32, 2.0], 1, 2, Metric::Euclidean).unwrap().is_empty());
        assert!(cdist::<f64>(&[], 0, &[1.0], 1, 1, Metric::Euclidean).unwrap().is_empty());
    }

    #[test]
    fn bad_input_names_the_argument() {
        let e = pdist(&[1.0, f64::NAN, 0.0, 0.0], 2, 2, Metric::Cosine).unwrap_err();
        assert_eq!(e.to_string(), "X: contains NaN or infinity at row 0");
        let e = cdist(&[1.0, 0.0], 1, &[0.0, 0.0, 1.0, f64::INFINITY], 2, 2, Metric::Cosine).unwrap_err();
        assert_eq!(e.to_string(), "Y: contains NaN or infinity at row 1");
        let e = pdist(&[1.0, 2.0, 3.0], 2, 2, Metric::Cosine).unwrap_err();
        assert_eq!(e.arg, "X");
        assert!(pdist::<f64>(&[], 0, 0, Metric::Cosine).is_err());
        let e = Metric::parse("manhattan").unwrap_err();
        assert_eq!(e.arg, "metric");
        assert_eq!(Metric::parse("sqeuclidean").unwrap(), Metric::SqEuclidean);
    }
}
