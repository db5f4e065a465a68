//! Trigger filters: the legacy `filter.attributes`, Knative's Subscriptions API dialects
//! (`exact`, `prefix`, `suffix`, `all`, `any`, `not`, `cesql`) and Herald's `jsonpath`.
//!
//! Filters are compiled once when a trigger loads ([`compile`]); each node keeps the JSON path
//! of the element it came from, so load errors and `herald filter test` can point at it.
//! Results are tri-state as in Knative: only [`Verdict::Fail`] blocks delivery.

mod attributes;
mod jsonpath;

use std::collections::BTreeMap;

use herald_broker::CloudEvent;
use herald_crds::validation::is_filter_attribute_name;
use herald_crds::{FieldError, SubscriptionsApiFilter, TriggerSpec};

pub use attributes::AttributesFilter;
pub use jsonpath::{JsonPathError, JsonPathFilter};

use crate::cesql::Expression;

/// How deeply `all`, `any` and `not` may nest in `spec.filters`: an element of the list is
/// level 1. Compiling, evaluating and explaining recurse once per level, so a bound keeps a
/// trigger from any source (file, admin API, Kubernetes) from exhausting a worker's stack.
pub const MAX_DEPTH: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The element filters nothing (empty `all`, `{}`): it neither passes nor fails.
    NoFilter,
}

impl Verdict {
    fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::NoFilter, v) | (v, Verdict::NoFilter) => v,
            (Verdict::Pass, Verdict::Pass) => Verdict::Pass,
            _ => Verdict::Fail,
        }
    }

    fn or(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::NoFilter, v) | (v, Verdict::NoFilter) => v,
            (Verdict::Fail, Verdict::Fail) => Verdict::Fail,
            _ => Verdict::Pass,
        }
    }
}

/// Which match a dialect asks for on each named attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttributeMatch {
    Exact,
    Prefix,
    Suffix,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    NoFilter,
    Attributes(AttributesFilter),
    Match(AttributeMatch, Vec<(String, String)>),
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Cesql(Expression),
    JsonPath(JsonPathFilter),
}

/// A compiled filter element.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// Where it was declared, e.g. `spec.filters[1].any[0]`.
    pub path: String,
    pub kind: Kind,
}

/// Which element decided a verdict, for people debugging a trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub path: String,
    pub reason: String,
}

impl Filter {
    pub fn no_filter() -> Self {
        Self {
            path: "spec".into(),
            kind: Kind::NoFilter,
        }
    }

    /// Whether the trigger takes the event (anything but `Fail`).
    pub fn matches(&self, event: &CloudEvent) -> bool {
        self.evaluate(event) != Verdict::Fail
    }

    pub fn evaluate(&self, event: &CloudEvent) -> Verdict {
        match &self.kind {
            Kind::NoFilter => Verdict::NoFilter,
            Kind::Attributes(filter) => pass_if(filter.matches(event)),
            Kind::Match(how, pairs) => pass_if(match_attributes(*how, pairs, event)),
            Kind::All(children) => combine(children, event, Verdict::and, Verdict::Fail),
            Kind::Any(children) => combine(children, event, Verdict::or, Verdict::Pass),
            Kind::Not(inner) => match inner.evaluate(event) {
                Verdict::Pass => Verdict::Fail,
                Verdict::Fail => Verdict::Pass,
                Verdict::NoFilter => Verdict::NoFilter,
            },
            Kind::Cesql(expression) => pass_if(expression.matches(event)),
            Kind::JsonPath(query) => pass_if(query.matches(event)),
        }
    }

