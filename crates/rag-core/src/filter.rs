//! A typed metadata-filter algebra that every store translates into its own language
//! (Chroma `where`, Qdrant `models.Filter`, Pinecone operators, the keyword index).

use serde::{Deserialize, Serialize};

use crate::{Metadata, MetadataValue};

/// A filter over chunk metadata.
///
/// ```
/// use rag_core::Filter;
/// let f = Filter::eq("lang", "en").and(Filter::gte("year", 2020).or(Filter::is_in("tag", ["covid", "flu"])));
/// assert_eq!(f.to_string(), r#"(lang == "en" AND (year >= 2020 OR tag IN ["covid", "flu"]))"#);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Field equals value (a list field equals a value it contains).
    Eq(String, MetadataValue),
    /// Field differs from value.
    Ne(String, MetadataValue),
    /// Field equals one of the values.
    In(String, Vec<MetadataValue>),
    /// Field equals none of the values.
    Nin(String, Vec<MetadataValue>),
    /// Numeric field greater than.
    Gt(String, f64),
    /// Numeric field greater than or equal.
    Gte(String, f64),
    /// Numeric field less than.
    Lt(String, f64),
    /// Numeric field less than or equal.
    Lte(String, f64),
    /// All sub-filters hold.
    And(Vec<Filter>),
    /// At least one sub-filter holds.
    Or(Vec<Filter>),
}

impl Filter {
    /// `field == value`.
    pub fn eq(field: impl Into<String>, value: impl Into<MetadataValue>) -> Self {
        Self::Eq(field.into(), value.into())
    }
    /// `field != value`.
    pub fn ne(field: impl Into<String>, value: impl Into<MetadataValue>) -> Self {
        Self::Ne(field.into(), value.into())
    }
    /// `field IN values`.
    pub fn is_in<V: Into<MetadataValue>>(field: impl Into<String>, values: impl IntoIterator<Item = V>) -> Self {
        Self::In(field.into(), values.into_iter().map(Into::into).collect())
    }
    /// `field NOT IN values`.
    pub fn not_in<V: Into<MetadataValue>>(field: impl Into<String>, values: impl IntoIterator<Item = V>) -> Self {
        Self::Nin(field.into(), values.into_iter().map(Into::into).collect())
    }
    /// `field > value`.
    pub fn gt(field: impl Into<String>, value: impl Into<f64>) -> Self {
        Self::Gt(field.into(), value.into())
    }
    /// `field >= value`.
    pub fn gte(field: impl Into<String>, value: impl Into<f64>) -> Self {
        Self::Gte(field.into(), value.into())
    }
    /// `field < value`.
    pub fn lt(field: impl Into<String>, value: impl Into<f64>) -> Self {
        Self::Lt(field.into(), value.into())
    }
    /// `field <= value`.
    pub fn lte(field: impl Into<String>, value: impl Into<f64>) -> Self {
        Self::Lte(field.into(), value.into())
    }

    /// `self AND other`, flattening nested ANDs.
    pub fn and(self, other: Filter) -> Self {
        match (self, other) {
            (Self::And(mut a), Self::And(b)) => {
                a.extend(b);
                Self::And(a)
            }
            (Self::And(mut a), b) => {
                a.push(b);
                Self::And(a)
            }
            (a, b) => Self::And(vec![a, b]),
        }
    }

    /// `self OR other`, flattening nested ORs.
    pub fn or(self, other: Filter) -> Self {
        match (self, other) {
            (Self::Or(mut a), Self::Or(b)) => {
                a.extend(b);
                Self::Or(a)
            }
            (Self::Or(mut a), b) => {
                a.push(b);
                Self::Or(a)
            }
            (a, b) => Self::Or(vec![a, b]),
        }
    }

