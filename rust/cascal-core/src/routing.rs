//! Batched CASCAL routing of query embeddings.
//!
//! For every query `x` (cosine geometry; every input row is normalised by the kernel):
//! 1. its subject `s` is the subject representative at the smallest cosine distance `1 − cos`
//!    (ties: lower index);
//! 2. for one subject `t`, the `min(k_nearest, count)` nearest centroids of `t` (ties: lower
//!    centroid index) get weights `softmax(−dist / distance_temp)`; each centroid contributes its
//!    sharpened model distribution `softmax(score / score_temp)` (NaN scores get probability 0; a
//!    centroid without any finite score contributes the global distribution `G`),
//!    `P_t = Σ w·sharp`. With `subject_temp = 0` (hard assignment, the default) `P = P_s`; with
//!    `subject_temp > 0` every subject `t` is weighted by `π_t = softmax_t(−dist_t / subject_temp)`
//!    over the subject-representative distances and `P = Σ_t π_t·P_t`;
//! 3. when the distance `d` from the query to the nearest centroid of `s` exceeds `fallback_distance`,
//!    `α = min((d − fallback_distance) / fallback_width, 1)` and `P = (1 − α)·P + α·G`, with
//!    `G = softmax(global_scores / score_temp)` (NaN entries get 0); otherwise `α = 0`;
//! 4. `ranked` lists the `top_k` models by decreasing `P` (ties: lower model index).
//!
//! Optional cost table (cost-aware routing): with `centroid_costs` (`C × M`) and `global_costs`
//! (`M`) the kernel also returns `expected_cost` (`n × M`), the same linear mix of the cost rows
//! as steps 2-3 apply to the sharpened distributions (centroid weights `w`, subject weights `π`,
//! fallback `α`), without any sharpening: `E = (1 − α)·Σ_t π_t Σ w·cost_c + α·global_costs`.
//! A centroid without any finite score contributes `global_costs`, as it contributes `G`. The
//! costs never change `probs` or `ranked`.
//!
//! Optional subject weights ([`Outputs::subject_weights`], off by default): `subject_weights`
//! (`n × S`) holds the weights `π` step 2 mixed the subjects with, the very values the kernel used:
//! soft assignment gives the normalised `π` with the skipped subjects (below) at exactly 0; hard
//! assignment gives the one-hot row of the chosen subject. Without the option nothing is written.
//!
//! Every `exp` of a weight is [`crate::fastexp::exp_flush`] (relative error below `1e−15`, exactly
//! 0 below `exp(−708)`; the same bits scalar or vectorised), so soft routing takes a block's subject
//! weights, and on the dense path a row's centroid weights, in one vectorised call each. A
//! subject's nearest centroids are ranked without branches when it has at most 8 centroids
//! (insertion otherwise); both orders are (distance, centroid index).
//!
//! Queries are processed in blocks of rows in parallel (rayon). Per block, one GEMM against the
//! subject representatives picks the subjects. Hard assignment then groups the block's rows by
//! subject and runs one GEMM per subject against that subject's centroids, the only centroid
//! distances it needs (`O(n·d·(S + C/S))` work). Soft assignment gives weight 0 to the subjects whose
//! weight is below `2^−52` of the nearest subject's ([`SOFT_SKIP_EXPONENT`]; they change no
//! probability by more than an ulp) and never compares the query with their centroids: a block
//! whose remaining (row, subject) pairs need fewer than half of all row × centroid distances is
//! routed per subject like the hard path, otherwise one GEMM against every centroid serves the block
//! (`O(n·d·(S + C))`). Memory stays bounded by the block; each rayon worker reuses its buffers.

use rayon::prelude::*;

use crate::alloc::{checked_len, try_zeroed};
use crate::error::{KResult, KernelError};
use crate::fastexp::{exp_flush, exp_flush_in_place};
use crate::gemm_util::dot_block;
use crate::real::Real;

/// Query rows handled by one rayon task.
const ROW_BLOCK: usize = 512;

/// Routing constants (module docs); defaults in [`RouteParams::default`], the same as those of
/// the Python `cascal.kernels.RouteParams`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteParams {
    /// Centroids blended per query (>= 1; fewer if the subject has fewer).
    pub k_nearest: usize,
    /// Temperature of the softmax over negative centroid distances (> 0).
    pub distance_temp: f64,
    /// Temperature sharpening the model scores (> 0).
    pub score_temp: f64,
    /// Nearest-centroid distance above which the global distribution is blended in (finite).
    pub fallback_distance: f64,
    /// Distance over which the blend weight grows from 0 to 1 (> 0).
    pub fallback_width: f64,
    /// Models listed in `ranked` (1..=number of models).
    pub top_k: usize,
    /// Temperature of the soft subject assignment; 0 = hard (nearest subject only).
    pub subject_temp: f64,
}

impl Default for RouteParams {
    fn default() -> Self {
        Self { k_nearest: 3, distance_temp: 0.1, score_temp: 0.1, fallback_distance: 0.5, fallback_width: 0.2, top_k: 3, subject_temp: 0.0 }
    }
}

impl RouteParams {
    fn validate(&self, n_models: usize) -> KResult<()> {
        if self.k_nearest == 0 {
            return Err(KernelError::new("k_nearest", "must be >= 1"));
        }
        for (name, v) in [("distance_temp", self.distance_temp), ("score_temp", self.score_temp), ("fallback_width", self.fallback_width)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(KernelError::new(name, format!("must be a finite number > 0, got {v}")));
            }
        }
        if !(self.subject_temp.is_finite() && self.subject_temp >= 0.0) {
            return Err(KernelError::new("subject_temp", format!("must be a finite number >= 0, got {}", self.subject_temp)));
        }
        if !self.fallback_distance.is_finite() {
            return Err(KernelError::new("fallback_distance", format!("must be finite, got {}", self.fallback_distance)));
        }
        if self.top_k == 0 || self.top_k > n_models {
            return Err(KernelError::new("top_k", format!("must lie in 1..={n_models} (the number of models), got {}", self.top_k)));
        }
        Ok(())
    }
}

/// Result of [`route_batch`]; matrices are row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteOutput {
    /// `n × M` routing distribution (rows sum to 1).
    pub probs: Vec<f64>,
    /// `n × top_k` model indices, best first.
    pub ranked: Vec<i64>,
    /// Chosen subject of every query.
    pub subject: Vec<i64>,
    /// Cosine distance to the nearest centroid of the chosen (nearest) subject.
    pub nearest_distance: Vec<f64>,
    /// Weight of the global distribution in the blend.
    pub alpha: Vec<f64>,
    /// `n × M` expected cost of every model per query (only with a cost table in the model).
    pub expected_cost: Option<Vec<f64>>,
    /// `n × S` subject weights of every query (only with [`Outputs::subject_weights`]).
    pub subject_weights: Option<Vec<f64>>,
}

/// Outputs of [`route_batch_with`] that are computed only on request (none by default, which is
/// [`route_batch`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Fill [`RouteOutput::subject_weights`]: the subject weights the routing mixed with (one-hot
    /// of the chosen subject under hard assignment).
    pub subject_weights: bool,
}

/// The model-independent inputs of [`route_batch`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RoutingModel<'a, T> {
    /// `S × d` subject representatives.
    pub subject_reps: &'a [T],
    /// `C × d` centroids.
    pub centroids: &'a [T],
    /// Subject index of every centroid (`C`).
    pub centroid_subject: &'a [i64],
    /// `C × M` niche scores per model (NaN = no data).
    pub centroid_scores: &'a [f64],
    /// `M` global scores per model (NaN = no data).
    pub global_scores: &'a [f64],
    /// Optional cost table: `C × M` niche costs and `M` global costs (finite), mixed linearly
    /// into [`RouteOutput::expected_cost`].
    pub costs: Option<CostTable<'a>>,
}

