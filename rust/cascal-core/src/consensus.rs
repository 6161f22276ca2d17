//! Confidence-weighted consensus voting over a response matrix (docs/algorithm.md#consensus-scores).
//!
//! Input is a row-major `n_q × n_m` matrix of answer codes (`0..n_options[q]` = option, `-1` = no
//! letter extracted, `-2` = not asked) and optionally a matching matrix of mean token logprobs.
//! For every question the kernel computes a softmax posterior over the question's options from
//! logprob-weighted votes, scores every model by the posterior of the option it chose, and reports
//! the count-based plurality (which models chose a most-voted option) and agreement ratio.
//!
//! Definitions (exactly what [`consensus_scores`] computes):
//! - `mu_m`, `sigma_m`: median and `1.4826·MAD` of model `m`'s finite logprobs ([`robust_stats`]);
//!   fallback to the population standard deviation, then to 1; a model without finite logprob gets
//!   `(0, 1)`.
//! - `z = (lp − mu)/sigma` (0 where the logprob is NaN), `w = clamp(sigmoid(z_scale·z), lo, hi)`
//!   (`w = 0.5` everywhere without logprobs).
//! - `v_c = Σ_m w_m·[a_m = c]`, `p_c = softmax_c(v_c / tau)` over the question's `n_options`.
//! - `score = p_{a_m}` for an answering model, 0 for `-1`, NaN for `-2`.
//! - Plurality uses model *counts*: the plurality classes are the options chosen by the largest
//!   number of models (all tied options count); `plurality[q, m]` is true when model `m` chose one
//!   of them; `agreement[q] = max count / number of models with a valid option` (0 when none);
//!   `majority[q]` = the lowest-index plurality class, −1 when no model gave a valid option.

use rayon::prelude::*;

use crate::alloc::{checked_len, try_vec, try_zeroed};
use crate::error::{KResult, KernelError};
use crate::fastexp::exp_vectorisable;

/// Largest number of options a question may have.
pub const MAX_OPTIONS: usize = 20;
/// Answer code: the model answered but no option could be extracted.
pub const NO_ANSWER: i8 = -1;
/// Answer code: the model was not asked this question.
pub const NOT_ASKED: i8 = -2;

/// Scale factor that makes the MAD a consistent estimator of a normal standard deviation.
const MAD_TO_SIGMA: f64 = 1.4826;
/// Rows handled by one rayon task.
const ROW_BLOCK: usize = 2048;

/// Tunable constants of the vote; defaults in [`ConsensusParams::default`] (`z_scale = 1`,
/// `tau = 1`, clamp `(0.01, 0.99)`), the same as those of the Python `cascal.kernels.ConsensusParams`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsensusParams {
    /// Slope of the sigmoid mapping z-scored logprobs to vote weights (finite).
    pub z_scale: f64,
    /// Softmax temperature of the posterior over options (finite, > 0).
    pub tau: f64,
    /// Lower bound of a vote weight (`0 <= clamp_lo <= clamp_hi`).
    pub clamp_lo: f64,
    /// Upper bound of a vote weight (`clamp_hi <= 1`).
    pub clamp_hi: f64,
}

impl Default for ConsensusParams {
    fn default() -> Self {
        Self { z_scale: 1.0, tau: 1.0, clamp_lo: 0.01, clamp_hi: 0.99 }
    }
}

impl ConsensusParams {
    fn validate(&self) -> KResult<()> {
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(KernelError::new("tau", format!("must be a finite number > 0, got {}", self.tau)));
        }
        if !self.z_scale.is_finite() {
            return Err(KernelError::new("z_scale", format!("must be finite, got {}", self.z_scale)));
        }
        let (lo, hi) = (self.clamp_lo, self.clamp_hi);
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= 1.0) {
            return Err(KernelError::new("clamp", format!("must satisfy 0 <= lo <= hi <= 1, got ({lo}, {hi})")));
        }
        Ok(())
    }
}

/// Everything [`consensus_scores`] returns; matrices are row-major `n_q × n_m`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsensusOutput {
    /// Posterior of the chosen option (0 for `-1`, NaN for `-2`).
    pub scores: Vec<f32>,
    /// Model chose one of the count-plurality options.
    pub plurality: Vec<bool>,
    /// Largest option count over the number of models with a valid option (0 if none).
    pub agreement: Vec<f64>,
    /// Lowest-index plurality option, −1 when no model gave a valid option.
    pub majority: Vec<i8>,
    /// Per-model logprob location used for the z-scores.
    pub mu: Vec<f64>,
    /// Per-model logprob scale used for the z-scores.
    pub sigma: Vec<f64>,
}