    /// Evaluates the filter against metadata in Rust (used by the keyword index and by tests
    /// that check each store's translation agrees with this reference semantics).
    /// A missing field never matches a positive condition and always matches `Ne`/`Nin`.
    pub fn matches(&self, metadata: &Metadata) -> bool {
        let num = |f: &str| metadata.get(f).and_then(MetadataValue::as_f64);
        match self {
            Self::Eq(f, v) => metadata.get(f).is_some_and(|m| m.filter_eq(v)),
            Self::Ne(f, v) => !metadata.get(f).is_some_and(|m| m.filter_eq(v)),
            Self::In(f, vs) => metadata.get(f).is_some_and(|m| vs.iter().any(|v| m.filter_eq(v))),
            Self::Nin(f, vs) => !metadata.get(f).is_some_and(|m| vs.iter().any(|v| m.filter_eq(v))),
            Self::Gt(f, x) => num(f).is_some_and(|m| m > *x),
            Self::Gte(f, x) => num(f).is_some_and(|m| m >= *x),
            Self::Lt(f, x) => num(f).is_some_and(|m| m < *x),
            Self::Lte(f, x) => num(f).is_some_and(|m| m <= *x),
            Self::And(v) => v.iter().all(|c| c.matches(metadata)),
            Self::Or(v) => v.iter().any(|c| c.matches(metadata)),
        }
    }

    /// Every field name the filter mentions.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::Eq(f, _)
            | Self::Ne(f, _)
            | Self::In(f, _)
            | Self::Nin(f, _)
            | Self::Gt(f, _)
            | Self::Gte(f, _)
            | Self::Lt(f, _)
            | Self::Lte(f, _) => out.push(f),
            Self::And(v) | Self::Or(v) => v.iter().for_each(|c| c.collect_fields(out)),
        }
    }
}

fn fmt_value(v: &MetadataValue) -> String {
    match v {
        MetadataValue::Str(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |vs: &[MetadataValue]| vs.iter().map(fmt_value).collect::<Vec<_>>().join(", ");
        let join = |v: &[Filter], op: &str| v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(op);
        match self {
            Self::Eq(k, v) => write!(f, "{k} == {}", fmt_value(v)),
            Self::Ne(k, v) => write!(f, "{k} != {}", fmt_value(v)),
            Self::In(k, vs) => write!(f, "{k} IN [{}]", list(vs)),
            Self::Nin(k, vs) => write!(f, "{k} NOT IN [{}]", list(vs)),
            Self::Gt(k, x) => write!(f, "{k} > {x}"),
            Self::Gte(k, x) => write!(f, "{k} >= {x}"),
            Self::Lt(k, x) => write!(f, "{k} < {x}"),
            Self::Lte(k, x) => write!(f, "{k} <= {x}"),
            Self::And(v) => write!(f, "({})", join(v, " AND ")),
            Self::Or(v) => write!(f, "({})", join(v, " OR ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        let mut m = Metadata::new();
        m.insert("year".into(), 2021.into());
        m.insert("lang".into(), "en".into());
        m.insert("tags".into(), MetadataValue::StrList(vec!["a".into(), "b".into()]));
        m.insert("score".into(), 0.5.into());
        m
    }

    #[test]
    fn reference_semantics() {
        let m = meta();
        assert!(Filter::eq("year", 2021).matches(&m));
        assert!(Filter::eq("year", 2021.0).matches(&m), "ints and floats compare numerically");
        assert!(!Filter::eq("year", 2020).matches(&m));
        assert!(Filter::ne("lang", "fr").matches(&m));
        assert!(Filter::ne("missing", "x").matches(&m));
        assert!(Filter::is_in("lang", ["de", "en"]).matches(&m));
        assert!(!Filter::not_in("lang", ["de", "en"]).matches(&m));
        assert!(Filter::eq("tags", "b").matches(&m), "a list field equals a value it contains");
        assert!(Filter::gt("score", 0.4).matches(&m) && !Filter::gt("score", 0.5).matches(&m));
        assert!(Filter::gte("score", 0.5).matches(&m) && Filter::lte("score", 0.5).matches(&m));
        assert!(!Filter::lt("lang", 3).matches(&m), "a string is never in a numeric range");
        let f = Filter::eq("lang", "en").and(Filter::lt("year", 2000).or(Filter::eq("tags", "a")));
        assert!(f.matches(&m));
        assert!(!Filter::eq("lang", "en").and(Filter::lt("year", 2000)).matches(&m));
    }

    #[test]
    fn and_or_flatten() {
        let f = Filter::eq("a", 1).and(Filter::eq("b", 2)).and(Filter::eq("c", 3));
        assert!(matches!(&f, Filter::And(v) if v.len() == 3));
        assert_eq!(f.fields(), vec!["a", "b", "c"]);
    }
}