/// Per-niche and global expected cost of every model (any unit; finite values).
#[derive(Debug, Clone, Copy)]
pub struct CostTable<'a> {
    /// `C × M` cost of each model in each niche.
    pub centroid_costs: &'a [f64],
    /// `M` cost of each model over all training questions.
    pub global_costs: &'a [f64],
}

/// Unit-length copies of the rows of `rows` (`n × d`); rejects non-finite and all-zero rows.
fn normalized_rows<T: Real>(rows: &[T], n: usize, d: usize, arg: &'static str) -> KResult<Vec<T>> {
    let mut out = Vec::with_capacity(n * d);
    for (i, row) in rows.chunks_exact(d).take(n).enumerate() {
        let norm = row_norm(row);
        check_norm(norm, i, arg)?;
        out.extend(row.iter().map(|&v| T::from_f64(v.into() / norm)));
    }
    Ok(out)
}

/// Euclidean norm of `row`, summed in `T` over 8 independent lanes (vectorisable); recomputed in
/// f64 when that overflows, so huge finite rows are not mistaken for non-finite ones.
#[inline]
fn row_norm<T: Real>(row: &[T]) -> f64 {
    let mut lanes = [T::ZERO; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (acc, &v) in lanes.iter_mut().zip(chunk) {
            *acc = *acc + v * v;
        }
    }
    let mut total: f64 = lanes.iter().map(|&v| v.into()).sum();
    total += chunks.remainder().iter().map(|&v| square(v)).sum::<f64>();
    if total.is_finite() {
        return total.sqrt();
    }
    row.iter().map(|&v| square(v)).sum::<f64>().sqrt()
}

#[inline]
fn square<T: Real>(v: T) -> f64 {
    let v: f64 = v.into();
    v * v
}

fn check_norm(norm: f64, row: usize, arg: &'static str) -> KResult<()> {
    if !norm.is_finite() {
        return Err(KernelError::new(arg, format!("row {row} contains NaN or infinite values")));
    }
    if norm == 0.0 {
        return Err(KernelError::new(arg, format!("row {row} is all zeros; cosine distance is undefined")));
    }
    Ok(())
}

/// `softmax(scores / temp)` with NaN entries mapped to probability 0; `None` if every entry is NaN.
fn sharpen(scores: &[f64], temp: f64) -> Option<Vec<f64>> {
    let max = scores.iter().copied().filter(|s| !s.is_nan()).fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return None;
    }
    let mut out: Vec<f64> = scores.iter().map(|&s| if s.is_nan() { 0.0 } else { ((s - max) / temp).exp() }).collect();
    let total: f64 = out.iter().sum();
    out.iter_mut().for_each(|p| *p /= total);
    Some(out)
}

/// Everything that does not depend on the queries, prepared once per call.
struct Prepared<T> {
    d: usize,
    n_subjects: usize,
    n_models: usize,
    reps: Vec<T>,
    /// `C × d` unit centroids grouped by subject (subject 0's first, each group in ascending
    /// centroid index order); subject `s` owns rows `group_start[s]..group_start[s + 1]`.
    grouped_cents: Vec<T>,
    group_start: Vec<usize>,
    /// Original centroid index of every row of `grouped_cents`.
    grouped_index: Vec<usize>,
    /// `M × C` sharpened distributions, transposed, columns in grouped order (the soft path mixes
    /// them with one GEMM per block).
    grouped_sharp_t: Vec<f64>,
    /// `C × M` sharpened distributions.
    sharp: Vec<f64>,
    global: Vec<f64>,
    /// Cost table: `C × M` rows (all-NaN score rows replaced by the global costs), its `M × C`
    /// grouped transpose (soft path), and the global costs.
    costs: Option<PreparedCosts>,
}

struct PreparedCosts {
    rows: Vec<f64>,
    grouped_t: Vec<f64>,
    global: Vec<f64>,
}

fn prepare_costs(table: &CostTable<'_>, centroid_scores: &[f64], grouped_index: &[usize], n_models: usize) -> KResult<PreparedCosts> {
    let n_centroids = grouped_index.len();
    if table.global_costs.len() != n_models {
        return Err(KernelError::new("global_costs", format!("expected {n_models} costs (one per model), got {}", table.global_costs.len())));
    }
    if table.centroid_costs.len() != n_centroids * n_models {
        return Err(KernelError::new(
            "centroid_costs",
            format!("expected shape ({n_centroids}, {n_models}), got {} values", table.centroid_costs.len()),
        ));
    }
    if let Some(i) = table.centroid_costs.iter().position(|c| !c.is_finite()) {
        return Err(KernelError::new("centroid_costs", format!("row {}, column {} is not finite", i / n_models, i % n_models)));
    }
    if let Some(m) = table.global_costs.iter().position(|c| !c.is_finite()) {
        return Err(KernelError::new("global_costs", format!("entry {m} is not finite")));
    }
    let mut rows = Vec::with_capacity(n_centroids * n_models);
    for (scores, costs) in centroid_scores.chunks_exact(n_models).zip(table.centroid_costs.chunks_exact(n_models)) {
        // mirrors `sharp`: a centroid without any finite score stands in for the global ranking
        rows.extend_from_slice(if scores.iter().all(|s| s.is_nan()) { table.global_costs } else { costs });
    }
    let mut grouped_t = vec![0.0; n_models * n_centroids];
    for (g, &c) in grouped_index.iter().enumerate() {
        for (mi, &v) in rows[c * n_models..(c + 1) * n_models].iter().enumerate() {
            grouped_t[mi * n_centroids + g] = v;
        }
    }
    Ok(PreparedCosts { rows, grouped_t, global: table.global_costs.to_vec() })
}

fn prepare<T: Real>(model: &RoutingModel<'_, T>, d: usize, params: &RouteParams) -> KResult<Prepared<T>> {
    if d == 0 {
        return Err(KernelError::new("X", "embedding dimension must be >= 1"));
    }
    if model.subject_reps.len() % d != 0 || model.subject_reps.is_empty() {
        return Err(KernelError::new("subject_reps", format!("expected a non-empty (S, {d}) matrix")));
    }
    if model.centroids.len() % d != 0 || model.centroids.is_empty() {
        return Err(KernelError::new("centroids", format!("expected a non-empty (C, {d}) matrix")));
    }
    let n_subjects = model.subject_reps.len() / d;
    let n_centroids = model.centroids.len() / d;
    let n_models = model.global_scores.len();
    if n_models == 0 {
        return Err(KernelError::new("global_scores", "expected one score per model, got none"));
    }
    params.validate(n_models)?;
    if model.centroid_subject.len() != n_centroids {
        return Err(KernelError::new(
            "centroid_subject",
            format!("expected one subject per centroid ({n_centroids}), got {}", model.centroid_subject.len()),
        ));
    }
    if model.centroid_scores.len() != n_centroids * n_models {
        return Err(KernelError::new(
            "centroid_scores",
            format!("expected shape ({n_centroids}, {n_models}), got {} values", model.centroid_scores.len()),
        ));
    }
    if let Some(i) = model.centroid_scores.iter().position(|s| s.is_infinite()) {
        return Err(KernelError::new(
            "centroid_scores",
            format!("row {}, column {} is infinite; use finite scores or NaN (no data)", i / n_models, i % n_models),
        ));
    }
    if let Some(m) = model.global_scores.iter().position(|s| s.is_infinite()) {
        return Err(KernelError::new("global_scores", format!("entry {m} is infinite; use finite scores or NaN (no data)")));
    }
    let global = sharpen(model.global_scores, params.score_temp)
        .ok_or_else(|| KernelError::new("global_scores", "every entry is NaN; at least one model needs a score"))?;

    let reps = normalized_rows(model.subject_reps, n_subjects, d, "subject_reps")?;
    let cents = normalized_rows(model.centroids, n_centroids, d, "centroids")?;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_subjects];
    for (c, &s) in model.centroid_subject.iter().enumerate() {
        if s < 0 || s as usize >= n_subjects {
            return Err(KernelError::new(
                "centroid_subject",
                format!("centroid {c} has subject {s}; subjects are 0..{}", n_subjects - 1),
            ));
        }
        members[s as usize].push(c);
    }
    if let Some(s) = members.iter().position(|m| m.is_empty()) {
        return Err(KernelError::new("centroid_subject", format!("subject {s} has no centroid; every subject needs at least one")));
    }
    let grouped_index: Vec<usize> = members.iter().flatten().copied().collect();
    let grouped_cents = grouped_index.iter().flat_map(|&c| cents[c * d..(c + 1) * d].iter().copied()).collect();
    let mut group_start = vec![0usize];
    for m in &members {
        group_start.push(group_start.last().copied().unwrap_or(0) + m.len());
    }
    let mut sharp = Vec::with_capacity(n_centroids * n_models);
    for row in model.centroid_scores.chunks_exact(n_models) {
        sharp.extend(sharpen(row, params.score_temp).unwrap_or_else(|| global.clone()));
    }
    let c_total = grouped_index.len();
    let mut grouped_sharp_t = vec![0.0; n_models * c_total];
    for (g, &c) in grouped_index.iter().enumerate() {
        for (mi, &v) in sharp[c * n_models..(c + 1) * n_models].iter().enumerate() {
            grouped_sharp_t[mi * c_total + g] = v;
        }
    }
    let costs = match &model.costs {
        Some(table) => Some(prepare_costs(table, model.centroid_scores, &grouped_index, n_models)?),
        None => None,
    };
    Ok(Prepared { d, n_subjects, n_models, reps, grouped_cents, group_start, grouped_index, grouped_sharp_t, sharp, global, costs })
}

