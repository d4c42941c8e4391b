//! Summaries of repeated measurements for the benchmarks' tables.

/// The median of `samples` (the upper one of an even count); NaN if none.
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `median (min-max)`, with two decimals below 10 and none above.
pub fn spread(samples: &[f64]) -> String {
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let digits = if median(samples) < 10.0 { 2 } else { 0 };
    format!(
        "{:.*} ({:.*}-{:.*})",
        digits,
        median(samples),
        digits,
        min,
        digits,
        max
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread_of_a_few_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
        assert_eq!(spread(&[3.0, 1.0, 2.0]), "2.00 (1.00-3.00)");
        assert_eq!(spread(&[300.0, 100.0, 250.0]), "250 (100-300)");
    }
}
