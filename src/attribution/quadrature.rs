//! Integration rules for integrated gradients, as captum defines them.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// captum's `method` argument of `IntegratedGradients.attribute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    GaussLegendre,
    RiemannLeft,
    RiemannRight,
    RiemannMiddle,
    RiemannTrapezoid,
}

impl Rule {
    pub fn parse(s: &str) -> Result<Rule> {
        Ok(match s {
            "gausslegendre" | "gauss_legendre" | "gauss-legendre" => Rule::GaussLegendre,
            "riemann_left" | "left" => Rule::RiemannLeft,
            "riemann_right" | "right" => Rule::RiemannRight,
            "riemann_middle" | "middle" => Rule::RiemannMiddle,
            "riemann_trapezoid" | "trapezoid" => Rule::RiemannTrapezoid,
            _ => {
                return Err(Error::Input(format!(
                    "unknown integration rule {s:?}; use gausslegendre, riemann_left, riemann_right, riemann_middle or riemann_trapezoid"
                )))
            }
        })
    }
}

/// Nodes α_k in [0, 1] and weights w_k of an n-step rule, in f64.
pub fn nodes_and_weights(rule: Rule, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if n == 0 || n > 10_000 || (rule == Rule::RiemannTrapezoid && n < 2) {
        return Err(Error::Input(format!(
            "{n} integration steps is out of range (use 1..=10000; the trapezoid rule needs 2 or more)"
        )));
    }
    let nf = n as f64;
    let lin = |a: f64, b: f64| -> Vec<f64> {
        if n == 1 {
            return vec![a];
        }
        (0..n)
            .map(|i| a + (b - a) * i as f64 / (nf - 1.0))
            .collect()
    };
    Ok(match rule {
        Rule::GaussLegendre => {
            let (t, w) = gauss_legendre(n);
            (
                t.iter().map(|t| (t + 1.0) / 2.0).collect(),
                w.iter().map(|w| w / 2.0).collect(),
            )
        }
        Rule::RiemannLeft => (lin(0.0, 1.0 - 1.0 / nf), vec![1.0 / nf; n]),
        Rule::RiemannRight => (lin(1.0 / nf, 1.0), vec![1.0 / nf; n]),
        Rule::RiemannMiddle => (
            lin(1.0 / (2.0 * nf), 1.0 - 1.0 / (2.0 * nf)),
            vec![1.0 / nf; n],
        ),
        Rule::RiemannTrapezoid => {
            let mut w = vec![1.0 / (nf - 1.0); n];
            w[0] /= 2.0;
            w[n - 1] /= 2.0;
            (lin(0.0, 1.0), w)
        }
    })
}

/// Gauss–Legendre nodes (ascending, in [−1, 1]) and weights, by Newton's
/// method on the Legendre polynomial — the values numpy's `leggauss` gives.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    for i in 0..n.div_ceil(2) {
        // Tricomi's initial guess for the i-th largest root
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 0.0;
        for _ in 0..100 {
            let (p, d) = legendre(n, z);
            dp = d;
            let dz = p / d;
            z -= dz;
            if dz.abs() < 1e-15 {
                break;
            }
        }
        let (_, d) = legendre(n, z);
        dp = if d != 0.0 { d } else { dp };
        let wi = 2.0 / ((1.0 - z * z) * dp * dp);
        x[i] = -z;
        x[n - 1 - i] = z;
        w[i] = wi;
        w[n - 1 - i] = wi;
    }
    (x, w)
}

/// P_n(z) and P_n'(z) by the three-term recurrence.
fn legendre(n: usize, z: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, z);
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 2..=n {
        let kf = k as f64;
        let p2 = ((2.0 * kf - 1.0) * z * p1 - (kf - 1.0) * p0) / kf;
        p0 = p1;
        p1 = p2;
    }
    let d = n as f64 * (z * p1 - p0) / (z * z - 1.0);
    (p1, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        for n in [1, 2, 5, 50] {
            let (a, w) = nodes_and_weights(Rule::GaussLegendre, n).unwrap();
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-13);
            // ∫0^1 x^k dx = 1/(k+1), exact for k ≤ 2n−1
            for k in 0..(2 * n).min(20) {
                let s: f64 = a.iter().zip(&w).map(|(a, w)| w * a.powi(k as i32)).sum();
                assert!(
                    (s - 1.0 / (k as f64 + 1.0)).abs() < 1e-12,
                    "n={n} k={k} s={s}"
                );
            }
            assert!(a.windows(2).all(|p| p[0] < p[1]), "ascending like numpy");
        }
    }

    #[test]
    fn known_two_point_rule() {
        let (t, w) = gauss_legendre(2);
        let r = 1.0 / 3f64.sqrt();
        assert!((t[0] + r).abs() < 1e-15 && (t[1] - r).abs() < 1e-15);
        assert!((w[0] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn riemann_rules_match_captum() {
        let (a, w) = nodes_and_weights(Rule::RiemannTrapezoid, 5).unwrap();
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(w, vec![0.125, 0.25, 0.25, 0.25, 0.125]);
        let (a, _) = nodes_and_weights(Rule::RiemannLeft, 4).unwrap();
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75]);
        assert!(nodes_and_weights(Rule::GaussLegendre, 0).is_err());
    }
}