/// Median of non-empty, NaN-free `values` (mean of the two middle values for an even count);
/// reorders `values`.
#[inline]
fn median(values: &mut [f64]) -> f64 {
    let n = values.len();
    let (lower, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return upper;
    }
    let lower = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum = lower + upper;
    if sum.is_finite() {
        sum / 2.0
    } else {
        lower / 2.0 + upper / 2.0
    }
}

/// Robust location and scale of one model's non-NaN logprobs `finite` (see the module docs).
/// `finite` is overwritten by the absolute deviations; `originals()` gathers the values again for
/// the rare standard-deviation fallback.
fn column_stats(mut finite: Vec<f64>, originals: impl Fn() -> Vec<f64>) -> (f64, f64) {
    if finite.is_empty() {
        return (0.0, 1.0);
    }
    let mu = median(&mut finite);
    // the MAD selects on |x - mu| computed once, in place: no second column-sized buffer
    for v in finite.iter_mut() {
        *v = (*v - mu).abs();
    }
    let mad_sigma = MAD_TO_SIGMA * median(&mut finite);
    if mad_sigma.is_finite() && mad_sigma > 0.0 {
        return (mu, mad_sigma);
    }
    // fallback: population standard deviation (rarely needed, so computed only here)
    let finite = originals();
    let n = finite.len() as f64;
    let mean = finite.iter().sum::<f64>() / n;
    let std = (finite.iter().map(|&x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
    if std.is_finite() && std > 0.0 {
        (mu, std)
    } else {
        (mu, 1.0)
    }
}

/// Rows per task when splitting the logprob matrix into columns.
const GATHER_ROWS: usize = 1 << 15;

/// The non-NaN values of column `m` of a row-major `· × n_m` matrix, in row order.
fn gather_column<T: Copy + Into<f64>>(logprobs: &[T], n_m: usize, m: usize) -> Vec<f64> {
    logprobs.chunks_exact(n_m).map(|row| row[m].into()).filter(|v: &f64| !v.is_nan()).collect()
}

/// Per-model columns of the non-NaN logprobs. Row blocks are split in parallel: a first pass counts
/// each block's non-NaN values per model, so every block then writes its values straight to their
/// final place (row order kept, no second copy of the matrix).
fn gather_columns<T: Copy + Into<f64> + Sync>(logprobs: &[T], n_q: usize, n_m: usize) -> KResult<Vec<Vec<f64>>> {
    let block = GATHER_ROWS * n_m;
    let counts: Vec<Vec<usize>> = logprobs
        .par_chunks(block)
        .map(|rows| {
            let mut c = vec![0usize; n_m];
            for row in rows.chunks_exact(n_m) {
                for (k, &v) in c.iter_mut().zip(row) {
                    *k += usize::from(!v.into().is_nan());
                }
            }
            c
        })
        .collect();
    let mut totals = vec![0usize; n_m];
    for c in &counts {
        for (t, &k) in totals.iter_mut().zip(c) {
            *t += k;
        }
    }
    // zeroed, so safe code can hand them out in pieces (fresh pages: no pass over the memory)
    let mut columns: Vec<Vec<f64>> = totals
        .iter()
        .map(|&t| try_zeroed("logprobs", "per-model logprob columns", t))
        .collect::<KResult<_>>()?;
    // pieces[b][m]: the counts[b][m] entries of column m that block b fills, in block order
    let mut pieces: Vec<Vec<&mut [f64]>> = counts.iter().map(|_| Vec::with_capacity(n_m)).collect();
    for (m, col) in columns.iter_mut().enumerate() {
        let mut rest: &mut [f64] = col;
        for (piece, c) in pieces.iter_mut().zip(&counts) {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(c[m]);
            piece.push(head);
            rest = tail;
        }
    }
    logprobs.par_chunks(block).zip(pieces.into_par_iter()).for_each(|(rows, mut outs)| {
        let mut at = vec![0usize; n_m];
        for row in rows.chunks_exact(n_m) {
            for ((&v, out), pos) in row.iter().zip(outs.iter_mut()).zip(at.iter_mut()) {
                let v: f64 = v.into();
                if !v.is_nan() {
                    out[*pos] = v;
                    *pos += 1;
                }
            }
        }
    });
    debug_assert_eq!(logprobs.len(), n_q * n_m);
    Ok(columns)
}

/// Per-model `(mu, sigma)` of a row-major `n_q × n_m` logprob matrix (see the module docs).
///
/// NaN entries are ignored; infinite entries are rejected.
pub fn robust_stats<T>(logprobs: &[T], n_q: usize, n_m: usize) -> KResult<(Vec<f64>, Vec<f64>)>
where
    T: Copy + Into<f64> + Send + Sync,
{
    check_logprobs(logprobs, n_q, n_m)?;
    if n_m == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let columns = gather_columns(logprobs, n_q, n_m)?;
    let stats: Vec<(f64, f64)> = columns
        .into_par_iter()
        .enumerate()
        .map(|(m, col)| column_stats(col, || gather_column(logprobs, n_m, m)))
        .collect();
    Ok(stats.into_iter().unzip())
}

fn check_logprobs<T: Copy + Into<f64> + Sync>(logprobs: &[T], n_q: usize, n_m: usize) -> KResult<()> {
    if logprobs.len() != n_q * n_m {
        return Err(KernelError::new(
            "logprobs",
            format!("expected {n_q}x{n_m} = {} values, got {}", n_q * n_m, logprobs.len()),
        ));
    }
    let is_inf = |x: &T| {
        let v: f64 = (*x).into();
        v.is_infinite()
    };
    // scan in large chunks: rayon's per-element position_first costs more than the kernel itself
    const CHUNK: usize = 1 << 16;
    let bad_chunk = logprobs.par_chunks(CHUNK).position_first(|chunk| chunk.iter().any(is_inf));
    let bad = bad_chunk.and_then(|c| {
        let start = c * CHUNK;
        logprobs[start..].iter().position(is_inf).map(|i| start + i)
    });
    if let Some(i) = bad {
        let v: f64 = logprobs[i].into();
        return Err(KernelError::new(
            "logprobs",
            format!("row {}, column {} is {v}; only finite values or NaN (unknown) are allowed", i / n_m.max(1), i % n_m.max(1)),
        ));
    }
    Ok(())
}

fn check_answers(answers: &[i8], n_options: &[i8], n_q: usize, n_m: usize) -> KResult<()> {
    if answers.len() != n_q * n_m {
        return Err(KernelError::new(
            "answers",
            format!("expected {n_q}x{n_m} = {} values, got {}", n_q * n_m, answers.len()),
        ));
    }
    if n_options.len() != n_q {
        return Err(KernelError::new("n_options", format!("expected {n_q} values, got {}", n_options.len())));
    }
    if let Some(q) = n_options.iter().position(|&k| !(2..=MAX_OPTIONS as i8).contains(&k)) {
        return Err(KernelError::new(
            "n_options",
            format!("row {q} has {} options; every question needs 2..{MAX_OPTIONS}", n_options[q]),
        ));
    }
    if n_m == 0 {
        return Ok(());
    }
    let row_is_bad = |row: &[i8], k: i8| row.iter().any(|&a| a < NOT_ASKED || a >= k);
    let bad_block = answers
        .par_chunks(ROW_BLOCK * n_m)
        .zip(n_options.par_chunks(ROW_BLOCK))
        .position_first(|(rows, ks)| rows.chunks_exact(n_m).zip(ks).any(|(row, &k)| row_is_bad(row, k)));
    let bad_row = bad_block.and_then(|b| {
        let first = b * ROW_BLOCK;
        (first..n_q).find(|&q| row_is_bad(&answers[q * n_m..(q + 1) * n_m], n_options[q]))
    });
    if let Some(q) = bad_row {
        let row = &answers[q * n_m..(q + 1) * n_m];
        let m = row.iter().position(|&a| a < NOT_ASKED || a >= n_options[q]).unwrap_or(0);
        return Err(KernelError::new(
            "answers",
            format!(
                "row {q}, column {m} has code {}; allowed are -2 (not asked), -1 (no answer) and options 0..{}",
                row[m],
                n_options[q] - 1
            ),
        ));
    }
    Ok(())
}

/// Vote weight of one response; `lp` is NaN when unknown.
#[inline(always)]
fn vote_weight(lp: f64, mu: f64, sigma: f64, p: &ConsensusParams) -> f64 {
    let z = if lp.is_nan() { 0.0 } else { (lp - mu) / sigma };
    let x = p.z_scale * z;
    // NaN only from 0 * inf: a zero z_scale means uniform weights
    let x = if x.is_nan() { 0.0 } else { x };
    let w = 1.0 / (1.0 + exp_vectorisable(-x));
    w.max(p.clamp_lo).min(p.clamp_hi)
}

/// Consensus of one question. `weights` holds the vote weight of every model.
#[inline(always)]
fn score_row(
    answers: &[i8],
    weights: &[f64],
    n_options: usize,
    tau: f64,
    scores: &mut [f32],
    plurality: &mut [bool],
) -> (f64, i8) {
    let mut votes = [0.0f64; MAX_OPTIONS];
    let mut counts = [0u32; MAX_OPTIONS];
    let mut n_valid = 0u32;
    for (&a, &w) in answers.iter().zip(weights) {
        if a >= 0 {
            votes[a as usize] += w;
            counts[a as usize] += 1;
            n_valid += 1;
        }
    }
    let vmax = votes[..n_options].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // fixed-length loop: vectorises; options beyond n_options are computed and ignored
    let mut post = [0.0f64; MAX_OPTIONS];
    for (p, &v) in post.iter_mut().zip(&votes) {
        *p = exp_vectorisable((v - vmax) / tau);
    }
    let total: f64 = post[..n_options].iter().sum();
    let max_count = counts[..n_options].iter().copied().max().unwrap_or(0);
    for ((&a, s), pl) in answers.iter().zip(scores.iter_mut()).zip(plurality.iter_mut()) {
        *s = match a {
            NOT_ASKED => f32::NAN,
            NO_ANSWER => 0.0,
            _ => (post[a as usize] / total) as f32,
        };
        *pl = a >= 0 && max_count > 0 && counts[a as usize] == max_count;
    }
    if n_valid == 0 {
        return (0.0, -1);
    }
    let majority = counts[..n_options].iter().position(|&c| c == max_count).unwrap_or(0) as i8;
    (f64::from(max_count) / f64::from(n_valid), majority)
}

/// Confidence-weighted consensus of a response matrix (see the module docs for the exact rules).
///
/// `answers` is row-major `n_q × n_m`; `logprobs`, when given, has the same layout (NaN = unknown).
/// `stats = Some((mu, sigma))` reuses per-model statistics (e.g. from training) instead of computing
/// them from `logprobs`.
pub fn consensus_scores<T>(
    answers: &[i8],
    n_options: &[i8],
    logprobs: Option<&[T]>,
    n_q: usize,
    n_m: usize,
    params: &ConsensusParams,
    stats: Option<(&[f64], &[f64])>,
) -> KResult<ConsensusOutput>
where
    T: Copy + Into<f64> + Send + Sync,
{
    params.validate()?;
    check_answers(answers, n_options, n_q, n_m)?;
    let (mu, sigma) = match (stats, logprobs) {
        (Some((mu, sigma)), lp) => {
            if let Some(lp) = lp {
                check_logprobs(lp, n_q, n_m)?;
            }
            check_stats(mu, sigma, n_m)?;
            (mu.to_vec(), sigma.to_vec())
        }
        (None, Some(lp)) => robust_stats(lp, n_q, n_m)?,
        (None, None) => (vec![0.0; n_m], vec![1.0; n_m]),
    };

    let cells = checked_len("answers", "consensus scores", &[n_q, n_m])?;
    let mut scores = try_zeroed::<f32>("answers", "consensus scores", cells)?;
    let mut plurality = try_zeroed::<bool>("answers", "plurality flags", cells)?;
    let mut agreement = try_zeroed::<f64>("answers", "agreement", n_q)?;
    let mut majority = try_vec::<i8>("answers", "majority answers", n_q, -1)?;
    if n_q == 0 || n_m == 0 {
        return Ok(ConsensusOutput { scores, plurality, agreement, majority, mu, sigma });
    }
    let ctx = BlockInput { answers, n_options, logprobs, n_m, mu: &mu, sigma: &sigma, params };
    let block = ROW_BLOCK * n_m;
    scores
        .par_chunks_mut(block)
        .zip(plurality.par_chunks_mut(block))
        .zip(agreement.par_chunks_mut(ROW_BLOCK))
        .zip(majority.par_chunks_mut(ROW_BLOCK))
        .enumerate()
        .for_each(|(b, (((sc, pl), ag), mj))| {
            let out = BlockOutput { scores: sc, plurality: pl, agreement: ag, majority: mj };
            score_block_dispatch(&ctx, b * ROW_BLOCK, out);
        });
    Ok(ConsensusOutput { scores, plurality, agreement, majority, mu, sigma })
}

/// Read-only input shared by every block of rows.
struct BlockInput<'a, T> {
    answers: &'a [i8],
    n_options: &'a [i8],
    logprobs: Option<&'a [T]>,
    n_m: usize,
    mu: &'a [f64],
    sigma: &'a [f64],
    params: &'a ConsensusParams,
}

/// Output slices of one block of rows.
struct BlockOutput<'a> {
    scores: &'a mut [f32],
    plurality: &'a mut [bool],
    agreement: &'a mut [f64],
    majority: &'a mut [i8],
}