/// Working buffers of one rayon worker, reused from block to block (allocating them per block
/// cost more than the routing itself: fresh pages, zeroed by the kernel).
struct Buffers<T> {
    norms: Vec<f64>,
    /// `nb × S` row × subject-representative dot products.
    dots: Vec<T>,
    /// Row × centroid dot products (all centroids, or one subject's for gathered rows).
    cdots: Vec<T>,
    /// Soft dense path: `nb × C` mixing coefficients.
    coef: Vec<f64>,
    /// Soft: `nb × S` normalised subject weights (0 = negligible).
    weight: Vec<f64>,
    /// Soft: the subjects that are not skipped, row after row, with their weight exponents (then
    /// unnormalised weights); `row_end[i]` is where row `i`'s entries end.
    kept: Vec<usize>,
    exps: Vec<f64>,
    row_end: Vec<usize>,
    /// Rows of one subject, copied contiguously for its GEMM.
    gathered: Vec<T>,
    rows: Vec<usize>,
    scratch: Scratch,
}

impl<T> Default for Buffers<T> {
    fn default() -> Self {
        Self {
            norms: Vec::new(),
            dots: Vec::new(),
            cdots: Vec::new(),
            coef: Vec::new(),
            weight: Vec::new(),
            kept: Vec::new(),
            exps: Vec::new(),
            row_end: Vec::new(),
            gathered: Vec::new(),
            rows: Vec::new(),
            scratch: Scratch::default(),
        }
    }
}

/// `v` cleared and resized to `len` copies of `fill` (no allocation once it has the capacity).
fn reset<V: Copy>(v: &mut Vec<V>, len: usize, fill: V) -> &mut [V] {
    v.clear();
    v.resize(len, fill);
    v
}

/// Output slices of one block of queries.
struct BlockOut<'a> {
    probs: &'a mut [f64],
    ranked: &'a mut [i64],
    subject: &'a mut [i64],
    nearest: &'a mut [f64],
    alpha: &'a mut [f64],
    /// `nb × M` expected costs (only with a cost table).
    cost: Option<&'a mut [f64]>,
    /// `nb × S` subject weights (only when asked for; zeroed on entry).
    subject_weights: Option<&'a mut [f64]>,
}

fn route_block<T: Real>(
    x: &[T],
    row0: usize,
    prep: &Prepared<T>,
    params: &RouteParams,
    mut out: BlockOut<'_>,
    buf: &mut Buffers<T>,
) -> KResult<()> {
    let d = prep.d;
    let nb = out.subject.len();
    let mut norms = std::mem::take(&mut buf.norms);
    norms.clear();
    for (i, row) in x.chunks_exact(d).enumerate() {
        let norm = row_norm(row);
        check_norm(norm, row0 + i, "X")?;
        norms.push(norm);
    }
    let s_count = prep.n_subjects;
    let mut dots = std::mem::take(&mut buf.dots);
    dot_block(x, nb, &prep.reps, s_count, d, reset(&mut dots, nb * s_count, T::ZERO));
    for i in 0..nb {
        let mut best = (f64::INFINITY, 0usize);
        for s in 0..s_count {
            let dist = 1.0 - dots[i * s_count + s].into() / norms[i];
            if dist < best.0 {
                best = (dist, s);
            }
        }
        out.subject[i] = best.1 as i64;
    }

    if params.subject_temp > 0.0 {
        route_soft(x, &dots, &norms, prep, params, out, buf);
    } else {
        if let Some(weights) = out.subject_weights.as_deref_mut() {
            for (row, &s) in weights.chunks_exact_mut(s_count).zip(out.subject.iter()) {
                row[s as usize] = 1.0;
            }
        }
        route_hard(x, &norms, prep, params, out, buf);
    }
    buf.norms = norms;
    buf.dots = dots;
    Ok(())
}

/// Hard assignment: each row mixes the niches of its nearest subject (`out.subject`) only.
fn route_hard<T: Real>(x: &[T], norms: &[f64], prep: &Prepared<T>, params: &RouteParams, mut out: BlockOut<'_>, buf: &mut Buffers<T>) {
    let d = prep.d;
    let nb = out.subject.len();
    let m = prep.n_models;
    let Buffers { gathered, cdots, scratch, .. } = buf;
    for s in 0..prep.n_subjects {
        let rows: Vec<usize> = (0..nb).filter(|&i| out.subject[i] as usize == s).collect();
        if rows.is_empty() {
            continue;
        }
        gathered.clear();
        for &i in rows.iter() {
            gathered.extend_from_slice(&x[i * d..(i + 1) * d]);
        }
        let (lo, hi) = (prep.group_start[s], prep.group_start[s + 1]);
        let nc = hi - lo;
        cdots.clear();
        cdots.resize(rows.len() * nc, T::ZERO);
        dot_block(gathered, rows.len(), &prep.grouped_cents[lo * d..hi * d], nc, d, cdots);
        for (r, &i) in rows.iter().enumerate() {
            let p = &mut out.probs[i * m..(i + 1) * m];
            p.fill(0.0);
            let inv_norm = 1.0 / norms[i];
            let mut dists = std::mem::take(&mut scratch.dists);
            dists.clear();
            dists.extend(cdots[r * nc..(r + 1) * nc].iter().map(|&dot| 1.0 - dot.into() * inv_norm));
            let d_min = mix_subject(&dists, lo, prep, params, scratch, p);
            scratch.dists = dists;
            out.nearest[i] = d_min;
            out.alpha[i] = finish_row(p, d_min, prep, params, &mut out.ranked[i * params.top_k..(i + 1) * params.top_k]);
            if let (Some(costs), Some(cost_out)) = (&prep.costs, out.cost.as_deref_mut()) {
                // the same centroid weights `mix_subject` used (still in `scratch`)
                let e = &mut cost_out[i * m..(i + 1) * m];
                e.fill(0.0);
                for (&(_, j), &w) in scratch.nearest.iter().zip(&scratch.weights) {
                    let c = prep.grouped_index[lo + j];
                    for (em, &cm) in e.iter_mut().zip(&costs.rows[c * m..(c + 1) * m]) {
                        *em += w * cm;
                    }
                }
                blend_costs(e, out.alpha[i], &costs.global);
            }
        }
    }
}

