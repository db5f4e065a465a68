//! The plan of an EventTransform: its expressions compiled at load (the data path is
//! `crate::transform`).

use bumpalo::Bump;
use herald_crds::EventTransformSpec;
use jsonata_rs::JsonAta;

use super::Target;

/// What happens to the sink's response.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyPlan {
    /// The sink's status and body, passed back.
    PassBack,
    /// The sink's status, empty body.
    Discard,
    /// The sink's response, transformed by this expression.
    Transform(String),
}

/// An EventTransform as it runs: its expressions checked at load.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformPlan {
    pub generation: Option<i64>,
    pub expression: String,
    pub sink: Option<Target>,
    pub reply: ReplyPlan,
}

impl TransformPlan {
    /// Compiles the expressions (Herald refuses a bad one at load; Knative only at run time);
    /// the spec passed Knative's own rules already. The error is `(field path, message)`.
    pub fn of(
        spec: &EventTransformSpec,
        namespace: &str,
        generation: Option<i64>,
    ) -> Result<Self, (String, String)> {
        let expression = spec
            .jsonata
            .as_ref()
            .and_then(|j| j.expression.clone())
            .unwrap_or_default();
        compile(&expression).map_err(|e| ("spec.jsonata.expression".to_owned(), e))?;
        let reply = match &spec.reply {
            Some(reply) if reply.discard == Some(true) => ReplyPlan::Discard,
            Some(reply) => match reply.jsonata.as_ref().and_then(|j| j.expression.clone()) {
                Some(expression) => {
                    compile(&expression)
                        .map_err(|e| ("spec.reply.jsonata.expression".to_owned(), e))?;
                    ReplyPlan::Transform(expression)
                }
                None => ReplyPlan::PassBack,
            },
            None => ReplyPlan::PassBack,
        };
        Ok(Self {
            generation,
            expression,
            sink: spec.sink.as_ref().map(|d| Target::of(d, namespace)),
            reply,
        })
    }
}

/// Parses an expression; the message says where it is wrong.
pub fn compile(expression: &str) -> Result<(), String> {
    let arena = Bump::new();
    JsonAta::new(expression, &arena)
        .map(|_| ())
        .map_err(|e| format!("invalid JSONata expression: {e}"))
}