/// Score the rows `row0..row0 + out.agreement.len()`.
#[inline(always)]
fn score_block<T: Copy + Into<f64>>(input: &BlockInput<'_, T>, row0: usize, out: BlockOutput<'_>) {
    let n_m = input.n_m;
    let uniform = vote_weight(f64::NAN, 0.0, 1.0, input.params);
    let mut weights = vec![uniform; n_m];
    for i in 0..out.agreement.len() {
        let q = row0 + i;
        if let Some(lp) = input.logprobs {
            let lp_row = &lp[q * n_m..(q + 1) * n_m];
            for (((w, &l), &mu), &sigma) in weights.iter_mut().zip(lp_row).zip(input.mu).zip(input.sigma) {
                *w = vote_weight(l.into(), mu, sigma, input.params);
            }
        }
        let (agreement, majority) = score_row(
            &input.answers[q * n_m..(q + 1) * n_m],
            &weights,
            input.n_options[q] as usize,
            input.params.tau,
            &mut out.scores[i * n_m..(i + 1) * n_m],
            &mut out.plurality[i * n_m..(i + 1) * n_m],
        );
        out.agreement[i] = agreement;
        out.majority[i] = majority;
    }
}

/// [`score_block`] compiled for AVX2 (4 doubles per instruction in the exp/weight loops).
///
/// # Safety
/// The CPU must support AVX2 (checked by the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn score_block_avx2<T: Copy + Into<f64>>(input: &BlockInput<'_, T>, row0: usize, out: BlockOutput<'_>) {
    score_block(input, row0, out)
}

