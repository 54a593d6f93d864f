//! Summary statistics shared by the benchmark programs.

/// Nearest-rank percentile `p` (0–100) of `v` (sorted in place); NaN when
/// `v` is empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}
