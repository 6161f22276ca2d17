//! Linkage methods and their Lance–Williams distance updates.

use crate::error::{KResult, KernelError};

/// How the distance between two clusters is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Minimum distance between members (computed with a minimum spanning tree).
    Single,
    /// Maximum distance between members.
    Complete,
    /// Mean distance between members (UPGMA).
    Average,
    /// Mean of the two merged clusters' distances (WPGMA).
    Weighted,
    /// Ward's minimum-variance criterion (euclidean distances only).
    Ward,
}

impl Method {
    /// Parse a method name as scipy spells it. `centroid` and `median` are refused explicitly.
    pub fn parse(name: &str) -> KResult<Self> {
        match name {
            "single" => Ok(Self::Single),
            "complete" => Ok(Self::Complete),
            "average" => Ok(Self::Average),
            "weighted" => Ok(Self::Weighted),
            "ward" => Ok(Self::Ward),
            "centroid" | "median" => Err(KernelError::new(
                "method",
                format!("{name:?} is not implemented; use scipy.cluster.hierarchy.linkage"),
            )),
            other => Err(KernelError::new(
                "method",
                format!("unknown method {other:?}; expected one of single, complete, average, weighted, ward"),
            )),
        }
    }

    /// Distance from cluster `i` to the union of clusters `x` and `y` (Lance–Williams), given the
    /// distances `d_xi`, `d_yi`, `d_xy` and the cluster sizes.
    #[inline(always)]
    pub fn update(self, d_xi: f64, d_yi: f64, d_xy: f64, size_x: f64, size_y: f64, size_i: f64) -> f64 {
        match self {
            Self::Single => d_xi.min(d_yi),
            Self::Complete => d_xi.max(d_yi),
            Self::Average => (size_x * d_xi + size_y * d_yi) / (size_x + size_y),
            Self::Weighted => 0.5 * (d_xi + d_yi),
            Self::Ward => {
                // Evaluated in scipy's order so that tied inputs round, and so tie, identically.
                let t = 1.0 / (size_x + size_y + size_i);
                let squared = (size_i + size_x) * t * d_xi * d_xi + (size_i + size_y) * t * d_yi * d_yi
                    - size_i * t * d_xy * d_xy;
                // Non-negative for euclidean input; clamp rounding noise (or non-euclidean input)
                // instead of producing NaN.
                squared.max(0.0).sqrt()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(Method::parse("ward").unwrap(), Method::Ward);
        let err = Method::parse("centroid").unwrap_err();
        assert_eq!(err.arg, "method");
        assert!(err.message.contains("not implemented"));
        assert!(Method::parse("Average").is_err());
    }

    #[test]
    fn updates_by_hand() {
        // Clusters x = {a}, y = {b, c}, i = {d}; d(x,i) = 2, d(y,i) = 5, d(x,y) = 3.
        assert_eq!(Method::Single.update(2.0, 5.0, 3.0, 1.0, 2.0, 1.0), 2.0);
        assert_eq!(Method::Complete.update(2.0, 5.0, 3.0, 1.0, 2.0, 1.0), 5.0);
        // (1·2 + 2·5) / 3 = 4
        assert_eq!(Method::Average.update(2.0, 5.0, 3.0, 1.0, 2.0, 1.0), 4.0);
        assert_eq!(Method::Weighted.update(2.0, 5.0, 3.0, 1.0, 2.0, 1.0), 3.5);
    }

    #[test]
    fn ward_matches_centroid_geometry() {
        // Points on a line: x = {0}, y = {2}, i = {5}. Ward distance between clusters A and B is
        // sqrt(2·|A||B|/(|A|+|B|))·‖c_A − c_B‖; for singletons that is sqrt(1)·‖·‖ = euclidean.
        // Merged {0,2} has centroid 1 and size 2; to {5}: sqrt(2·2·1/3)·4 = 4·sqrt(4/3).
        let got = Method::Ward.update(5.0, 3.0, 2.0, 1.0, 1.0, 1.0);
        assert!((got - 4.0 * (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