/// Run [`score_block`] with the widest SIMD the CPU has (same arithmetic, same results).
fn score_block_dispatch<T: Copy + Into<f64>>(input: &BlockInput<'_, T>, row0: usize, out: BlockOutput<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { score_block_avx2(input, row0, out) };
        }
    }
    score_block(input, row0, out)
}

fn check_stats(mu: &[f64], sigma: &[f64], n_m: usize) -> KResult<()> {
    if mu.len() != n_m {
        return Err(KernelError::new("stats", format!("mu must have one value per model ({n_m}), got {}", mu.len())));
    }
    if sigma.len() != n_m {
        return Err(KernelError::new("stats", format!("sigma must have one value per model ({n_m}), got {}", sigma.len())));
    }
    if let Some(m) = mu.iter().position(|x| !x.is_finite()) {
        return Err(KernelError::new("stats", format!("mu[{m}] = {} is not finite", mu[m])));
    }
    if let Some(m) = sigma.iter().position(|&s| !(s.is_finite() && s > 0.0)) {
        return Err(KernelError::new("stats", format!("sigma[{m}] = {} must be finite and > 0", sigma[m])));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(answers: &[i8], n_options: &[i8], lp: Option<&[f64]>, n_m: usize) -> ConsensusOutput {
        consensus_scores(answers, n_options, lp, n_options.len(), n_m, &ConsensusParams::default(), None).unwrap()
    }

    #[test]
    fn uniform_votes_follow_softmax_of_counts() {
        // 3 models: two say 0, one says 1, on a 3-option question; weights are 0.5 each.
        let out = run(&[0, 0, 1], &[3], None::<&[f64]>, 3);
        let (e1, e05, e0) = (1.0f64.exp(), 0.5f64.exp(), 1.0);
        let total = e1 + e05 + e0;
        assert!((out.scores[0] as f64 - e1 / total).abs() < 1e-6);
        assert!((out.scores[2] as f64 - e05 / total).abs() < 1e-6);
        assert_eq!(out.plurality, vec![true, true, false]);
        assert!((out.agreement[0] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(out.majority, vec![0]);
    }

    #[test]
    fn codes_minus_one_and_minus_two() {
        let out = run(&[-1, -2, 1, 1], &[2], None::<&[f64]>, 4);
        assert_eq!(out.scores[0], 0.0);
        assert!(out.scores[1].is_nan());
        assert_eq!(out.plurality, vec![false, false, true, true]);
        assert_eq!(out.agreement[0], 1.0);
        let none = run(&[-1, -2], &[4], None::<&[f64]>, 2);
        assert_eq!(none.agreement[0], 0.0);
        assert_eq!(none.majority[0], -1);
        assert_eq!(none.plurality, vec![false, false]);
    }

    #[test]
    fn ties_are_all_plurality() {
        let out = run(&[2, 1, 2, 1, 0], &[4], None::<&[f64]>, 5);
        assert_eq!(out.plurality, vec![true, true, true, true, false]);
        assert!((out.agreement[0] - 0.4).abs() < 1e-12);
        assert_eq!(out.majority[0], 1);
    }

    #[test]
    fn robust_stats_median_and_mad() {
        // column 0: 1, 2, 3, 4, NaN -> median 2.5, MAD 1.0; column 1: constant -> std 0 -> sigma 1.
        let lp = [1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 4.0, 5.0, f64::NAN, f64::NAN];
        let (mu, sigma) = robust_stats(&lp, 5, 2).unwrap();
        assert_eq!(mu, vec![2.5, 5.0]);
        assert!((sigma[0] - 1.4826).abs() < 1e-12);
        assert_eq!(sigma[1], 1.0);
        let (mu, sigma) = robust_stats(&[f64::NAN, f64::NAN], 2, 1).unwrap();
        assert_eq!((mu[0], sigma[0]), (0.0, 1.0));
    }

    #[test]
    fn mad_zero_falls_back_to_std() {
        // 1, 1, 1, 5: MAD 0, population std sqrt(3).
        let (_, sigma) = robust_stats(&[1.0f64, 1.0, 1.0, 5.0], 4, 1).unwrap();
        assert!((sigma[0] - 3.0f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_input() {
        let p = ConsensusParams::default();
        let e = consensus_scores::<f64>(&[0, 3], &[3], None, 1, 2, &p, None).unwrap_err();
        assert_eq!(e.arg, "answers");
        assert!(e.message.contains("row 0, column 1"), "{}", e.message);
        let e = consensus_scores::<f64>(&[0], &[1], None, 1, 1, &p, None).unwrap_err();
        assert_eq!(e.arg, "n_options");
        let e = consensus_scores(&[0, 1], &[3], Some(&[0.0, f64::INFINITY][..]), 1, 2, &p, None).unwrap_err();
        assert_eq!(e.arg, "logprobs");
        let bad_tau = ConsensusParams { tau: 0.0, ..p };
        assert_eq!(consensus_scores::<f64>(&[0], &[2], None, 1, 1, &bad_tau, None).unwrap_err().arg, "tau");
        let bad_clamp = ConsensusParams { clamp_lo: 0.6, clamp_hi: 0.5, ..p };
        assert_eq!(consensus_scores::<f64>(&[0], &[2], None, 1, 1, &bad_clamp, None).unwrap_err().arg, "clamp");
        let e = consensus_scores::<f64>(&[0], &[2], None, 1, 1, &p, Some((&[0.0], &[0.0]))).unwrap_err();
        assert_eq!(e.arg, "stats");
    }

    #[test]
    fn extreme_values_stay_finite() {
        let lp = [1e30, -1e30, 0.0, 1e30, -1e30, 0.0];
        let tiny = ConsensusParams { tau: 1e-6, ..Default::default() };
        let out = consensus_scores(&[0, 1, 1, 0, 1, 1], &[2, 2], Some(&lp[..]), 2, 3, &tiny, None).unwrap();
        assert!(out.scores.iter().all(|s| s.is_finite() && (0.0..=1.0).contains(s)));
    }
}
