//! Comparing score maps (SPEC "Analysis"): correlations, asymmetry, latent
//! AND / OR components and their overlaps.

use super::ScoreMap;

/// Pearson's r over the flattened maps, ignoring pairs where either value is
/// NaN or infinite. None when fewer than two pairs remain or a map is constant.
pub fn pearson(a: &[f32], b: &[f32]) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(&x, &y)| (x as f64, y as f64))
        .collect();
    if pairs.len() < 2 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (mx / n, my / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in &pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

pub fn flatten(m: &ScoreMap) -> Vec<f32> {
    m.iter().flatten().copied().collect()
}

fn normalise_by_max(v: ScoreMap) -> ScoreMap {
    let max = v
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    v.into_iter()
        .map(|r| r.into_iter().map(|x| x / max).collect())
        .collect()
}

fn combine(a: &ScoreMap, b: &ScoreMap, f: impl Fn(f32, f32) -> f32) -> ScoreMap {
    a.iter()
        .zip(b)
        .map(|(ra, rb)| ra.iter().zip(rb).map(|(&x, &y)| f(x, y)).collect())
        .collect()
}

/// IG asymmetry: (S_ccl + S_cc) / max(S_ccl + S_cc) — IG attributions flip
/// sign with the direction, so a component that matters equally both ways
/// cancels out.
pub fn asymmetry_ig(cc: &ScoreMap, ccl: &ScoreMap) -> ScoreMap {
    normalise_by_max(combine(ccl, cc, |a, b| a + b))
}

/// AP asymmetry: (S_ccl − S_cc) / max(S_ccl − S_cc) (AP scores keep their sign).
pub fn asymmetry_ap(cc: &ScoreMap, ccl: &ScoreMap) -> ScoreMap {
    normalise_by_max(combine(ccl, cc, |a, b| a - b))
}

/// The p-quantile with linear interpolation (numpy's default), over finite values.
pub fn quantile(values: &[f32], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| x as f64)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let pos = p.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// Components (layer, index) with |S| ≥ the p-quantile of |S|.
pub fn highlight(m: &ScoreMap, p: f64) -> Vec<[usize; 2]> {
    let abs: ScoreMap = m
        .iter()
        .map(|r| r.iter().map(|x| x.abs()).collect())
        .collect();
    at_or_above_quantile(&abs, p)
}

/// Components with S ≥ the p-quantile of S (signed). AND components are
/// those of A, OR components those of −A: with |S| (SPEC's `highlight`) the
/// two sets would be identical, so the latent-component split uses the sign.
pub fn at_or_above_quantile(m: &ScoreMap, p: f64) -> Vec<[usize; 2]> {
    let Some(q) = quantile(&flatten(m), p) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (l, row) in m.iter().enumerate() {
        for (i, &x) in row.iter().enumerate() {
            if x.is_finite() && x as f64 >= q {
                out.push([l, i]);
            }
        }
    }
    out
}

/// AND components: A ≥ its p-quantile; OR components: −A ≥ its p-quantile.
pub fn latent_sets(asym: &ScoreMap, p: f64) -> (Vec<[usize; 2]>, Vec<[usize; 2]>) {
    let neg: ScoreMap = asym
        .iter()
        .map(|r| r.iter().map(|x| -x).collect())
        .collect();
    (at_or_above_quantile(asym, p), at_or_above_quantile(&neg, p))
}

/// |X ∩ Y| / |X ∪ Y|, 1 when both are empty.
pub fn jaccard(x: &[[usize; 2]], y: &[[usize; 2]]) -> f64 {
    use std::collections::BTreeSet;
    let a: BTreeSet<_> = x.iter().collect();
    let b: BTreeSet<_> = y.iter().collect();
    let union = a.union(&b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// The k components of largest |score|, largest first.
pub fn top_k(m: &ScoreMap, k: usize) -> Vec<(usize, usize, f32)> {
    let mut all: Vec<(usize, usize, f32)> = m
        .iter()
        .enumerate()
        .flat_map(|(l, r)| r.iter().enumerate().map(move |(i, &s)| (l, i, s)))
        .filter(|x| x.2.is_finite())
        .collect();
    all.sort_by(|a, b| {
        b.2.abs()
            .partial_cmp(&a.2.abs())
            .expect("finite")
            .then((a.0, a.1).cmp(&(b.0, b.1)))
    });
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_ignores_non_finite_and_detects_constants() {
        let r = pearson(&[1.0, 2.0, 3.0, f32::NAN], &[2.0, 4.0, 6.0, 1.0]).unwrap();
        assert!((r - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0], &[2.0]), None);
    }

    #[test]
    fn quantile_matches_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4], 0.9) = 3.7
        assert!((quantile(&[4.0, 1.0, 3.0, 2.0], 0.9).unwrap() - 3.7).abs() < 1e-12);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn latent_sets_split_by_sign() {
        let a = vec![vec![1.0, -1.0, 0.1, 0.0], vec![0.2, -0.9, 0.3, -0.2]];
        let (and, or) = latent_sets(&a, 0.9);
        assert_eq!(and, vec![[0, 0]]);
        assert_eq!(or, vec![[0, 1]]);
        assert_eq!(jaccard(&and, &or), 0.0);
        assert_eq!(jaccard(&[], &[]), 1.0);
        assert_eq!(jaccard(&[[0, 1], [1, 1]], &[[0, 1]]), 0.5);
    }

    #[test]
    fn asymmetry_follows_spec_formulas() {
        let cc = vec![vec![1.0, -2.0]];
        let ccl = vec![vec![1.0, 1.0]];
        assert_eq!(asymmetry_ig(&cc, &ccl), vec![vec![1.0, -0.5]]);
        assert_eq!(asymmetry_ap(&cc, &ccl), vec![vec![0.0, 1.0]]);
    }
}
