//! Pacemaker scores: integers saturating at ±INFINITY (1,000,000) where -INFINITY wins.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The magnitude of INFINITY, as Pacemaker defines it.
pub const INFINITY: i64 = 1_000_000;

/// A placement score.
///
/// Addition follows Pacemaker: -INFINITY plus anything is -INFINITY, otherwise +INFINITY plus
/// anything is +INFINITY, otherwise the sum clamped to ±INFINITY. In JSON a score is an integer,
/// or one of the strings `"INFINITY"`, `"+INFINITY"`, `"-INFINITY"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Score(i64);

impl Score {
    pub const ZERO: Score = Score(0);
    pub const INFINITY: Score = Score(INFINITY);
    pub const MINUS_INFINITY: Score = Score(-INFINITY);

    /// A score from an integer, clamped to ±INFINITY.
    pub const fn new(value: i64) -> Score {
        if value >= INFINITY {
            Score(INFINITY)
        } else if value <= -INFINITY {
            Score(-INFINITY)
        } else {
            Score(value)
        }
    }

    pub const fn value(self) -> i64 {
        self.0
    }

    pub const fn is_minus_infinity(self) -> bool {
        self.0 <= -INFINITY
    }

    pub const fn is_infinity(self) -> bool {
        self.0 >= INFINITY
    }

    /// This score multiplied by `numerator / INFINITY`, the way a colocation of score
    /// `numerator` scales the dependent's preferences it passes to its primary.
    pub fn scaled(self, numerator: Score) -> Score {
        if numerator.0.abs() >= INFINITY {
            return if numerator.0 > 0 {
                self
            } else {
                Score(-self.0)
            };
        }
        let value = i128::from(self.0) * i128::from(numerator.0) / i128::from(INFINITY);
        // `value` is bounded by |self| < 2^63, so the conversion cannot fail.
        Score::new(i64::try_from(value).unwrap_or(0))
    }
}

/// Pacemaker's score addition (`pcmk__add_scores`).
impl std::ops::Add for Score {
    type Output = Score;

    fn add(self, other: Score) -> Score {
        let mut sum = ScoreSum::default();
        sum.add(self);
        sum.add(other);
        sum.total()
    }
}

impl From<i64> for Score {
    fn from(value: i64) -> Score {
        Score::new(value)
    }
}

impl fmt::Display for Score {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_infinity() {
            formatter.write_str("INFINITY")
        } else if self.is_minus_infinity() {
            formatter.write_str("-INFINITY")
        } else {
            write!(formatter, "{}", self.0)
        }
    }
}

/// An order-independent sum of scores.
///
/// Pacemaker adds scores one at a time with clamping, which makes the total depend on the
/// order of the terms when finite terms exceed INFINITY. Keeping the infinities apart from an
/// unclamped finite sum gives the same answer in every order, so shuffled input cannot change a
/// plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScoreSum {
    finite: i64,
    plus_infinity: bool,
    minus_infinity: bool,
}

impl ScoreSum {
    pub fn add(&mut self, score: Score) {
        if score.is_minus_infinity() {
            self.minus_infinity = true;
        } else if score.is_infinity() {
            self.plus_infinity = true;
        } else {
            self.finite = self.finite.saturating_add(score.0);
        }
    }

    pub fn merge(&mut self, other: ScoreSum) {
        self.finite = self.finite.saturating_add(other.finite);
        self.plus_infinity |= other.plus_infinity;
        self.minus_infinity |= other.minus_infinity;
    }

    pub fn total(self) -> Score {
        if self.minus_infinity {
            Score::MINUS_INFINITY
        } else if self.plus_infinity {
            Score::INFINITY
        } else {
            Score::new(self.finite)
        }
    }

    pub fn is_minus_infinity(self) -> bool {
        self.minus_infinity
    }
}

impl Serialize for Score {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_infinity() {
            serializer.serialize_str("INFINITY")
        } else if self.is_minus_infinity() {
            serializer.serialize_str("-INFINITY")
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Score, D::Error> {
        deserializer.deserialize_any(ScoreVisitor)
    }
}

struct ScoreVisitor;

impl Visitor<'_> for ScoreVisitor {
    type Value = Score;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an integer score or \"INFINITY\", \"+INFINITY\", \"-INFINITY\"")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Score, E> {
        Ok(Score::new(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Score, E> {
        Ok(Score::new(i64::try_from(value).unwrap_or(i64::MAX)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Score, E> {
        match value.trim() {
            "INFINITY" | "+INFINITY" | "inf" | "+inf" => Ok(Score::INFINITY),
            "-INFINITY" | "-inf" => Ok(Score::MINUS_INFINITY),
            other => other
                .parse::<i64>()
                .map(Score::new)
                .map_err(|_| E::custom(format!("invalid score {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the Pacemaker rules: -INFINITY wins over +INFINITY, sums clamp.
    #[test]
    fn addition_follows_pacemaker() {
        assert_eq!(
            Score::INFINITY + Score::MINUS_INFINITY,
            Score::MINUS_INFINITY
        );
        assert_eq!(Score::INFINITY + Score::new(-5), Score::INFINITY);
        assert_eq!(Score::new(999_999) + Score::new(5), Score::INFINITY);
        assert_eq!(Score::new(-3) + Score::new(5), Score::new(2));
    }

    // Proves the sum does not depend on the order of its terms.
    #[test]
    fn sum_is_order_independent() {
        let terms = [
            Score::new(900_000),
            Score::new(900_000),
            Score::new(-900_000),
        ];
        let mut forward = ScoreSum::default();
        terms.iter().for_each(|term| forward.add(*term));
        let mut backward = ScoreSum::default();
        terms.iter().rev().for_each(|term| backward.add(*term));
        assert_eq!(forward.total(), backward.total());
        assert_eq!(forward.total(), Score::new(900_000));
    }

    #[test]
    fn scaling_by_colocation_score() {
        assert_eq!(Score::new(100).scaled(Score::INFINITY), Score::new(100));
        assert_eq!(Score::new(100).scaled(Score::new(500_000)), Score::new(50));
        assert_eq!(
            Score::new(100).scaled(Score::MINUS_INFINITY),
            Score::new(-100)
        );
    }

    #[test]
    fn json_round_trip() {
        let scores: Vec<Score> =
            serde_json::from_str(r#"[1, "INFINITY", "-INFINITY", "+INFINITY", -7]"#)
                .expect("valid scores");
        assert_eq!(
            scores,
            vec![
                Score::new(1),
                Score::INFINITY,
                Score::MINUS_INFINITY,
                Score::INFINITY,
                Score::new(-7)
            ]
        );
        assert_eq!(
            serde_json::to_string(&scores).expect("serializable"),
            r#"[1,"INFINITY","-INFINITY","INFINITY",-7]"#
        );
    }
}
