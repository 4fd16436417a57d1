//! Aspects between chart bodies: conjunction (0°), sextile (60°), square (90°), trine (120°)
//! and opposition (180°) within configurable orbs; `applying` when the separation is moving
//! towards the exact angle (from the bodies' speeds).

use super::math::diff_deg;

/// The five major aspects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AspectKind {
    Conjunction,
    Sextile,
    Square,
    Trine,
    Opposition,
}

impl AspectKind {
    pub const ALL: [AspectKind; 5] = [
        AspectKind::Conjunction,
        AspectKind::Sextile,
        AspectKind::Square,
        AspectKind::Trine,
        AspectKind::Opposition,
    ];

    /// The exact angle, degrees.
    pub fn angle(self) -> f64 {
        match self {
            AspectKind::Conjunction => 0.0,
            AspectKind::Sextile => 60.0,
            AspectKind::Square => 90.0,
            AspectKind::Trine => 120.0,
            AspectKind::Opposition => 180.0,
        }
    }
}

/// Maximum orb per aspect, degrees. Defaults: 8° for conjunction, trine and opposition, 7°
/// for the square, 6° for the sextile.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Orbs {
    pub conjunction: f64,
    pub sextile: f64,
    pub square: f64,
    pub trine: f64,
    pub opposition: f64,
}

impl Default for Orbs {
    fn default() -> Self {
        Self {
            conjunction: 8.0,
            sextile: 6.0,
            square: 7.0,
            trine: 8.0,
            opposition: 8.0,
        }
    }
}

impl Orbs {
    pub fn get(&self, kind: AspectKind) -> f64 {
        match kind {
            AspectKind::Conjunction => self.conjunction,
            AspectKind::Sextile => self.sextile,
            AspectKind::Square => self.square,
            AspectKind::Trine => self.trine,
            AspectKind::Opposition => self.opposition,
        }
    }

    /// The first orb that is not a finite number in `[0, 30]`, by name.
    pub fn invalid(&self) -> Option<&'static str> {
        let named = [
            ("conjunction", self.conjunction),
            ("sextile", self.sextile),
            ("square", self.square),
            ("trine", self.trine),
            ("opposition", self.opposition),
        ];
        named
            .into_iter()
            .find(|(_, v)| !(v.is_finite() && (0.0..=30.0).contains(v)))
            .map(|(n, _)| n)
    }
}

/// One aspect between bodies `a` and `b` (indices into the caller's list).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aspect {
    pub a: usize,
    pub b: usize,
    pub kind: AspectKind,
    /// The actual separation, degrees in `[0, 180]`.
    pub angle: f64,
    /// |separation − exact angle|, degrees.
    pub orb: f64,
    pub applying: bool,
}

/// Every aspect among bodies given as (longitude°, speed °/day), pairs `a < b`. With the
/// default orbs the aspects cannot overlap; otherwise the tightest one is kept.
pub fn find(bodies: &[(f64, f64)], orbs: &Orbs) -> Vec<Aspect> {
    let mut out = Vec::new();
    for a in 0..bodies.len() {
        for b in a + 1..bodies.len() {
            let (la, va) = bodies[a];
            let (lb, vb) = bodies[b];
            let d = diff_deg(la, lb);
            let sep = d.abs();
            let best = AspectKind::ALL
                .into_iter()
                .map(|k| (k, sep - k.angle()))
                .filter(|&(k, off)| off.abs() <= orbs.get(k))
                .min_by(|x, y| x.1.abs().total_cmp(&y.1.abs()));
            if let Some((kind, off)) = best {
                // d(sep)/dt = sign(d)·(vb − va); applying when it drives `off` towards 0.
                let rate = if d >= 0.0 { vb - va } else { va - vb };
                out.push(Aspect {
                    a,
                    b,
                    kind,
                    angle: sep,
                    orb: off.abs(),
                    applying: off * rate < 0.0,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_applying_and_separating() {
        // A at 0°, B at 93° moving back towards A: separation shrinking to 90° → applying.
        let asp = find(&[(0.0, 0.0), (93.0, -1.0)], &Orbs::default());
        assert_eq!(asp.len(), 1);
        assert_eq!(asp[0].kind, AspectKind::Square);
        assert!((asp[0].orb - 3.0).abs() < 1e-12);
        assert!(asp[0].applying);
        let asp = find(&[(0.0, 0.0), (93.0, 1.0)], &Orbs::default());
        assert!(!asp[0].applying);
    }

    #[test]
    fn wraps_around_aries_and_respects_orbs() {
        let asp = find(&[(358.0, 1.0), (2.0, 0.0)], &Orbs::default());
        assert_eq!(asp[0].kind, AspectKind::Conjunction);
        assert!(asp[0].applying, "the faster body behind is catching up");
        let tight = Orbs {
            conjunction: 3.0,
            ..Orbs::default()
        };
        assert!(find(&[(358.0, 1.0), (2.0, 0.0)], &tight).is_empty());
        assert!(find(&[(0.0, 0.0), (45.0, 0.0)], &Orbs::default()).is_empty());
    }
}