    /// The verdict and the element that decided it.
    pub fn explain(&self, event: &CloudEvent) -> Decision {
        let verdict = self.evaluate(event);
        let decide = |reason: String| Decision {
            verdict,
            path: self.path.clone(),
            reason,
        };
        match &self.kind {
            Kind::NoFilter => decide("no filter: every event passes".into()),
            Kind::Attributes(_) => decide(format!("filter.attributes {}", describe(verdict))),
            Kind::Match(how, pairs) => decide(format!(
                "{how:?} match on {} {}",
                names(pairs),
                describe(verdict)
            )),
            Kind::All(children) | Kind::Any(children) => {
                let deciding = if matches!(self.kind, Kind::All(_)) {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                };
                let deciding_child = children.iter().find(|c| c.evaluate(event) == deciding);
                match deciding_child.or(children.first().filter(|_| children.len() == 1)) {
                    Some(child) => child.explain(event),
                    None => decide(match verdict {
                        Verdict::NoFilter => "no element filters anything".into(),
                        Verdict::Pass => "every element passed".into(),
                        Verdict::Fail => "no element passed".into(),
                    }),
                }
            }
            Kind::Not(inner) => {
                let inner = inner.explain(event);
                Decision {
                    verdict,
                    path: self.path.clone(),
                    reason: format!("not: {} ({})", inner.path, inner.reason),
                }
            }
            Kind::Cesql(expression) => {
                let evaluation = expression.evaluate(event);
                let errors: Vec<String> =
                    evaluation.errors.iter().map(ToString::to_string).collect();
                let detail = if errors.is_empty() {
                    String::new()
                } else {
                    format!(", errors: {}", errors.join("; "))
                };
                decide(format!(
                    "CESQL `{expression}` evaluated to {:?}{detail}",
                    evaluation.value
                ))
            }
            Kind::JsonPath(_) => decide(format!(
                "JSONPath {}",
                if verdict == Verdict::Pass {
                    "selected at least one node of the data"
                } else {
                    "selected nothing (or the data is not JSON)"
                }
            )),
        }
    }

    /// The exact `type` this filter requires of every event it passes, if any: triggers are
    /// indexed by it so that most of them are never evaluated for an event.
    pub fn required_exact(&self, attribute: &str) -> Option<&str> {
        match &self.kind {
            Kind::Attributes(filter) => filter.required(attribute),
            Kind::Match(AttributeMatch::Exact, pairs) => pairs
                .iter()
                .find(|(name, _)| name == attribute)
                .map(|(_, value)| value.as_str()),
            Kind::All(children) => children
                .iter()
                .find_map(|child| child.required_exact(attribute)),
            _ => None,
        }
    }
}

/// Folds the children's verdicts from `NoFilter`, stopping early at `stop` (short-circuit).
fn combine(
    children: &[Filter],
    event: &CloudEvent,
    op: fn(Verdict, Verdict) -> Verdict,
    stop: Verdict,
) -> Verdict {
    let mut verdict = Verdict::NoFilter;
    for child in children {
        verdict = op(verdict, child.evaluate(event));
        if verdict == stop {
            break;
        }
    }
    verdict
}

