//! Rank fusion for hybrid retrieval: Reciprocal Rank Fusion and convex combination of
//! min-max-normalised scores. Pure functions over ranked lists of ids.

use std::collections::HashMap;

crate::choice! {
    /// How hybrid retrieval combines its dense and keyword candidate lists (the parameters,
    /// `alpha` and `rrf_k`, travel beside it).
    Fusion {
        /// `alpha * dense + (1 - alpha) * keyword` over min-max-normalised scores.
        Convex = "convex",
        /// Reciprocal Rank Fusion with constant `rrf_k`.
        Rrf = "rrf",
        /// Distribution-Based Score Fusion: each list normalised by its mean ± 3σ, then summed.
        Dbsf = "dbsf",
    }
}

/// Reciprocal Rank Fusion: `score(d) = sum over lists of 1 / (k + rank(d))`, ranks from 1.
/// Returns `(id, fused score)` best first; ties keep the order of first appearance.
pub fn reciprocal_rank_fusion<S: AsRef<str>>(lists: &[Vec<S>], k: f32) -> Vec<(String, f32)> {
    let mut scores: HashMap<&str, (f32, usize)> = HashMap::new();
    let mut order = 0usize;
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            let entry = scores.entry(id.as_ref()).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            entry.0 += 1.0 / (k + rank as f32 + 1.0);
        }
    }
    sort_fused(scores)
}

/// Convex combination: `alpha * norm(dense) + (1 - alpha) * norm(keyword)` where `norm` is
/// min-max normalisation within each list; a document missing from a list gets 0 from it.
pub fn convex_combination<S: AsRef<str>>(dense: &[(S, f32)], keyword: &[(S, f32)], alpha: f32) -> Vec<(String, f32)> {
    let mut scores: HashMap<&str, (f32, usize)> = HashMap::new();
    let mut order = 0usize;
    for (list, weight) in [(dense, alpha), (keyword, 1.0 - alpha)] {
        let (lo, hi) = list.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), (_, s)| (lo.min(*s), hi.max(*s)));
        let range = hi - lo;
        for (id, s) in list {
            let norm = if range > f32::EPSILON { (s - lo) / range } else { 1.0 };
            let entry = scores.entry(id.as_ref()).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            entry.0 += weight * norm;
        }
    }
    sort_fused(scores)
}

/// Distribution-Based Score Fusion (as Qdrant runs it): each list's scores are normalised
/// with the list's mean ± 3 standard deviations as 0 and 1 (clamped), then summed. Unlike min-max,
/// one outlier does not squash the rest of its list.
pub fn distribution_based_score_fusion<S: AsRef<str>>(lists: &[Vec<(S, f32)>]) -> Vec<(String, f32)> {
    let mut scores: HashMap<&str, (f32, usize)> = HashMap::new();
    let mut order = 0usize;
    for list in lists {
        let n = list.len().max(1) as f32;
        let mean = list.iter().map(|(_, s)| s).sum::<f32>() / n;
        let std = (list.iter().map(|(_, s)| (s - mean).powi(2)).sum::<f32>() / n).sqrt();
        let (lo, hi) = (mean - 3.0 * std, mean + 3.0 * std);
        for (id, s) in list {
            let norm = if hi - lo > f32::EPSILON { ((s - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.5 };
            let entry = scores.entry(id.as_ref()).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            entry.0 += norm;
        }
    }
    sort_fused(scores)
}

fn sort_fused(scores: HashMap<&str, (f32, usize)>) -> Vec<(String, f32)> {
    let mut out: Vec<(&str, f32, usize)> = scores.into_iter().map(|(id, (s, o))| (id, s, o)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    out.into_iter().map(|(id, s, _)| (id.to_owned(), s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_rewards_agreement() {
        let fused = reciprocal_rank_fusion(&[vec!["a", "b", "c"], vec!["b", "c", "a"]], 60.0);
        assert_eq!(fused[0].0, "b", "{fused:?}");
        let expected_b = 1.0 / 62.0 + 1.0 / 61.0;
        assert!((fused[0].1 - expected_b).abs() < 1e-6);
        assert_eq!(fused.len(), 3);
    }

    #[test]
    fn dbsf_sums_normalised_scores_and_rewards_agreement() {
        let dense = vec![("a", 0.9), ("b", 0.8), ("c", 0.1)];
        let kw = vec![("b", 20.0), ("c", 2.0), ("a", 1.0)];
        let fused = distribution_based_score_fusion(&[dense, kw]);
        assert_eq!(fused[0].0, "b", "{fused:?}");
        assert!(fused.iter().all(|(_, s)| (0.0..=2.0).contains(s)), "{fused:?}");
        // One list alone keeps its order.
        let one = distribution_based_score_fusion(&[vec![("x", 3.0), ("y", 2.0), ("z", 1.0)]]);
        assert_eq!(one.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["x", "y", "z"]);
    }

    #[test]
    fn convex_alpha_extremes_follow_one_side() {
        let dense = [("a", 0.9), ("b", 0.5), ("c", 0.1)];
        let kw = [("c", 12.0), ("b", 3.0), ("a", 1.0)];
        assert_eq!(convex_combination(&dense, &kw, 1.0)[0].0, "a");
        assert_eq!(convex_combination(&dense, &kw, 0.0)[0].0, "c");
        let mid = convex_combination(&dense, &kw, 0.5);
        assert!((mid[0].1 - 0.5).abs() < 1e-6 || mid[0].1 > 0.5);
    }
}
