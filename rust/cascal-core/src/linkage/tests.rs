//! Hand-checked examples of the whole linkage pipeline.

use super::*;

fn approx(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + y.abs()))
}

/// Four points on a line: 0, 1, 5, 11 (gaps 1, 4, 6).
const LINE: [f64; 4] = [0.0, 1.0, 5.0, 11.0];
const LINE_F32: [f32; 4] = [0.0, 1.0, 5.0, 11.0];

#[test]
fn single_on_a_line() {
    let z = linkage_vectors::<f64>(&LINE, 4, 1, Method::Single, Metric::Euclidean).unwrap();
    // {0,1}@1 -> 4; {4,2}@4 -> 5; {5,3}@6 -> 6.
    assert!(approx(&z, &[0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 3.0, 3.0, 5.0, 6.0, 4.0]));
}

#[test]
fn complete_on_a_line() {
    // {0,1}@1; then d({0,1},5) = max(5,4) = 5, d(5,11) = 6, d({0,1},11) = 11 -> merge {0,1,5}@5;
    // then d({0,1,5},11) = 11.
    let z = linkage_vectors::<f64>(&LINE, 4, 1, Method::Complete, Metric::Euclidean).unwrap();
    assert!(approx(&z, &[0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 5.0, 3.0, 3.0, 5.0, 11.0, 4.0]));
}

#[test]
fn average_and_weighted_on_a_line() {
    // {0,1}@1; d({0,1},5) = (5+4)/2 = 4.5 < d(5,11) = 6 -> {0,1,5}@4.5.
    // average: d({0,1,5},11) = (11+10+6)/3 = 9; weighted: ((11+10)/2 + 6)/2 = 8.25.
    let z = linkage_vectors::<f64>(&LINE, 4, 1, Method::Average, Metric::Euclidean).unwrap();
    assert!(approx(&z, &[0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.5, 3.0, 3.0, 5.0, 9.0, 4.0]));
    let z = linkage_vectors::<f32>(&LINE_F32, 4, 1, Method::Weighted, Metric::Euclidean).unwrap();
    assert!(approx(&z, &[0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.5, 3.0, 3.0, 5.0, 8.25, 4.0]));
}

#[test]
fn ward_on_a_line() {
    // {0,1}@1 (centroid 0.5). Ward distance of clusters A, B: sqrt(2|A||B|/(|A|+|B|))·|c_A − c_B|.
    // {0,1} vs {5}: sqrt(4/3)·4.5 ≈ 5.196 < {5} vs {11}: 6 -> {0,1,5}@sqrt(27), centroid 2.
    // {0,1,5} vs {11}: sqrt(6/4)·9 = 9·sqrt(1.5).
    let z = linkage_vectors::<f64>(&LINE, 4, 1, Method::Ward, Metric::Euclidean).unwrap();
    let expected = [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 27f64.sqrt(), 3.0, 3.0, 5.0, 9.0 * 1.5f64.sqrt(), 4.0];
    assert!(approx(&z, &expected), "{z:?}");
}

#[test]
fn condensed_input_equals_vector_input() {
    // Pairs of 0, 1, 5, 11: (0,1)=1 (0,2)=5 (0,3)=11 (1,2)=4 (1,3)=10 (2,3)=6.
    let dist = [1.0f64, 5.0, 11.0, 4.0, 10.0, 6.0];
    for method in [Method::Single, Method::Complete, Method::Average, Method::Weighted, Method::Ward] {
        let from_condensed = linkage_condensed(&dist, method).unwrap();
        let from_vectors = linkage_vectors::<f64>(&LINE, 4, 1, method, Metric::Euclidean).unwrap();
        assert!(approx(&from_condensed, &from_vectors), "{method:?}");
    }
}

#[test]
fn two_observations() {
    let z = linkage_condensed(&[2.5f32], Method::Average).unwrap();
    assert_eq!(z, vec![0.0, 1.0, 2.5, 2.0]);
}

#[test]
fn bad_input_is_rejected() {
    assert_eq!(linkage_condensed::<f64>(&[], Method::Average).unwrap_err().arg, "data");
    assert_eq!(linkage_condensed(&[1.0f64, 2.0], Method::Average).unwrap_err().arg, "data");
    assert!(linkage_condensed(&[1.0f64, f64::NAN, 1.0], Method::Average).unwrap_err().message.contains("NaN"));
    assert!(linkage_condensed(&[1.0f64, -1.0, 1.0], Method::Average).unwrap_err().message.contains("negative"));
    let err = linkage_vectors::<f64>(&LINE, 4, 1, Method::Ward, Metric::Cosine).unwrap_err();
    assert_eq!(err.arg, "metric");
    let err = linkage_vectors::<f64>(&LINE[..1], 1, 1, Method::Single, Metric::Euclidean).unwrap_err();
    assert!(err.message.contains("at least 2"));
}

