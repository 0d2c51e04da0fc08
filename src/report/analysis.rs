//! Comparing score maps (docs/methods.md, "Analysis"): correlations,
//! asymmetry, latent AND / OR components and their overlaps.

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

/// Spearman's ρ: Pearson's r of the ranks (ties get their mean rank),
/// over the pairs where both values are finite.
pub fn spearman(a: &[f32], b: &[f32]) -> Option<f64> {
    let (x, y): (Vec<f32>, Vec<f32>) = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(&x, &y)| (x, y))
        .unzip();
    pearson(&ranks(&x), &ranks(&y))
}

/// 1-based ranks, ties sharing their mean rank.
fn ranks(v: &[f32]) -> Vec<f32> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0f32; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f32 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

pub fn flatten(m: &ScoreMap) -> Vec<f32> {
    m.iter().flatten().copied().collect()
}

fn combine(a: &ScoreMap, b: &ScoreMap, f: impl Fn(f32, f32) -> f32) -> ScoreMap {
    a.iter()
        .zip(b)
        .map(|(ra, rb)| ra.iter().zip(rb).map(|(&x, &y)| f(x, y)).collect())
        .collect()
}

/// Asymmetry across directions, one formula for every map on AP's scale
/// (AP, AtP, IG*): A = (S_ccl − S_cc) / max|S_ccl − S_cc| over the whole map.
/// A component that matters as much when noising as when denoising cancels
/// out; A > 0 where noising it hurts more than restoring it helps. An
/// all-zero difference gives an all-zero A (never NaN); non-finite entries
/// stay NaN and take no part in the maximum.
pub fn asymmetry(cc: &ScoreMap, ccl: &ScoreMap) -> ScoreMap {
    let diff = combine(ccl, cc, |a, b| a - b);
    let max = diff
        .iter()
        .flatten()
        .filter(|x| x.is_finite())
        .fold(0.0f32, |m, x| m.max(x.abs()));
    diff.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|x| match (x.is_finite(), max > 0.0) {
                    (false, _) => f32::NAN,
                    (true, true) => x / max,
                    (true, false) => 0.0,
                })
                .collect()
        })
        .collect()
}

/// A raw IG map (captum's means; docs/methods.md, "Gap-normalised IG (IG*)")
/// on AP's scale: IG* = Σ_{pos, d} attr / (m_base − m_other), i.e.
/// IG × T × d_model / gap for heads (the means were over T positions and
/// d_model) and IG × T / gap for neurons. In the linear regime IG* ≈ AP,
/// whatever the gap's sign.
pub fn ig_norm(ig: &ScoreMap, averaged_over: usize, gap: f32) -> ScoreMap {
    let k = averaged_over as f64 / gap as f64;
    ig.iter()
        .map(|r| r.iter().map(|&x| (x as f64 * k) as f32).collect())
        .collect()
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

/// Latent components of an asymmetry map A, with q the p-quantile (numpy's
/// linear one) of |A| over the finite entries: AND = {c : A_c > 0, |A_c| ≥ q}
/// (matters when noising — patching in the corrupt value breaks the
/// behaviour — but restoring it alone does not help), OR = {c : A_c < 0,
/// |A_c| ≥ q} (the reverse). AND ∪ OR is every c with |A_c| ≥ q
/// and A_c ≠ 0; swapping clean and corrupt negates A and so swaps AND and OR.
pub fn latent_sets(asym: &ScoreMap, p: f64) -> (Vec<[usize; 2]>, Vec<[usize; 2]>) {
    let abs: Vec<f32> = asym.iter().flatten().map(|x| x.abs()).collect();
    let Some(q) = quantile(&abs, p) else {
        return (Vec::new(), Vec::new());
    };
    let (mut and, mut or) = (Vec::new(), Vec::new());
    for (l, row) in asym.iter().enumerate() {
        for (i, &x) in row.iter().enumerate() {
            if x.is_finite() && x != 0.0 && x.abs() as f64 >= q {
                if x > 0.0 {
                    and.push([l, i]);
                } else {
                    or.push([l, i]);
                }
            }
        }
    }
    (and, or)
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
    fn spearman_ranks_with_ties_as_scipy_does() {
        // scipy.stats.spearmanr([1, 2, 2, 3], [10, 30, 20, 40]).statistic = 0.9486832980505138
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[10.0, 30.0, 20.0, 40.0]).unwrap();
        assert!((r - 0.948_683_298_050_513_8).abs() < 1e-6, "{r}");
        assert_eq!(spearman(&[1.0, 2.0], &[2.0, 2.0]), None);
    }

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
    fn latent_sets_split_by_sign_above_the_quantile_of_abs() {
        // |A| sorted: 0, .1, .2, .2, .3, .9, 1, 1; numpy.quantile(·, 0.9) = 1
        let a = vec![vec![1.0, -1.0, 0.1, 0.0], vec![0.2, -0.9, 0.3, -0.2]];
        let (and, or) = latent_sets(&a, 0.9);
        assert_eq!(and, vec![[0, 0]]);
        assert_eq!(or, vec![[0, 1]]);
        // numpy.quantile(·, 0.7) = 0.3 + 0.9 · 0.6 = 0.84: −0.9 joins OR
        let (and, or) = latent_sets(&a, 0.7);
        assert_eq!((and, or), (vec![[0, 0]], vec![[0, 1], [1, 1]]));
        // negating A swaps the sets exactly
        let neg: ScoreMap = a.iter().map(|r| r.iter().map(|x| -x).collect()).collect();
        assert_eq!(latent_sets(&neg, 0.7), (vec![[0, 1], [1, 1]], vec![[0, 0]]));
        assert_eq!(jaccard(&[[0, 0]], &[[0, 1]]), 0.0);
        assert_eq!(jaccard(&[], &[]), 1.0);
        assert_eq!(jaccard(&[[0, 1], [1, 1]], &[[0, 1]]), 0.5);
        // an all-zero map: no components
        assert_eq!(latent_sets(&vec![vec![0.0; 3]], 0.9), (vec![], vec![]));
    }

    #[test]
    fn asymmetry_divides_by_the_largest_absolute_difference() {
        let cc = vec![vec![1.0, -2.0, 0.5]];
        let ccl = vec![vec![1.0, 1.0, -3.5]];
        // S_ccl − S_cc = 0, 3, −4; max |·| = 4
        assert_eq!(asymmetry(&cc, &ccl), vec![vec![0.0, 0.75, -1.0]]);
        assert_eq!(asymmetry(&ccl, &cc), vec![vec![0.0, -0.75, 1.0]]);
        // all zero: zeros, not NaN; a NaN entry stays NaN
        assert_eq!(asymmetry(&cc, &cc), vec![vec![0.0; 3]]);
        let a = asymmetry(&vec![vec![f32::NAN, 1.0]], &vec![vec![0.0, 3.0]]);
        assert!(a[0][0].is_nan());
        assert_eq!(a[0][1], 1.0);
    }

    #[test]
    fn ig_norm_undoes_the_means_and_divides_by_the_gap() {
        // heads of a 3-token prompt, d_model 4: the mean was over 12 values
        let ig = vec![vec![0.5, -0.25]];
        assert_eq!(ig_norm(&ig, 12, 2.0), vec![vec![3.0, -1.5]]);
        assert_eq!(ig_norm(&ig, 12, -2.0), vec![vec![-3.0, 1.5]]);
    }
}