fn pass_if(ok: bool) -> Verdict {
    if ok {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

fn describe(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "matched",
        Verdict::Fail => "did not match",
        Verdict::NoFilter => "filters nothing",
    }
}

fn names(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// All named attributes present and matching; no allocation for string attributes.
fn match_attributes(how: AttributeMatch, pairs: &[(String, String)], event: &CloudEvent) -> bool {
    pairs
        .iter()
        .all(|(name, wanted)| match event.attribute(name) {
            None => false,
            Some(value) => {
                let text = value.as_text();
                match how {
                    AttributeMatch::Exact => text == wanted.as_str(),
                    AttributeMatch::Prefix => text.starts_with(wanted.as_str()),
                    AttributeMatch::Suffix => text.ends_with(wanted.as_str()),
                }
            }
        })
}

/// Compiles a trigger's filter: a non-empty `spec.filters` replaces `spec.filter`.
pub fn compile(spec: &TriggerSpec) -> Result<Filter, FieldError> {
    if !spec.filters.is_empty() {
        return compile_filters(&spec.filters);
    }
    match &spec.filter {
        Some(filter) if !filter.attributes.is_empty() => Ok(Filter {
            path: "spec.filter.attributes".into(),
            kind: Kind::Attributes(AttributesFilter::new(filter.attributes.clone())),
        }),
        _ => Ok(Filter::no_filter()),
    }
}

/// Compiles a `spec.filters` list (of a Trigger or an ApiServerSource): every element must
/// pass; an empty list filters nothing. Errors name the element's path under `spec.filters`.
pub fn compile_filters(filters: &[SubscriptionsApiFilter]) -> Result<Filter, FieldError> {
    if filters.is_empty() {
        return Ok(Filter::no_filter());
    }
    let children = filters
        .iter()
        .enumerate()
        .map(|(i, f)| compile_element(f, &format!("spec.filters[{i}]"), 1))
        .collect::<Result<_, _>>()?;
    Ok(Filter {
        path: "spec.filters".into(),
        kind: Kind::All(children),
    })
}

/// Compiles one element at nesting `level` (1 for an element of `spec.filters`).
fn compile_element(
    element: &SubscriptionsApiFilter,
    path: &str,
    level: usize,
) -> Result<Filter, FieldError> {
    if level > MAX_DEPTH {
        return Err(FieldError::new(
            path,
            format!(
                "filters nest deeper than {MAX_DEPTH} levels (all, any and not inside one another)"
            ),
        ));
    }
    let dialects: Vec<&str> = [
        ("all", element.all.is_some()),
        ("any", element.any.is_some()),
        ("not", element.not.is_some()),
        ("exact", element.exact.is_some()),
        ("prefix", element.prefix.is_some()),
        ("suffix", element.suffix.is_some()),
        ("cesql", element.cesql.is_some()),
        ("jsonpath", element.jsonpath.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if dialects.len() > 1 {
        return Err(FieldError::new(
            path,
            format!(
                "multiple dialects found ({}): each element sets exactly one",
                dialects.join(", ")
            ),
        ));
    }
    let node = |kind| {
        Ok(Filter {
            path: path.to_owned(),
            kind,
        })
    };
    let children = |list: &[SubscriptionsApiFilter], dialect: &str| {
        list.iter()
            .enumerate()
            .map(|(i, f)| compile_element(f, &format!("{path}.{dialect}[{i}]"), level + 1))
            .collect::<Result<Vec<_>, _>>()
    };
    if let Some(list) = &element.all {
        return node(Kind::All(children(list, "all")?));
    }
    if let Some(list) = &element.any {
        return node(Kind::Any(children(list, "any")?));
    }
    if let Some(inner) = &element.not {
        return node(Kind::Not(Box::new(compile_element(
            inner,
            &format!("{path}.not"),
            level + 1,
        )?)));
    }
    for (dialect, how, map) in [
        ("exact", AttributeMatch::Exact, &element.exact),
        ("prefix", AttributeMatch::Prefix, &element.prefix),
        ("suffix", AttributeMatch::Suffix, &element.suffix),
    ] {
        if let Some(map) = map {
            return node(Kind::Match(
                how,
                attribute_pairs(map, &format!("{path}.{dialect}"))?,
            ));
        }
    }
    if let Some(text) = &element.cesql {
        let expression = Expression::parse(text).map_err(|e| {
            FieldError::new(
                format!("{path}.cesql"),
                format!("invalid CESQL expression {}: {e}", excerpt(text)),
            )
        })?;
        return node(Kind::Cesql(expression));
    }
    if let Some(query) = &element.jsonpath {
        let filter = JsonPathFilter::parse(query).map_err(|e| {
            FieldError::new(
                format!("{path}.jsonpath"),
                format!("invalid JSONPath {}: {e}", excerpt(query)),
            )
        })?;
        return node(Kind::JsonPath(filter));
    }
    node(Kind::NoFilter)
}

/// The text quoted for an error message, cut after 80 characters: an expression may be
/// megabytes long, and the error names the column anyway.
fn excerpt(text: &str) -> String {
    const SHOWN: usize = 80;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

fn attribute_pairs(
    map: &BTreeMap<String, String>,
    path: &str,
) -> Result<Vec<(String, String)>, FieldError> {
    map.iter()
        .map(|(name, value)| {
            if !is_filter_attribute_name(name) {
                return Err(FieldError::new(
                    format!("{path}.{name}"),
                    format!("invalid attribute name {name:?}: must match ^[a-z][a-z0-9]*$"),
                ));
            }
            if value.is_empty() {
                return Err(FieldError::new(
                    format!("{path}.{name}"),
                    "the value must not be empty",
                ));
            }
            Ok((name.clone(), value.clone()))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