#[test]
fn all_equal_points_form_a_valid_tree() {
    let data = [1.0f64; 10];
    for method in [Method::Single, Method::Complete, Method::Average, Method::Weighted, Method::Ward] {
        let z = linkage_vectors::<f64>(&data, 5, 2, method, Metric::Euclidean).unwrap();
        assert_eq!(validate_linkage_matrix(&z).unwrap(), 5);
        assert!(z.chunks_exact(4).all(|r| r[2] == 0.0));
        assert_eq!(z[15], 5.0);
    }
}

#[test]
fn fcluster_on_a_line() {
    let z = linkage_vectors::<f64>(&LINE, 4, 1, Method::Single, Metric::Euclidean).unwrap();
    // Heights 1, 4, 6. t = 4 keeps {0,1,5} together; 11 alone.
    assert_eq!(fcluster_distance(&z, 4.0).unwrap(), vec![1, 1, 1, 2]);
    assert_eq!(fcluster_distance(&z, 0.5).unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(fcluster_maxclust(&z, 1).unwrap(), vec![1, 1, 1, 1]);
    assert_eq!(fcluster_maxclust(&z, 2).unwrap(), vec![1, 1, 1, 2]);
    assert_eq!(fcluster_maxclust(&z, 3).unwrap(), vec![1, 1, 2, 3]);
    assert_eq!(fcluster_maxclust(&z, 9).unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(fcluster_maxclust(&z, 0).unwrap_err().arg, "t");
}

#[test]
fn maxclust_with_tied_heights_returns_fewer_clusters() {
    // Three identical points and a far one: heights 0, 0, 5. Asking for 3 clusters can only give 2.
    let z = linkage_condensed(&[0.0f64, 0.0, 5.0, 0.0, 5.0, 5.0], Method::Single).unwrap();
    assert_eq!(fcluster_maxclust(&z, 3).unwrap(), vec![1, 1, 1, 2]);
}

#[test]
fn invalid_linkage_matrices() {
    let good = [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 2.0, 3.0];
    assert_eq!(validate_linkage_matrix(&good).unwrap(), 3);
    let cases: [(&[f64], &str); 6] = [
        (&[], "non-empty"),
        (&[0.0, 1.0, 1.0, 2.0, 4.0, 2.0, 2.0, 3.0], "[0, 4)"),
        (&[0.0, 1.0, 1.0, 2.0, 0.0, 3.0, 2.0, 3.0], "more than once"),
        (&[0.0, 1.0, -1.0, 2.0, 2.0, 3.0, 2.0, 3.0], "negative height"),
        (&[0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 2.0, 4.0], "size 4"),
        (&[0.0, 1.0, f64::NAN, 2.0, 2.0, 3.0, 2.0, 3.0], "NaN"),
    ];
    for (z, needle) in cases {
        let err = validate_linkage_matrix(z).unwrap_err();
        assert!(err.message.contains(needle), "{needle}: {}", err.message);
    }
}

/// Deterministic pseudo-random distances in (0, 1) (64-bit LCG; no tied values in practice).
fn pseudo_random_condensed(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n * (n - 1) / 2)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        })
        .collect()
}

#[test]
fn square_and_condensed_storage_agree() {
    // Both layouts must run the same chain: identical merges, bit for bit, for every method,
    // including sizes above the parallel threshold of the sweeps.
    for (n, seed) in [(7, 1), (60, 2), (9000, 3)] {
        let dist = pseudo_random_condensed(n, seed);
        for method in [Method::Complete, Method::Average, Method::Weighted, Method::Ward] {
            if n > 1000 && method != Method::Average {
                continue;
            }
            let mut square = storage::Square::from_condensed(&dist, n).unwrap();
            let mut condensed = storage::Condensed::new(dist.clone(), n).unwrap();
            let a = nn_chain::nn_chain(&mut square, n, method).unwrap();
            let b = nn_chain::nn_chain(&mut condensed, n, method).unwrap();
            assert_eq!(a, b, "{method:?} n={n}");
        }
    }
}

#[test]
fn square_from_condensed_layout() {
    // n = 3: (0,1)=1 (0,2)=2 (1,2)=3.
    let sq = storage::Square::from_condensed(&[1.0f32, 2.0, 3.0], 3).unwrap();
    assert_eq!(sq.dist, vec![0.0, 1.0, 2.0, 1.0, 0.0, 3.0, 2.0, 3.0, 0.0]);
}