/// Soft assignment: each row mixes every subject's niches, weighted by
/// `softmax(−subject distance / subject_temp)`; `dots` are the row × subject dot products.
///
/// A subject whose softmax exponent is more than [`SOFT_SKIP_EXPONENT`] below the nearest
/// subject's (weight ratio `< 2^−52`, below the rounding of the mixture) gets weight 0 and is
/// never touched: its centroid distances are not computed. When the block's remaining
/// (row, subject) pairs need fewer than half of the row × centroid distances, the rows are
/// grouped per subject ([`route_soft_grouped`]); otherwise one GEMM against every centroid serves
/// the whole block ([`route_soft_dense`]).
fn route_soft<T: Real>(
    x: &[T],
    dots: &[T],
    norms: &[f64],
    prep: &Prepared<T>,
    params: &RouteParams,
    mut out: BlockOut<'_>,
    buf: &mut Buffers<T>,
) {
    let nb = out.subject.len();
    let s_count = prep.n_subjects;
    let c_count = prep.grouped_index.len();
    // weight[i, s]: normalised subject weight of row i (0 = negligible, skipped)
    let mut weight = std::mem::take(&mut buf.weight);
    reset(&mut weight, nb * s_count, 0.0);
    // the exponents of the subjects that are not skipped first, then one vectorised exp for the
    // block (with many subjects, most are skipped: their exp is never taken)
    let Buffers { kept, exps, row_end, .. } = &mut *buf;
    kept.clear();
    exps.clear();
    row_end.clear();
    for i in 0..nb {
        let best = out.subject[i] as usize;
        let inv_norm = 1.0 / norms[i];
        let row_dots = &dots[i * s_count..(i + 1) * s_count];
        // subject distances are 1 - dot/norm: the gap to the best one is (dot_best - dot)/norm
        let dot_best: f64 = row_dots[best].into();
        for (s, &dot) in row_dots.iter().enumerate() {
            let exponent = -((dot_best - dot.into()) * inv_norm) / params.subject_temp;
            if exponent >= -SOFT_SKIP_EXPONENT {
                kept.push(s);
                exps.push(exponent);
            }
        }
        row_end.push(kept.len());
    }
    exp_flush_in_place(exps);
    // each row's kept weights divided by their sum, taken in subject order
    let mut needed = 0usize;
    let mut start = 0;
    for (i, &end) in row_end.iter().enumerate() {
        let total: f64 = exps[start..end].iter().sum();
        for (&s, &e) in kept[start..end].iter().zip(&exps[start..end]) {
            weight[i * s_count + s] = e / total;
            needed += prep.group_start[s + 1] - prep.group_start[s];
        }
        start = end;
    }
    if let Some(out_weights) = out.subject_weights.as_deref_mut() {
        out_weights.copy_from_slice(&weight);
    }
    if 2 * needed < nb * c_count {
        route_soft_grouped(x, norms, &weight, prep, params, out, buf);
    } else {
        route_soft_dense(x, norms, &weight, prep, params, out, buf);
    }
    buf.weight = weight;
}

/// Subject weights at most `e^−SOFT_SKIP_EXPONENT = 2^−52` of the nearest subject's are skipped
/// (treated as 0) by soft routing: each changes the mixture by less than one unit in the last
/// place of its largest entry.
pub const SOFT_SKIP_EXPONENT: f64 = 36.043_653_389_117_15; // 52 · ln 2

/// Soft routing of a block with one GEMM against every centroid; the rows' mixtures are one
/// `coef · sharp` product.
// reason: the block's inputs, outputs and buffers; a struct would only rename them
#[allow(clippy::too_many_arguments)]
fn route_soft_dense<T: Real>(
    x: &[T],
    norms: &[f64],
    weight: &[f64],
    prep: &Prepared<T>,
    params: &RouteParams,
    out: BlockOut<'_>,
    buf: &mut Buffers<T>,
) {
    let d = prep.d;
    let nb = out.subject.len();
    let m = prep.n_models;
    let s_count = prep.n_subjects;
    let c_count = prep.grouped_index.len();
    let Buffers { cdots, coef, scratch, .. } = buf;
    let cdots = reset(cdots, nb * c_count, T::ZERO);
    dot_block(x, nb, &prep.grouped_cents, c_count, d, cdots);
    // coef[i, g]: weight of grouped centroid g in row i's mixture (0 outside every k-nearest set)
    let coef = reset(coef, nb * c_count, 0.0);
    for i in 0..nb {
        let best = out.subject[i] as usize;
        let inv_norm = 1.0 / norms[i];
        let mut dists = std::mem::take(&mut scratch.dists);
        dists.clear();
        dists.extend(cdots[i * c_count..(i + 1) * c_count].iter().map(|&dot| 1.0 - dot.into() * inv_norm));
        let row_coef = &mut coef[i * c_count..(i + 1) * c_count];
        // the weighted subjects' nearest centroids and weight exponents first, then one vectorised
        // exp for the row, then each subject's weights normalised (as `nearest_weights` does)
        let Scratch { nearest, weights, picks, spans, .. } = &mut *scratch;
        weights.clear();
        picks.clear();
        spans.clear();
        let mut d_min_best = f64::INFINITY;
        for (s, &w) in weight[i * s_count..(i + 1) * s_count].iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let (lo, hi) = (prep.group_start[s], prep.group_start[s + 1]);
            let d_min = select_nearest(&dists[lo..hi], params.k_nearest, nearest);
            for &(dist, j) in nearest.iter() {
                weights.push(weight_exponent(dist, d_min, params));
                picks.push(lo + j);
            }
            spans.push((weights.len(), w));
            if s == best {
                d_min_best = d_min;
            }
        }
        exp_flush_in_place(weights);
        let mut start = 0;
        for &(end, w) in spans.iter() {
            let total: f64 = weights[start..end].iter().sum();
            for (&g, &e) in picks[start..end].iter().zip(&weights[start..end]) {
                row_coef[g] = w * (e / total);
            }
            start = end;
        }
        scratch.dists = dists;
        out.nearest[i] = d_min_best;
    }
    // P = coef · sharp for the whole block at once
    dot_block(coef, nb, &prep.grouped_sharp_t, m, c_count, out.probs);
    for i in 0..nb {
        let p = &mut out.probs[i * m..(i + 1) * m];
        out.alpha[i] = finish_row(p, out.nearest[i], prep, params, &mut out.ranked[i * params.top_k..(i + 1) * params.top_k]);
    }
    if let (Some(costs), Some(cost_out)) = (&prep.costs, out.cost) {
        // E = coef · costs with the same weights, then the same fallback blend
        dot_block(coef, nb, &costs.grouped_t, m, c_count, cost_out);
        for i in 0..nb {
            blend_costs(&mut cost_out[i * m..(i + 1) * m], out.alpha[i], &costs.global);
        }
    }
}

/// `e = (1 − alpha)·e + alpha·global` (no-op when `alpha` is 0, like the distribution's blend).
fn blend_costs(e: &mut [f64], alpha: f64, global: &[f64]) {
    if alpha > 0.0 {
        for (em, &g) in e.iter_mut().zip(global) {
            *em = (1.0 - alpha) * *em + alpha * g;
        }
    }
}

