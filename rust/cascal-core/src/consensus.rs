//! Confidence-weighted consensus voting over a response matrix (DESIGN §3A).
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

use crate::error::{KResult, KernelError};

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

/// Tunable constants of the vote (DESIGN §3A defaults: `z_scale = 1`, `tau = 1`, clamp `(0.01, 0.99)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsensusParams {
    pub z_scale: f64,
    pub tau: f64,
    pub clamp_lo: f64,
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

/// Median of a non-empty slice (mean of the two middle values for even length); reorders `values`.
fn median_in_place(values: &mut [f64]) -> f64 {
    let n = values.len();
    let mid = n / 2;
    let (lower, upper_mid, _) = values.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    let upper = *upper_mid;
    if n % 2 == 1 {
        upper
    } else {
        let lower_max = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        lower_max + (upper - lower_max) / 2.0
    }
}

/// Robust location and scale of one model's logprobs (NaN entries ignored); see the module docs.
fn column_stats(mut finite: Vec<f64>) -> (f64, f64) {
    if finite.is_empty() {
        return (0.0, 1.0);
    }
    let n = finite.len() as f64;
    let mean = finite.iter().sum::<f64>() / n;
    let var = finite.iter().map(|&x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let mu = median_in_place(&mut finite);
    for x in finite.iter_mut() {
        *x = (*x - mu).abs();
    }
    let mad_sigma = MAD_TO_SIGMA * median_in_place(&mut finite);
    if mad_sigma.is_finite() && mad_sigma > 0.0 {
        return (mu, mad_sigma);
    }
    let std = var.sqrt();
    if std.is_finite() && std > 0.0 {
        (mu, std)
    } else {
        (mu, 1.0)
    }
}

/// Per-model `(mu, sigma)` of a row-major `n_q × n_m` logprob matrix (see the module docs).
///
/// NaN entries are ignored; infinite entries are rejected.
pub fn robust_stats<T>(logprobs: &[T], n_q: usize, n_m: usize) -> KResult<(Vec<f64>, Vec<f64>)>
where
    T: Copy + Into<f64> + Send + Sync,
{
    check_logprobs(logprobs, n_q, n_m)?;
    // one row-major pass splits the matrix into per-model columns of non-NaN values
    let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(n_q); n_m];
    for row in logprobs.chunks_exact(n_m.max(1)) {
        for (col, &v) in columns.iter_mut().zip(row) {
            let v: f64 = v.into();
            if !v.is_nan() {
                col.push(v);
            }
        }
    }
    let stats: Vec<(f64, f64)> = columns.into_par_iter().map(column_stats).collect();
    Ok(stats.into_iter().unzip())
}

fn check_logprobs<T: Copy + Into<f64> + Sync>(logprobs: &[T], n_q: usize, n_m: usize) -> KResult<()> {
    if logprobs.len() != n_q * n_m {
        return Err(KernelError::new(
            "logprobs",
            format!("expected {n_q}x{n_m} = {} values, got {}", n_q * n_m, logprobs.len()),
        ));
    }
    let bad = logprobs.par_iter().position_first(|&x| {
        let v: f64 = x.into();
        v.is_infinite()
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
    let bad_row = answers
        .par_chunks(n_m)
        .zip(n_options.par_iter())
        .position_first(|(row, &k)| row.iter().any(|&a| a < NOT_ASKED || a >= k));
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

/// Logistic function written so that it never overflows.
#[inline]
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Vote weight of one response; `lp` is NaN when unknown.
#[inline]
fn vote_weight(lp: f64, mu: f64, sigma: f64, p: &ConsensusParams) -> f64 {
    let z = if lp.is_nan() { 0.0 } else { (lp - mu) / sigma };
    let mut x = p.z_scale * z;
    if x.is_nan() {
        // only 0 * inf: a zero z_scale means uniform weights
        x = 0.0;
    }
    sigmoid(x).clamp(p.clamp_lo, p.clamp_hi)
}

/// Consensus of one question. `weights` holds the vote weight of every model.
#[allow(clippy::too_many_arguments)]
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
    let mut post = [0.0f64; MAX_OPTIONS];
    let mut total = 0.0;
    // every option without a vote shares one posterior value: one exp instead of many
    let unvoted = ((0.0 - vmax) / tau).exp();
    for c in 0..n_options {
        post[c] = if counts[c] == 0 { unvoted } else { ((votes[c] - vmax) / tau).exp() };
        total += post[c];
    }
    for p in post[..n_options].iter_mut() {
        *p /= total;
    }
    let max_count = counts[..n_options].iter().copied().max().unwrap_or(0);
    for ((&a, s), pl) in answers.iter().zip(scores.iter_mut()).zip(plurality.iter_mut()) {
        *s = match a {
            NOT_ASKED => f32::NAN,
            NO_ANSWER => 0.0,
            _ => post[a as usize] as f32,
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

    let mut scores = vec![0.0f32; n_q * n_m];
    let mut plurality = vec![false; n_q * n_m];
    let mut agreement = vec![0.0f64; n_q];
    let mut majority = vec![-1i8; n_q];
    if n_q == 0 || n_m == 0 {
        return Ok(ConsensusOutput { scores, plurality, agreement, majority, mu, sigma });
    }
    let uniform = vote_weight(f64::NAN, 0.0, 1.0, params);
    let block = ROW_BLOCK * n_m;
    scores
        .par_chunks_mut(block)
        .zip(plurality.par_chunks_mut(block))
        .zip(agreement.par_chunks_mut(ROW_BLOCK))
        .zip(majority.par_chunks_mut(ROW_BLOCK))
        .enumerate()
        .for_each(|(b, (((sc, pl), ag), mj))| {
            let row0 = b * ROW_BLOCK;
            let mut weights = vec![uniform; n_m];
            for i in 0..ag.len() {
                let q = row0 + i;
                let ans = &answers[q * n_m..(q + 1) * n_m];
                if let Some(lp) = logprobs {
                    let lp_row = &lp[q * n_m..(q + 1) * n_m];
                    for m in 0..n_m {
                        weights[m] = vote_weight(lp_row[m].into(), mu[m], sigma[m], params);
                    }
                }
                let (a, maj) = score_row(
                    ans,
                    &weights,
                    n_options[q] as usize,
                    params.tau,
                    &mut sc[i * n_m..(i + 1) * n_m],
                    &mut pl[i * n_m..(i + 1) * n_m],
                );
                ag[i] = a;
                mj[i] = maj;
            }
        });
    Ok(ConsensusOutput { scores, plurality, agreement, majority, mu, sigma })
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
