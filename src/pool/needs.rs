//! [`Needs`]: what a job needs of whoever runs it, labels and resources. Only a pool on a
//! cluster (feature `nats`) can meet needs: the cluster's routing (`cluster::routing`) sends
//! a task only to a node that offers them; a local pool refuses a job with needs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::error::{Error, ErrorKind, Result};

/// What a task needs of the node that runs it: labels it must have and resource amounts it
/// must have free. See the [routing docs](crate::cluster::routing).
///
/// A `&str` is a label: `pool.apply(f, args).needs("gpu")`.
///
/// ```
/// use multiproc::cluster::Needs;
///
/// let needs = Needs::label("gpu").and_resource("gpu_memory_gb", 16);
/// assert_eq!(needs.to_string(), "gpu+gpu_memory_gb=16");
/// assert_eq!(Needs::from("gpu"), Needs::label("gpu"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Needs {
    labels: BTreeSet<String>,
    resources: BTreeMap<String, u64>,
}

impl Needs {
    /// Needs nothing: any node serves it.
    pub fn none() -> Needs {
        Needs::default()
    }

    /// Needs a node with `label`.
    pub fn label(label: impl Into<String>) -> Needs {
        Needs::none().and_label(label)
    }

    /// Needs `amount` of the resource `name` free on its node while it runs.
    pub fn resource(name: impl Into<String>, amount: u64) -> Needs {
        Needs::none().and_resource(name, amount)
    }

    /// These needs, and a node with `label` too.
    pub fn and_label(mut self, label: impl Into<String>) -> Needs {
        self.labels.insert(label.into());
        self
    }

    /// These needs, and `amount` of the resource `name` (an amount of 0 needs nothing).
    pub fn and_resource(mut self, name: impl Into<String>, amount: u64) -> Needs {
        let name = name.into();
        if amount == 0 {
            self.resources.remove(&name);
        } else {
            self.resources.insert(name, amount);
        }
        self
    }

    /// Whether it needs nothing.
    pub fn is_none(&self) -> bool {
        self.labels.is_empty() && self.resources.is_empty()
    }

    /// The labels needed.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(String::as_str)
    }

    /// The resources needed, with their amounts.
    pub fn resources(&self) -> impl Iterator<Item = (&str, u64)> {
        self.resources
            .iter()
            .map(|(name, amount)| (name.as_str(), *amount))
    }

    /// Whether a node with these labels and (total) resources can ever run it.
    pub(crate) fn satisfied_by(&self, labels: &[String], resources: &[(String, u64)]) -> bool {
        self.labels.iter().all(|label| labels.contains(label))
            && self.resources.iter().all(|(name, amount)| {
                resources
                    .iter()
                    .any(|(offered, total)| offered == name && total >= amount)
            })
    }

    /// Fails unless every label and resource name is made of ASCII letters, digits, `_` and
    /// `-`, as the route's subject token requires.
    pub(crate) fn check(&self) -> Result<()> {
        let names = self.labels.iter().chain(self.resources.keys());
        match names.into_iter().find(|name| !is_valid_name(name)) {
            None => Ok(()),
            Some(name) => Err(invalid_name(name)),
        }
    }

    /// The route's subject token (`gpu+cuda12+gpu=1`); `None` for no needs, which use the
    /// build's own subject.
    pub(crate) fn route(&self) -> Option<String> {
        (!self.is_none()).then(|| self.to_string())
    }

    /// The needs a route's token spells, if it is one.
    pub(crate) fn parse_route(route: &str) -> Option<Needs> {
        let mut needs = Needs::none();
        for part in route.split('+') {
            match part.split_once('=') {
                Some((name, amount)) => {
                    needs.resources.insert(name.into(), amount.parse().ok()?);
                }
                None => {
                    needs.labels.insert(part.into());
                }
            }
        }
        needs.check().ok()?;
        (!needs.is_none()).then_some(needs)
    }
}

/// Labels, then resources as `name=amount`, joined by `+`; `-` for no needs.
impl fmt::Display for Needs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("-");
        }
        let labels = self.labels.iter().map(String::clone);
        let resources = self
            .resources
            .iter()
            .map(|(name, amount)| format!("{name}={amount}"));
        f.write_str(&labels.chain(resources).collect::<Vec<_>>().join("+"))
    }
}

impl From<&str> for Needs {
    fn from(label: &str) -> Needs {
        Needs::label(label)
    }
}

impl From<String> for Needs {
    fn from(label: String) -> Needs {
        Needs::label(label)
    }
}

impl<const N: usize> From<[&str; N]> for Needs {
    fn from(labels: [&str; N]) -> Needs {
        labels.into_iter().fold(Needs::none(), Needs::and_label)
    }
}

/// Whether `name` can be a label or resource name: ASCII letters, digits, `_` and `-`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(crate) fn invalid_name(name: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "the label or resource name {name:?} must be made of ASCII letters, digits, `_` and `-`"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_spells_its_needs_and_parses_back() {
        let needs = Needs::label("gpu").and_label("a").and_resource("gpu", 2);
        assert_eq!(needs.route().as_deref(), Some("a+gpu+gpu=2"));
        assert_eq!(Needs::parse_route("a+gpu+gpu=2"), Some(needs));
        assert_eq!(Needs::none().route(), None);
        assert_eq!(Needs::parse_route("gpu=x"), None);
        assert_eq!(Needs::parse_route("g.pu"), None);
    }

    #[test]
    fn a_node_satisfies_needs_by_labels_and_total_resources() {
        let labels = vec!["gpu".to_string()];
        let resources = vec![("gpu".to_string(), 2)];
        assert!(Needs::label("gpu").satisfied_by(&labels, &resources));
        assert!(Needs::resource("gpu", 2).satisfied_by(&labels, &resources));
        assert!(!Needs::resource("gpu", 3).satisfied_by(&labels, &resources));
        assert!(!Needs::label("tpu").satisfied_by(&labels, &resources));
        assert!(Needs::none().satisfied_by(&[], &[]));
    }
}