/// Soft routing of a block whose rows weigh few subjects: per subject, only the rows that weigh
/// it are multiplied with its centroids (gathered unless every row does), and each row adds
/// `w_s · Σ_k w_k·sharp_k` to its mixture directly.
// reason: the block's inputs, outputs and buffers; a struct would only rename them
#[allow(clippy::too_many_arguments)]
fn route_soft_grouped<T: Real>(
    x: &[T],
    norms: &[f64],
    weight: &[f64],
    prep: &Prepared<T>,
    params: &RouteParams,
    mut out: BlockOut<'_>,
    buf: &mut Buffers<T>,
) {
    let d = prep.d;
    let nb = out.subject.len();
    let m = prep.n_models;
    let s_count = prep.n_subjects;
    out.probs.fill(0.0);
    if let Some(cost_out) = out.cost.as_deref_mut() {
        cost_out.fill(0.0);
    }
    let Buffers { gathered, cdots, rows, scratch, .. } = buf;
    for s in 0..s_count {
        rows.clear();
        rows.extend((0..nb).filter(|&i| weight[i * s_count + s] != 0.0));
        if rows.is_empty() {
            continue;
        }
        let (lo, hi) = (prep.group_start[s], prep.group_start[s + 1]);
        let nc = hi - lo;
        cdots.clear();
        cdots.resize(rows.len() * nc, T::ZERO);
        let cents = &prep.grouped_cents[lo * d..hi * d];
        if rows.len() == nb {
            dot_block(x, nb, cents, nc, d, cdots);
        } else {
            gathered.clear();
            for &i in rows.iter() {
                gathered.extend_from_slice(&x[i * d..(i + 1) * d]);
            }
            dot_block(gathered, rows.len(), cents, nc, d, cdots);
        }
        for (r, &i) in rows.iter().enumerate() {
            let inv_norm = 1.0 / norms[i];
            let mut dists = std::mem::take(&mut scratch.dists);
            dists.clear();
            dists.extend(cdots[r * nc..(r + 1) * nc].iter().map(|&dot| 1.0 - dot.into() * inv_norm));
            let d_min = nearest_weights(&dists, params, scratch);
            scratch.dists = dists;
            let w = weight[i * s_count + s];
            let p = &mut out.probs[i * m..(i + 1) * m];
            for (&(_, j), &wj) in scratch.nearest.iter().zip(&scratch.weights) {
                let coef = w * wj;
                let c = prep.grouped_index[lo + j];
                for (pm, &sm) in p.iter_mut().zip(&prep.sharp[c * m..(c + 1) * m]) {
                    *pm += coef * sm;
                }
            }
            if let (Some(costs), Some(cost_out)) = (&prep.costs, out.cost.as_deref_mut()) {
                // E mixes the cost rows with the same weights as P
                let e = &mut cost_out[i * m..(i + 1) * m];
                for (&(_, j), &wj) in scratch.nearest.iter().zip(&scratch.weights) {
                    let coef = w * wj;
                    let c = prep.grouped_index[lo + j];
                    for (em, &cm) in e.iter_mut().zip(&costs.rows[c * m..(c + 1) * m]) {
                        *em += coef * cm;
                    }
                }
            }
            if s == out.subject[i] as usize {
                out.nearest[i] = d_min;
            }
        }
    }
    for i in 0..nb {
        let p = &mut out.probs[i * m..(i + 1) * m];
        out.alpha[i] = finish_row(p, out.nearest[i], prep, params, &mut out.ranked[i * params.top_k..(i + 1) * params.top_k]);
    }
    if let (Some(costs), Some(cost_out)) = (&prep.costs, out.cost) {
        for i in 0..nb {
            blend_costs(&mut cost_out[i * m..(i + 1) * m], out.alpha[i], &costs.global);
        }
    }
}

/// Largest subject (in centroids) whose nearest centroids [`select_nearest`] ranks without branches.
const RANK_SELECT_MAX: usize = 8;

/// Largest `k_nearest` whose nearest list [`select_by_insertion`] keeps in a fixed array.
const SMALL_K: usize = 8;

/// Reused per-row buffers of [`nearest_weights`].
#[derive(Default)]
struct Scratch {
    /// The nearest centroids so far: (distance, position), sorted by distance then position.
    nearest: Vec<(f64, usize)>,
    weights: Vec<f64>,
    /// Soft dense path: grouped centroid index of every weight in `weights` (one row, all subjects).
    picks: Vec<usize>,
    /// Soft dense path: (end of the subject's entries in `weights`, subject weight) per subject.
    spans: Vec<(usize, f64)>,
    /// Cosine distances of one query to the centroids being considered.
    dists: Vec<f64>,
}

/// The `k_nearest` nearest of one subject's centroids and their mixing weights
/// `softmax(−dist / distance_temp)`: fills `scratch.nearest` with (distance, position in `dists`)
/// pairs, nearest first, and `scratch.weights` with the normalised weights; returns the smallest
/// distance. `dists` are the query's cosine distances to the subject's centroids in ascending
/// centroid index order; ties in distance go to the lower index.
fn nearest_weights(dists: &[f64], params: &RouteParams, scratch: &mut Scratch) -> f64 {
    let d_min = select_nearest(dists, params.k_nearest, &mut scratch.nearest);
    let weights = &mut scratch.weights;
    weights.clear();
    // a few values: the inlined scalar exp (same bits as the vectorised one the dense path uses)
    weights.extend(scratch.nearest.iter().map(|&(dist, _)| exp_flush(weight_exponent(dist, d_min, params))));
    let total: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= total);
    d_min
}

/// Exponent of a centroid's unnormalised weight `exp(−(dist − d_min) / distance_temp)` (0 for the
/// nearest one, whose weight is exactly 1).
#[inline(always)]
fn weight_exponent(dist: f64, d_min: f64, params: &RouteParams) -> f64 {
    -(dist - d_min) / params.distance_temp
}

/// Fill `nearest` (cleared first) with the `min(k, dists.len())` smallest of `dists` as
/// (distance, position) pairs, sorted by distance then position; returns the smallest distance.
/// `dists` must not be empty.
fn select_nearest(dists: &[f64], k: usize, nearest: &mut Vec<(f64, usize)>) -> f64 {
    let k = k.min(dists.len());
    nearest.clear();
    if dists.len() <= RANK_SELECT_MAX {
        select_by_rank(dists, k, nearest);
    } else {
        select_by_insertion(dists, k, nearest);
    }
    nearest[0].0
}

/// [`select_nearest`] for at most [`RANK_SELECT_MAX`] distances (the usual subject): every entry's
/// rank is the count of entries ordered before it, computed without a data-dependent branch (the
/// insertion mispredicts on about every other entry of random data). The ranks are a permutation,
/// so `sorted` ends up as the whole list in order. O(len²) comparisons.
#[inline]
fn select_by_rank(dists: &[f64], k: usize, nearest: &mut Vec<(f64, usize)>) {
    let mut sorted = [(0.0, 0usize); RANK_SELECT_MAX];
    for (j, &dj) in dists.iter().enumerate() {
        let mut rank = 0usize;
        for (i, &di) in dists.iter().enumerate() {
            rank += ((di < dj) | ((di == dj) & (i < j))) as usize;
        }
        sorted[rank] = (dj, j);
    }
    nearest.extend_from_slice(&sorted[..k]);
}

/// [`select_nearest`] for any number of distances: insertion into a list of at most `k` kept
/// sorted by (distance, position). Positions arrive in increasing order, so an entry goes behind
/// every kept entry at the same distance, and one not below the k-th kept distance is dropped at
/// once. O(len·k).
fn select_by_insertion(dists: &[f64], k: usize, nearest: &mut Vec<(f64, usize)>) {
    if k <= SMALL_K {
        // the list lives in registers / on the stack
        let mut best = [(f64::INFINITY, 0usize); SMALL_K];
        let mut len = 0;
        for (j, &dist) in dists.iter().enumerate() {
            if len == k {
                if dist >= best[k - 1].0 {
                    continue;
                }
                len -= 1;
            }
            let mut pos = len;
            while pos > 0 && best[pos - 1].0 > dist {
                best[pos] = best[pos - 1];
                pos -= 1;
            }
            best[pos] = (dist, j);
            len += 1;
        }
        nearest.extend_from_slice(&best[..len]);
    } else {
        for (j, &dist) in dists.iter().enumerate() {
            if nearest.len() == k {
                if dist >= nearest[k - 1].0 {
                    continue;
                }
                nearest.pop();
            }
            let mut pos = nearest.len();
            while pos > 0 && nearest[pos - 1].0 > dist {
                pos -= 1;
            }
            nearest.insert(pos, (dist, j));
        }
    }
}

