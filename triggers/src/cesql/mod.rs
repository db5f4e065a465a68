//! CloudEvents SQL (CESQL v1): parsed once when a trigger loads, evaluated per event.
//!
//! Evaluation follows the spec's total semantics as the conformance kit pins them down: every
//! expression yields a value, plus the errors met on the way. An operator whose operand failed
//! yields its type's zero value (`false`, `0`, `''`) and passes the error up; an operator that
//! fails itself (division by zero, a failed cast, `ABS` overflow) yields its defined value and
//! records the error. A trigger passes an event only on `true` with no errors.

mod eval;
mod lexer;
mod like;
mod parser;

use std::fmt;

use herald_broker::CloudEvent;

pub use eval::Value;
pub use parser::Expr;

/// How deeply a CESQL expression may nest: the whole expression is level 1 and each
/// parenthesis, operator, `NOT`, unary minus and function call inside another adds one.
/// The parser and the evaluator recurse once per level (a few KiB of stack each in a debug
/// build), so this keeps both far inside a 2 MiB tokio worker stack; deeper expressions are
/// refused with a parse error, never a crash. Long `OR` chains count one level per operator
/// (they associate to the right): use `IN` for long lists of alternatives.
pub const MAX_DEPTH: usize = 64;

/// The error kinds of the CESQL spec (and its conformance kit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Parse,
    Math,
    Cast,
    MissingFunction,
    FunctionEvaluation,
    MissingAttribute,
    Generic,
}

impl ErrorKind {
    /// The kind's name as the conformance kit writes it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Parse => "parse",
            ErrorKind::Math => "math",
            ErrorKind::Cast => "cast",
            ErrorKind::MissingFunction => "missingFunction",
            ErrorKind::FunctionEvaluation => "functionEvaluation",
            ErrorKind::MissingAttribute => "missingAttribute",
            ErrorKind::Generic => "generic",
        }
    }
}

/// An error met while parsing or evaluating.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} error: {message}", kind.name())]
pub struct CesqlError {
    pub kind: ErrorKind,
    pub message: String,
}

/// A parse failure: where (1-based character column) and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} error at column {column}: {message}", kind.name())]
pub struct ParseError {
    /// `Parse`, or `MissingFunction` for an unknown function or arity.
    pub kind: ErrorKind,
    pub column: usize,
    pub message: String,
}

/// A compiled CESQL expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expression {
    source: String,
    root: Expr,
}

/// The value of an evaluation and the errors it met (empty when all went well).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation<'a> {
    pub value: Value<'a>,
    pub errors: Vec<CesqlError>,
}

impl Expression {
    pub fn parse(source: &str) -> Result<Self, ParseError> {
        Ok(Self {
            source: source.to_owned(),
            root: parser::parse(source)?,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn evaluate<'a>(&'a self, event: &'a CloudEvent) -> Evaluation<'a> {
        let mut errors = Vec::new();
        let value = eval::evaluate(&self.root, event, &mut errors);
        Evaluation { value, errors }
    }

    /// The filter verdict: `true` without errors.
    pub fn matches(&self, event: &CloudEvent) -> bool {
        let evaluation = self.evaluate(event);
        evaluation.errors.is_empty() && evaluation.value == Value::Bool(true)
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> CloudEvent {
        let mut e = CloudEvent::new();
        e.set("specversion", "1.0");
        e.set("id", "1");
        e.set("source", "/shop");
        e.set("type", "order.created");
        e.set("sequence", "10");
        e.set("count", herald_broker::AttrValue::Integer(7));
        e
    }

    fn eval(text: &str) -> (Value<'static>, Option<ErrorKind>) {
        let expression = Box::leak(Box::new(Expression::parse(text).unwrap()));
        let event = Box::leak(Box::new(event()));
        let result = expression.evaluate(event);
        (result.value, result.errors.first().map(|e| e.kind))
    }

    #[test]
    fn implicit_casts_follow_the_right_operand() {
        assert_eq!(eval("sequence = 10"), (Value::Bool(true), None));
        assert_eq!(eval("sequence + 5"), (Value::Int(15), None));
        assert_eq!(
            eval("count > 5 AND type LIKE 'order.%'"),
            (Value::Bool(true), None)
        );
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(eval("1 + 2 * 3"), (Value::Int(7), None));
        assert_eq!(eval("10 - 3 - 2"), (Value::Int(5), None));
        assert_eq!(
            eval("TRUE OR FALSE AND FALSE"),
            (Value::Bool(true), None),
            "right-associative logic"
        );
        assert_eq!(eval("NOT EXISTS subject"), (Value::Bool(true), None));
    }

    #[test]
    fn overflow_is_a_math_error() {
        assert_eq!(eval("2147483647 + 1").1, Some(ErrorKind::Math));
        assert_eq!(eval("-2147483648 / -1").1, Some(ErrorKind::Math));
    }

    #[test]
    fn parse_errors_name_the_column() {
        let err = Expression::parse("type = 'a' AND (").unwrap_err();
        assert_eq!((err.kind, err.column), (ErrorKind::Parse, 17), "{err}");
        let err = Expression::parse("type == 'a'").unwrap_err();
        assert_eq!(err.column, 7, "{err}");
        let err = Expression::parse("NOPE(1)").unwrap_err();
        assert_eq!(err.kind, ErrorKind::MissingFunction);
        let err = Expression::parse("'unterminated").unwrap_err();
        assert_eq!(err.column, 1, "{err}");
        assert!(
            Expression::parse("2147483648").is_err(),
            "integer literals are 32-bit"
        );
    }

    /// Runs `f` on a thread with a tokio worker's default stack (2 MiB), where the admin API
    /// and the dispatchers parse and evaluate expressions.
    fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .expect("no stack overflow")
    }

    /// Expressions `levels` deep of each shape that nests.
    fn nested(levels: usize) -> Vec<(&'static str, String)> {
        let inner = levels - 1;
        vec![
            ("NOT", "NOT ".repeat(inner) + "TRUE"),
            (
                "parentheses",
                "(".repeat(inner) + "TRUE" + &")".repeat(inner),
            ),
            ("unary minus", "- ".repeat(inner) + "count"),
            ("AND chain", "TRUE AND ".repeat(inner) + "TRUE"),
            ("+ chain", "1 + ".repeat(inner) + "1"),
            (
                "function calls",
                "ABS(".repeat(inner) + "1" + &")".repeat(inner),
            ),
            ("IN sets", "1 IN (".repeat(inner) + "1" + &")".repeat(inner)),
            ("LIKE", "'a'".to_owned() + &" LIKE 'a'".repeat(inner)),
        ]
    }

    #[test]
    fn nesting_up_to_the_limit_parses_and_evaluates() {
        on_worker_stack(|| {
            for (shape, text) in nested(MAX_DEPTH) {
                let expression = Expression::parse(&text)
                    .unwrap_or_else(|e| panic!("{shape} at {MAX_DEPTH} levels: {e}"));
                let _ = expression.evaluate(&event());
            }
        });
    }

    #[test]
    fn nesting_beyond_the_limit_is_a_parse_error_naming_it() {
        on_worker_stack(|| {
            for levels in [MAX_DEPTH + 1, 2_000, 100_000] {
                for (shape, text) in nested(levels) {
                    let err = Expression::parse(&text)
                        .expect_err(&format!("{shape} at {levels} levels must be refused"));
                    assert_eq!(err.kind, ErrorKind::Parse, "{shape}: {err}");
                    assert!(
                        err.message
                            .contains(&format!("deeper than {MAX_DEPTH} levels")),
                        "{shape}: {err}"
                    );
                }
            }
        });
    }
}
