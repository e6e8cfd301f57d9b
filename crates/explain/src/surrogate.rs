//! Weighted linear fits over binary feature vectors: LIME's ridge surrogate with an intercept
//! (scikit-learn's `Ridge(alpha)` with `sample_weight`: centred by the weighted means) and
//! its weighted R², and KernelSHAP's least squares with efficiency as an exact constraint
//! (the shap library's elimination of one coefficient). Both solve their normal equations
//! in f64 by Gaussian elimination: a surrogate has tens to hundreds of features.

/// A linear model of the score: `intercept + Σ weights · z`.
#[derive(Debug, Clone, PartialEq)]
pub struct Surrogate {
    /// One per feature.
    pub weights: Vec<f64>,
    /// The score with every feature off.
    pub intercept: f64,
    /// The weighted R² of the fit on the samples it was fitted to.
    pub r2: f64,
}

/// Minimises Σ wᵢ (yᵢ - b - zᵢ·β)² + alpha |β|² over β and b.
pub fn ridge(z: &[Vec<f64>], y: &[f64], w: &[f64], alpha: f64) -> Surrogate {
    let m = z.first().map_or(0, Vec::len);
    let total: f64 = w.iter().sum();
    let mean_z: Vec<f64> = (0..m).map(|j| z.iter().zip(w).map(|(r, wi)| wi * r[j]).sum::<f64>() / total).collect();
    let mean_y = y.iter().zip(w).map(|(v, wi)| wi * v).sum::<f64>() / total;
    let centred: Vec<Vec<f64>> = z.iter().map(|r| r.iter().zip(&mean_z).map(|(a, b)| a - b).collect()).collect();
    let yc: Vec<f64> = y.iter().map(|v| v - mean_y).collect();
    let weights = weighted_least_squares(&centred, &yc, w, alpha);
    let intercept = mean_y - weights.iter().zip(&mean_z).map(|(b, m)| b * m).sum::<f64>();
    let fitted: Vec<f64> =
        z.iter().map(|r| intercept + r.iter().zip(&weights).map(|(a, b)| a * b).sum::<f64>()).collect();
    let residual: f64 = y.iter().zip(&fitted).zip(w).map(|((v, f), wi)| wi * (v - f).powi(2)).sum();
    let spread: f64 = y.iter().zip(w).map(|(v, wi)| wi * (v - mean_y).powi(2)).sum();
    Surrogate { weights, intercept, r2: if spread > 0.0 { 1.0 - residual / spread } else { 1.0 } }
}

/// Minimises Σ wᵢ (yᵢ - e - zᵢ·φ)² with the intercept fixed at `empty` (the score with no
/// feature) and Σφ = `full` - `empty` (the score with all of them): KernelSHAP's fit.
/// Samples with no feature or every feature carry no information beyond the constraints.
pub fn constrained_least_squares(z: &[Vec<f64>], y: &[f64], w: &[f64], empty: f64, full: f64) -> Vec<f64> {
    let m = z.first().map_or(0, Vec::len);
    if m == 0 {
        return Vec::new();
    }
    let difference = full - empty;
    // φ_last = difference - Σ_{j<last} φ_j, so y - empty - z_last·difference = Σ (z_j - z_last) φ_j.
    let (mut rows, mut targets, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    for ((r, &v), &wi) in z.iter().zip(y).zip(w) {
        let on = r.iter().filter(|&&a| a != 0.0).count();
        if on == 0 || on == m {
            continue;
        }
        rows.push(r[..m - 1].iter().map(|a| a - r[m - 1]).collect::<Vec<f64>>());
        targets.push(v - empty - r[m - 1] * difference);
        weights.push(wi);
    }
    let mut phi = weighted_least_squares(&rows, &targets, &weights, 0.0);
    phi.resize(m - 1, 0.0);
    let last = difference - phi.iter().sum::<f64>();
    phi.push(last);
    phi
}

/// β minimising Σ wᵢ (yᵢ - xᵢ·β)² + alpha |β|², from (Xᵀ W X + alpha I) β = Xᵀ W y.
fn weighted_least_squares(x: &[Vec<f64>], y: &[f64], w: &[f64], alpha: f64) -> Vec<f64> {
    let m = x.first().map_or(0, Vec::len);
    let mut a = vec![vec![0f64; m + 1]; m];
    for ((r, &v), &wi) in x.iter().zip(y).zip(w) {
        for i in 0..m {
            for j in 0..m {
                a[i][j] += wi * r[i] * r[j];
            }
            a[i][m] += wi * r[i] * v;
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += alpha;
    }
    solve(a)
}

/// The solution of the augmented system [A | b] by elimination with partial pivoting; a
/// direction the samples never vary along (a singular pivot) gets coefficient 0, the
/// minimum-norm choice along it.
fn solve(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let m = a.len();
    let scale = a.iter().enumerate().map(|(i, r)| r[i].abs()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let mut pivots = vec![None; m];
    let mut row = 0;
    for col in 0..m {
        let Some(best) = (row..m).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())) else { break };
        if a[best][col].abs() <= 1e-12 * scale {
            continue;
        }
        a.swap(row, best);
        let pivot = a[row].clone();
        for (i, r) in a.iter_mut().enumerate() {
            let f = r[col] / pivot[col];
            if i != row && f != 0.0 {
                r[col..].iter_mut().zip(&pivot[col..]).for_each(|(v, p)| *v -= f * p);
            }
        }
        pivots[col] = Some(row);
        row += 1;
    }
    (0..m).map(|col| pivots[col].map_or(0.0, |r| a[r][m] / a[r][col])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y = 1 + 2 z₀ - 3 z₁ exactly: without regularisation the fit recovers it with R² 1;
    /// ridge shrinks the weights towards 0.
    #[test]
    fn fits_recover_a_linear_function() {
        let z: Vec<Vec<f64>> =
            (0..8).map(|i| vec![(i & 1) as f64, ((i >> 1) & 1) as f64, ((i >> 2) & 1) as f64]).collect();
        let y: Vec<f64> = z.iter().map(|r| 1.0 + 2.0 * r[0] - 3.0 * r[1]).collect();
        let w: Vec<f64> = (0..8).map(|i| 1.0 + i as f64).collect();
        let exact = ridge(&z, &y, &w, 0.0);
        let want = [2.0, -3.0, 0.0];
        assert!(exact.weights.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{exact:?}");
        assert!((exact.intercept - 1.0).abs() < 1e-12 && (exact.r2 - 1.0).abs() < 1e-12);
        let shrunk = ridge(&z, &y, &w, 1.0);
        assert!(shrunk.weights[0] < 2.0 && shrunk.weights[0] > 0.0 && shrunk.r2 < 1.0);
        // The constrained fit of an additive function gives its coefficients: they add up to
        // f(all) - f(none) = -1.
        let phi = constrained_least_squares(&z, &y, &w, 1.0, 0.0);
        assert!(phi.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{phi:?}");
    }
}