/// Add `Σ_k w_k·sharp_k` over the `k_nearest` nearest of one subject's centroids (grouped rows
/// `first..first + dists.len()`) to `p`; returns the smallest distance (see [`nearest_weights`]).
fn mix_subject<T>(dists: &[f64], first: usize, prep: &Prepared<T>, params: &RouteParams, scratch: &mut Scratch, p: &mut [f64]) -> f64 {
    let m = prep.n_models;
    let d_min = nearest_weights(dists, params, scratch);
    for (&(_, j), &w) in scratch.nearest.iter().zip(&scratch.weights) {
        let c = prep.grouped_index[first + j];
        for (pm, &sm) in p.iter_mut().zip(&prep.sharp[c * m..(c + 1) * m]) {
            *pm += w * sm;
        }
    }
    d_min
}

/// Blend `p` toward the global distribution by the fallback weight of `d_min`, write the top-k
/// into `ranked`, and return the weight `alpha`.
fn finish_row<T>(p: &mut [f64], d_min: f64, prep: &Prepared<T>, params: &RouteParams, ranked: &mut [i64]) -> f64 {
    let alpha = if d_min > params.fallback_distance {
        ((d_min - params.fallback_distance) / params.fallback_width).min(1.0)
    } else {
        0.0
    };
    if alpha > 0.0 {
        for (pm, &g) in p.iter_mut().zip(&prep.global) {
            *pm = (1.0 - alpha) * *pm + alpha * g;
        }
    }
    top_k_into(p, ranked);
    alpha
}

/// Indices of the `ranked.len()` largest entries of `p`, largest first, ties to the lower index.
fn top_k_into(p: &[f64], ranked: &mut [i64]) {
    let mut taken = [false; 64];
    let mut taken_vec: Vec<bool>;
    let taken: &mut [bool] = if p.len() <= taken.len() {
        &mut taken[..p.len()]
    } else {
        taken_vec = vec![false; p.len()];
        &mut taken_vec
    };
    for slot in ranked.iter_mut() {
        let mut best: Option<usize> = None;
        for (j, &v) in p.iter().enumerate() {
            if !taken[j] && best.is_none_or(|b| v > p[b]) {
                best = Some(j);
            }
        }
        let b = best.expect("top_k <= number of models");
        taken[b] = true;
        *slot = b as i64;
    }
}

/// `v` in chunks of `chunk` values, or `n_blocks` times `None` when there is no `v`.
fn optional_blocks(v: Option<&mut [f64]>, chunk: usize, n_blocks: usize) -> Vec<Option<&mut [f64]>> {
    match v {
        Some(v) => v.chunks_mut(chunk).map(Some).collect(),
        None => (0..n_blocks).map(|_| None).collect(),
    }
}

/// Whether [`route_batch_with`] routes `n` queries as one block on the calling thread, without the
/// thread pool (a gateway's micro-batches: handing a few rows to a pool thread and waiting for it
/// costs more than routing them, and on a busy machine the pool thread may wait for a core).
pub fn runs_in_one_block(n: usize) -> bool {
    n <= ROW_BLOCK
}

/// Route `n` queries (`x`: row-major `n × d`) with a trained CASCAL model; see the module docs.
pub fn route_batch<T: Real>(
    x: &[T],
    n: usize,
    d: usize,
    model: &RoutingModel<'_, T>,
    params: &RouteParams,
) -> KResult<RouteOutput> {
    route_batch_with(x, n, d, model, params, Outputs::default())
}

/// [`route_batch`] with the optional `outputs` asked for too.
pub fn route_batch_with<T: Real>(
    x: &[T],
    n: usize,
    d: usize,
    model: &RoutingModel<'_, T>,
    params: &RouteParams,
    outputs: Outputs,
) -> KResult<RouteOutput> {
    if x.len() != n * d {
        return Err(KernelError::new("X", format!("expected {n}x{d} = {} values, got {}", n * d, x.len())));
    }
    let prep = prepare(model, d, params)?;
    let m = prep.n_models;
    let k = params.top_k;
    let mut out = RouteOutput {
        probs: try_zeroed("X", "routing probabilities", checked_len("X", "routing probabilities", &[n, m])?)?,
        ranked: try_zeroed("top_k", "ranked models", checked_len("top_k", "ranked models", &[n, k])?)?,
        subject: try_zeroed("X", "subjects", n)?,
        nearest_distance: try_zeroed("X", "nearest distances", n)?,
        alpha: try_zeroed("X", "fallback weights", n)?,
        expected_cost: match prep.costs {
            Some(_) => Some(try_zeroed("centroid_costs", "expected costs", checked_len("centroid_costs", "expected costs", &[n, m])?)?),
            None => None,
        },
        subject_weights: if outputs.subject_weights {
            let s = prep.n_subjects;
            Some(try_zeroed("X", "subject weights", checked_len("X", "subject weights", &[n, s])?)?)
        } else {
            None
        },
    };
    if n == 0 {
        return Ok(out);
    }
    if runs_in_one_block(n) {
        // one block: computed on the calling thread, the same way a pool worker would compute it
        let block = BlockOut {
            probs: &mut out.probs,
            ranked: &mut out.ranked,
            subject: &mut out.subject,
            nearest: &mut out.nearest_distance,
            alpha: &mut out.alpha,
            cost: out.expected_cost.as_deref_mut(),
            subject_weights: out.subject_weights.as_deref_mut(),
        };
        route_block(x, 0, &prep, params, block, &mut Buffers::default())?;
        return Ok(out);
    }
    // one optional block per row block of each optional output (`None` when it is not computed)
    let n_blocks = n.div_ceil(ROW_BLOCK);
    let mut cost_blocks = optional_blocks(out.expected_cost.as_deref_mut(), ROW_BLOCK * m, n_blocks);
    let mut weight_blocks = optional_blocks(out.subject_weights.as_deref_mut(), ROW_BLOCK * prep.n_subjects, n_blocks);
    let results: Vec<KResult<()>> = x
        .par_chunks(ROW_BLOCK * d)
        .zip(out.probs.par_chunks_mut(ROW_BLOCK * m))
        .zip(out.ranked.par_chunks_mut(ROW_BLOCK * k))
        .zip(out.subject.par_chunks_mut(ROW_BLOCK))
        .zip(out.nearest_distance.par_chunks_mut(ROW_BLOCK))
        .zip(out.alpha.par_chunks_mut(ROW_BLOCK))
        .zip(cost_blocks.par_iter_mut())
        .zip(weight_blocks.par_iter_mut())
        .enumerate()
        .map_init(Buffers::default, |buf, (b, (((((((xb, probs), ranked), subject), nearest), alpha), cost), weights))| {
            let out = BlockOut { probs, ranked, subject, nearest, alpha, cost: cost.take(), subject_weights: weights.take() };
            route_block(xb, b * ROW_BLOCK, &prep, params, out, buf)
        })
        .collect();
    results.into_iter().collect::<KResult<Vec<()>>>()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model<'a>(
        reps: &'a [f64],
        cents: &'a [f64],
        cs: &'a [i64],
        scores: &'a [f64],
        global: &'a [f64],
    ) -> RoutingModel<'a, f64> {
        RoutingModel { subject_reps: reps, centroids: cents, centroid_subject: cs, centroid_scores: scores, global_scores: global, costs: None }
    }

    #[test]
    fn single_centroid_gives_its_sharpened_scores() {
        let reps = [1.0, 0.0, 0.0, 1.0];
        let cents = [1.0, 0.0, 0.0, 1.0];
        let scores = [0.9, 0.1, 0.2, 0.8];
        let global = [0.5, 0.5];
        let m = model(&reps, &cents, &[0, 1], &scores, &global);
        let p = RouteParams { top_k: 2, ..Default::default() };
        let out = route_batch(&[2.0, 0.1, 0.0, -3.0], 2, 2, &m, &p).unwrap();
        assert_eq!(out.subject, vec![0, 0]);
        // first query: close to centroid 0, no fallback; P = softmax([9, 1]) exactly.
        let e = (-8.0f64).exp();
        assert!((out.probs[0] - 1.0 / (1.0 + e)).abs() < 1e-12);
        assert_eq!(&out.ranked[..2], &[0, 1]);
        assert_eq!(out.alpha[0], 0.0);
        // second query (0, -3): distance 1 to both reps -> subject 0 (tie), centroid distance 1 -> alpha 1.
        assert_eq!(out.alpha[1], 1.0);
        assert!((out.probs[2] - 0.5).abs() < 1e-12);
        assert_eq!(&out.ranked[2..], &[0, 1]);
    }

    #[test]
    fn rejects_bad_input() {
        let reps = [1.0, 0.0];
        let cents = [1.0, 0.0];
        let g = [0.1, 0.2];
        let p = RouteParams { top_k: 2, ..Default::default() };
        let m = model(&reps, &cents, &[0], &[0.1, 0.2], &g);
        assert_eq!(route_batch(&[0.0, 0.0], 1, 2, &m, &p).unwrap_err().arg, "X");
        assert_eq!(route_batch(&[f64::NAN, 0.0], 1, 2, &m, &p).unwrap_err().arg, "X");
        let bad = model(&reps, &cents, &[1], &[0.1, 0.2], &g);
        assert_eq!(route_batch(&[1.0, 0.0], 1, 2, &bad, &p).unwrap_err().arg, "centroid_subject");
        let too_many = RouteParams { top_k: 3, ..p };
        assert_eq!(route_batch(&[1.0, 0.0], 1, 2, &m, &too_many).unwrap_err().arg, "top_k");
        let nan_global = model(&reps, &cents, &[0], &[0.1, 0.2], &[f64::NAN, f64::NAN]);
        assert_eq!(route_batch(&[1.0, 0.0], 1, 2, &nan_global, &p).unwrap_err().arg, "global_scores");
    }

    #[test]
    fn soft_assignment_mixes_subjects_by_their_distance() {
        // two subjects, one centroid each; scores make subject 0 prefer model 0 and subject 1 model 1
        let reps = [1.0, 0.0, 0.0, 1.0];
        let cents = [1.0, 0.0, 0.0, 1.0];
        let scores = [1.0, 0.0, 0.0, 1.0];
        let global = [0.5, 0.5];
        let m = model(&reps, &cents, &[0, 1], &scores, &global);
        let (st, tau) = (0.1, 0.5);
        let p = RouteParams { top_k: 2, subject_temp: st, score_temp: tau, fallback_distance: 1.5, ..Default::default() };
        let c = 0.6f64; // query at angle with cos 0.6 to subject 0 and 0.8 to subject 1
        let out = route_batch(&[c, 0.8], 1, 2, &m, &p).unwrap();
        assert_eq!(out.subject, vec![1]);
        assert!((out.nearest_distance[0] - 0.2).abs() < 1e-12);
        // pi_1 / pi_0 = exp(0.2 / 0.1); each subject's distribution is softmax(score / 0.5)
        let pi1 = 1.0 / (1.0 + (-0.2f64 / st).exp());
        let sharp_hi = 1.0 / (1.0 + (-1.0f64 / tau).exp());
        let expected_p1 = pi1 * sharp_hi + (1.0 - pi1) * (1.0 - sharp_hi);
        assert!((out.probs[1] - expected_p1).abs() < 1e-12, "{} vs {expected_p1}", out.probs[1]);
        assert!((out.probs[0] + out.probs[1] - 1.0).abs() < 1e-12);
        assert_eq!(out.ranked, vec![1, 0]);
    }

    #[test]
    fn tiny_subject_temp_matches_hard_assignment() {
        let reps = [1.0, 0.0, 0.6, 0.8, 0.0, 1.0];
        let cents = [1.0, 0.1, 0.9, 0.2, 0.5, 0.9, 0.1, 1.0];
        let scores = [0.9, 0.1, 0.3, 0.2, 0.8, 0.1, 0.4, 0.4, 0.5, f64::NAN, 0.7, 0.2];
        let global = [0.5, 0.4, 0.3];
        let m = model(&reps, &cents, &[0, 0, 1, 2], &scores, &global);
        let x = [1.0, 0.3, 0.2, 1.0, 0.7, 0.7, -0.3, 1.0, 0.9, -0.2];
        let hard = RouteParams { k_nearest: 2, ..Default::default() };
        let soft = RouteParams { subject_temp: 1e-4, ..hard };
        let a = route_batch(&x, 5, 2, &m, &hard).unwrap();
        let b = route_batch(&x, 5, 2, &m, &soft).unwrap();
        assert_eq!(a.subject, b.subject);
        assert_eq!(a.ranked, b.ranked);
        assert_eq!(a.nearest_distance, b.nearest_distance);
        for (u, v) in a.probs.iter().zip(&b.probs) {
            assert!((u - v).abs() < 1e-12);
        }
        let bad = RouteParams { subject_temp: -1.0, ..hard };
        assert_eq!(route_batch(&x, 5, 2, &m, &bad).unwrap_err().arg, "subject_temp");
        let nan = RouteParams { subject_temp: f64::NAN, ..hard };
        assert_eq!(route_batch(&x, 5, 2, &m, &nan).unwrap_err().arg, "subject_temp");
    }

    #[test]
    fn nearest_weights_orders_by_distance_then_index() {
        let params = RouteParams { k_nearest: 3, distance_temp: 0.5, ..Default::default() };
        let mut scratch = Scratch::default();
        // the selection swaps position 1 behind position 2 on the way; the tie must still go to 1
        let d_min = nearest_weights(&[0.1, 0.5, 0.5, 0.05], &params, &mut scratch);
        assert_eq!(d_min, 0.05);
        assert_eq!(scratch.nearest, vec![(0.05, 3), (0.1, 0), (0.5, 1)]);
        let raw = [1.0, (-0.05f64 / 0.5).exp(), (-0.45f64 / 0.5).exp()];
        let total: f64 = raw.iter().sum();
        for (w, r) in scratch.weights.iter().zip(raw) {
            assert!((w - r / total).abs() < 1e-15);
        }
        // k above the count keeps every centroid
        let wide = RouteParams { k_nearest: 9, ..params };
        nearest_weights(&[0.3, 0.3], &wide, &mut scratch);
        assert_eq!(scratch.nearest, vec![(0.3, 0), (0.3, 1)]);
        assert_eq!(scratch.weights, vec![0.5, 0.5]);
    }

    #[test]
    fn cost_table_is_the_linear_mix_of_the_routing_weights() {
        // one subject, two centroids, fallback in play for the far query; soft and hard agree
        let reps = [1.0, 0.0, 0.0, 1.0];
        let cents = [1.0, 0.0, 0.8, 0.6, 0.0, 1.0];
        let scores = [0.9, 0.1, 0.4, 0.6, f64::NAN, f64::NAN];
        let global = [0.5, 0.4];
        let ccosts = [1.0, 10.0, 3.0, 30.0, 7.0, 70.0];
        let gcosts = [2.0, 20.0];
        let base = model(&reps, &cents, &[0, 0, 1], &scores, &global);
        let with = RoutingModel { costs: Some(CostTable { centroid_costs: &ccosts, global_costs: &gcosts }), ..base };
        let x = [1.0, 0.2, 0.9, 0.5, -0.2, 1.0, -1.0, -0.1];
        for subject_temp in [0.0, 0.3] {
            let p = RouteParams { top_k: 2, k_nearest: 2, distance_temp: 0.2, fallback_distance: 0.3, fallback_width: 0.5, subject_temp, ..Default::default() };
            let a = route_batch(&x, 4, 2, &base, &p).unwrap();
            let b = route_batch(&x, 4, 2, &with, &p).unwrap();
            assert!(a.expected_cost.is_none());
            // the costs change nothing else
            assert_eq!((&a.probs, &a.ranked, &a.alpha), (&b.probs, &b.ranked, &b.alpha));
            let e = b.expected_cost.unwrap();
            // model 1 costs are 10x model 0 costs everywhere, so the mixes are too
            for i in 0..4 {
                assert!((e[i * 2 + 1] - 10.0 * e[i * 2]).abs() < 1e-9, "{e:?}");
                assert!(e[i * 2] >= 1.0 - 1e-12 && e[i * 2] <= 7.0 + 1e-12);
            }
            // the (-1, -0.1) query is far from every centroid: alpha = 1, pure global costs
            assert_eq!(b.alpha[3], 1.0);
            assert!((e[6] - 2.0).abs() < 1e-12);
        }
        // hard path, by hand: query (1, 0.2) mixes centroids 0 and 1 of subject 0
        let p = RouteParams { top_k: 1, k_nearest: 2, distance_temp: 0.2, fallback_distance: 1.5, ..Default::default() };
        let out = route_batch(&x[..2], 1, 2, &with, &p).unwrap();
        let norm = (1.0f64 + 0.04).sqrt();
        let d0 = 1.0 - 1.0 / norm;
        let d1 = 1.0 - (0.8 + 0.12) / norm;
        let (w0, w1) = if d0 <= d1 { (1.0, (-(d1 - d0) / 0.2).exp()) } else { ((-(d0 - d1) / 0.2).exp(), 1.0) };
        let expected = (w0 * 1.0 + w1 * 3.0) / (w0 + w1);
        assert!((out.expected_cost.unwrap()[0] - expected).abs() < 1e-12);
        // an all-NaN score row stands in for the global ranking, so it costs the global costs
        let out = route_batch(&[0.0, 1.0], 1, 2, &with, &RouteParams { top_k: 1, ..p }).unwrap();
        assert!((out.expected_cost.unwrap()[0] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_cost_tables() {
        let reps = [1.0, 0.0];
        let cents = [1.0, 0.0];
        let p = RouteParams { top_k: 2, ..Default::default() };
        let base = model(&reps, &cents, &[0], &[0.1, 0.2], &[0.1, 0.2]);
        let table = |c: &'static [f64], g: &'static [f64]| RoutingModel { costs: Some(CostTable { centroid_costs: c, global_costs: g }), ..base };
        assert_eq!(route_batch(&[1.0, 0.0], 1, 2, &table(&[1.0], &[1.0, 2.0]), &p).unwrap_err().arg, "centroid_costs");
        assert_eq!(route_batch(&[1.0, 0.0], 1, 2, &table(&[1.0, f64::NAN], &[1.0, 2.0]), &p).unwrap_err().arg, "centroid_costs");
        assert_eq!(route_batch(&[1.0, 0.0], 1, 2, &table(&[1.0, 2.0], &[1.0]), &p).unwrap_err().arg, "global_costs");
        assert_eq!(route_batch(&[1.0, 0.0], 1, 2, &table(&[1.0, 2.0], &[1.0, f64::INFINITY]), &p).unwrap_err().arg, "global_costs");
    }

    #[test]
    fn rank_and_insertion_selection_agree_on_ties_and_signed_zeros() {
        // small integer grid values make ties common; -0.0 must tie with 0.0 (lower index first)
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut by_rank, mut by_insertion) = (Vec::new(), Vec::new());
        for _ in 0..20_000 {
            let len = 1 + (next() % RANK_SELECT_MAX as u64) as usize;
            let dists: Vec<f64> = (0..len)
                .map(|_| match next() % 7 {
                    0 => 0.0,
                    1 => -0.0,
                    r => (r as f64) * 0.25 - if next() % 2 == 0 { 1.0 } else { 0.5 },
                })
                .collect();
            for k in 1..=len + 1 {
                by_rank.clear();
                by_insertion.clear();
                let k = k.min(len);
                select_by_rank(&dists, k, &mut by_rank);
                select_by_insertion(&dists, k, &mut by_insertion);
                assert_eq!(by_rank, by_insertion, "dists {dists:?}, k {k}");
                // bitwise: the two zeros are told apart by the position they carry
                assert!(by_rank.iter().zip(&by_insertion).all(|(a, b)| a.0.to_bits() == b.0.to_bits()));
            }
        }
        // a subject just above the rank limit goes through the insertion
        let wide: Vec<f64> = (0..RANK_SELECT_MAX + 1).map(|i| ((i * 5) % 7) as f64).collect();
        let mut nearest = Vec::new();
        assert_eq!(select_nearest(&wide, 3, &mut nearest), 0.0);
        assert_eq!(nearest, vec![(0.0, 0), (0.0, 7), (1.0, 3)]);
    }

    #[test]
    fn subject_weights_are_the_mixing_weights_and_change_nothing_else() {
        let reps = [1.0, 0.0, 0.6, 0.8, 0.0, 1.0];
        let cents = [1.0, 0.1, 0.9, 0.2, 0.5, 0.9, 0.1, 1.0];
        let scores = [0.9, 0.1, 0.3, 0.2, 0.8, 0.1, 0.4, 0.4, 0.5, f64::NAN, 0.7, 0.2];
        let global = [0.5, 0.4, 0.3];
        let m = model(&reps, &cents, &[0, 0, 1, 2], &scores, &global);
        let x = [1.0, 0.3, 0.2, 1.0, 0.7, 0.7, -0.3, 1.0, 0.9, -0.2];
        let asked = Outputs { subject_weights: true };
        for subject_temp in [0.0, 0.05, 0.5] {
            let p = RouteParams { k_nearest: 2, subject_temp, ..Default::default() };
            let plain = route_batch(&x, 5, 2, &m, &p).unwrap();
            assert!(plain.subject_weights.is_none());
            let with = route_batch_with(&x, 5, 2, &m, &p, asked).unwrap();
            let w = with.subject_weights.clone().unwrap();
            assert_eq!(RouteOutput { subject_weights: None, ..with }, plain);
            for (i, row) in w.chunks_exact(3).enumerate() {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{row:?}");
                let chosen = plain.subject[i] as usize;
                if subject_temp == 0.0 {
                    let mut one_hot = [0.0; 3];
                    one_hot[chosen] = 1.0;
                    assert_eq!(row, one_hot);
                } else {
                    // softmax(-subject distance / subject_temp): the chosen subject weighs most
                    assert!(row.iter().all(|&v| v <= row[chosen]));
                }
            }
        }
        // by hand: query (0.6, 0.8) sits on subject 1; pi_0 / pi_1 = exp(-(0.4) / T)
        let p = RouteParams { subject_temp: 0.5, ..Default::default() };
        let w = route_batch_with(&[0.6, 0.8], 1, 2, &m, &p, asked).unwrap().subject_weights.unwrap();
        let (e0, e2) = ((-0.4f64 / 0.5).exp(), (-0.2f64 / 0.5).exp());
        let total = 1.0 + e0 + e2;
        for (got, want) in w.iter().zip([e0 / total, 1.0 / total, e2 / total]) {
            assert!((got - want).abs() < 1e-12, "{w:?}");
        }
        // an empty batch has an empty (0 x S) matrix
        assert_eq!(route_batch_with(&[], 0, 2, &m, &p, asked).unwrap().subject_weights, Some(vec![]));
    }

    #[test]
    fn top_k_ties_prefer_lower_index() {
        let mut r = [0i64; 3];
        top_k_into(&[0.2, 0.4, 0.4, 0.0], &mut r);
        assert_eq!(r, [1, 2, 0]);
    }
}
