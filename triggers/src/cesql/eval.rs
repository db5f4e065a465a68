//! Evaluation: values, implicit casts, operators and built-in functions.

use std::borrow::Cow;

use herald_broker::{AttrValue, CloudEvent};

use super::parser::{BinOp, Expr, Function};
use super::{CesqlError, ErrorKind};

/// A CESQL value; strings borrow from the event or the expression where they can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Bool(bool),
    Int(i32),
    Str(Cow<'a, str>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Bool,
    Int,
    Str,
}

impl Value<'_> {
    fn type_of(&self) -> Type {
        match self {
            Value::Bool(_) => Type::Bool,
            Value::Int(_) => Type::Int,
            Value::Str(_) => Type::Str,
        }
    }
}

fn zero(ty: Type) -> Value<'static> {
    match ty {
        Type::Bool => Value::Bool(false),
        Type::Int => Value::Int(0),
        Type::Str => Value::Str(Cow::Borrowed("")),
    }
}

struct Context<'a, 'e> {
    event: &'a CloudEvent,
    errors: &'e mut Vec<CesqlError>,
}

pub fn evaluate<'a>(
    expr: &'a Expr,
    event: &'a CloudEvent,
    errors: &mut Vec<CesqlError>,
) -> Value<'a> {
    Context { event, errors }.eval(expr)
}

impl<'a> Context<'a, '_> {
    fn fail(&mut self, kind: ErrorKind, message: impl Into<String>) {
        self.errors.push(CesqlError {
            kind,
            message: message.into(),
        });
    }

    /// Evaluates an operand; `None` when it (or anything below it) failed, so that the
    /// caller yields its own zero value.
    fn operand(&mut self, expr: &'a Expr) -> Option<Value<'a>> {
        let before = self.errors.len();
        let value = self.eval(expr);
        (self.errors.len() == before).then_some(value)
    }

    fn eval(&mut self, expr: &'a Expr) -> Value<'a> {
        match expr {
            Expr::Literal(value) => match value {
                Value::Str(s) => Value::Str(Cow::Borrowed(s.as_ref())),
                other => other.clone(),
            },
            Expr::Attribute(name) => match self.event.attribute(name) {
                Some(AttrValue::String(s)) => Value::Str(Cow::Borrowed(s)),
                Some(AttrValue::Integer(i)) => match i32::try_from(*i) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::Str(Cow::Owned(i.to_string())),
                },
                Some(AttrValue::Boolean(b)) => Value::Bool(*b),
                None => {
                    self.fail(
                        ErrorKind::MissingAttribute,
                        format!("attribute {name:?} is not in the event"),
                    );
                    Value::Bool(false)
                }
            },
            Expr::Exists(name) => Value::Bool(self.event.attribute(name).is_some()),
            Expr::Not(inner) => match self.operand(inner) {
                None => Value::Bool(false),
                Some(v) => Value::Bool(!self.as_bool(v)),
            },
            Expr::Negate(inner) => match self.operand(inner) {
                None => Value::Int(0),
                Some(v) => {
                    let i = self.as_int(v);
                    Value::Int(i.checked_neg().unwrap_or_else(|| {
                        self.fail(ErrorKind::Math, "integer overflow in negation");
                        i
                    }))
                }
            },
            Expr::Binary(op, left, right) => self.binary(*op, left, right),
            Expr::Like {
                value,
                pattern,
                negated,
            } => match self.operand(value) {
                None => Value::Bool(false),
                Some(v) => {
                    let text = self.as_string(v);
                    Value::Bool(pattern.matches(&text) != *negated)
                }
            },
            Expr::In {
                value,
                set,
                negated,
            } => {
                let Some(needle) = self.operand(value) else {
                    return Value::Bool(false);
                };
                let target = needle.type_of();
                for element in set {
                    let Some(candidate) = self.operand(element) else {
                        return Value::Bool(false);
                    };
                    let candidate = self.cast(candidate, target);
                    if candidate == needle {
                        return Value::Bool(!*negated);
                    }
                }
                Value::Bool(*negated)
            }
            Expr::Call(function, args) => self.call(*function, args),
        }
    }

    fn binary(&mut self, op: BinOp, left: &'a Expr, right: &'a Expr) -> Value<'a> {
        match op {
            BinOp::And | BinOp::Or => {
                let Some(l) = self.operand(left) else {
                    return Value::Bool(false);
                };
                let l = self.as_bool(l);
                if (op == BinOp::And && !l) || (op == BinOp::Or && l) {
                    return Value::Bool(l);
                }
                let Some(r) = self.operand(right) else {
                    return Value::Bool(false);
                };
                Value::Bool(self.as_bool(r))
            }
            _ => {
                let result_type = match op {
                    BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => Type::Int,
                    _ => Type::Bool,
                };
                let Some(l) = self.operand(left) else {
                    return zero(result_type);
                };
                let Some(r) = self.operand(right) else {
                    return zero(result_type);
                };
                match op {
                    BinOp::Xor => {
                        let (l, r) = (self.as_bool(l), self.as_bool(r));
                        Value::Bool(l != r)
                    }
                    // `=` is overloaded: the right operand's type decides the cast (spec 3.7).
                    BinOp::Eq | BinOp::NotEq => {
                        let l = self.cast(l, r.type_of());
                        Value::Bool((l == r) == (op == BinOp::Eq))
                    }
                    BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                        let (l, r) = (self.as_int(l), self.as_int(r));
                        Value::Bool(match op {
                            BinOp::Lt => l < r,
                            BinOp::Le => l <= r,
                            BinOp::Gt => l > r,
                            _ => l >= r,
                        })
                    }
                    _ => {
                        let (l, r) = (self.as_int(l), self.as_int(r));
                        Value::Int(self.arithmetic(op, l, r))
                    }
                }
            }
        }
    }

    fn arithmetic(&mut self, op: BinOp, l: i32, r: i32) -> i32 {
        if matches!(op, BinOp::Div | BinOp::Mod) && r == 0 {
            self.fail(ErrorKind::Math, "division by zero");
            return 0;
        }
        let (value, overflow) = match op {
            BinOp::Add => l.overflowing_add(r),
            BinOp::Sub => l.overflowing_sub(r),
            BinOp::Mul => l.overflowing_mul(r),
            BinOp::Div => l.overflowing_div(r),
            _ => l.overflowing_rem(r),
        };
        if overflow {
            self.fail(ErrorKind::Math, "32-bit integer overflow");
        }
        value
    }

    fn call(&mut self, function: Function, args: &'a [Expr]) -> Value<'a> {
        let result_type = match function {
            Function::Length | Function::Abs | Function::Int => Type::Int,
            Function::Bool | Function::IsInt | Function::IsBool => Type::Bool,
            _ => Type::Str,
        };
        let mut values = Vec::with_capacity(args.len());
        for arg in args {
            match self.operand(arg) {
                Some(v) => values.push(v),
                None => return zero(result_type),
            }
        }
        let mut values = values.into_iter();
        let mut next = || values.next().unwrap_or(Value::Bool(false));
        match function {
            Function::Length => {
                let s = self.as_string(next());
                Value::Int(i32::try_from(s.chars().count()).unwrap_or(i32::MAX))
            }
            Function::Concat => {
                let mut out = String::new();
                for v in std::iter::from_fn(|| Some(next())).take(args.len()) {
                    out.push_str(&self.as_string(v));
                }
                Value::Str(Cow::Owned(out))
            }
            Function::ConcatWs => {
                let delimiter = self.as_string(next()).into_owned();
                let parts: Vec<String> = (1..args.len())
                    .map(|_| next())
                    .map(|v| self.as_string(v).into_owned())
                    .collect();
                Value::Str(Cow::Owned(parts.join(&delimiter)))
            }
            Function::Lower => Value::Str(Cow::Owned(self.as_string(next()).to_lowercase())),
            Function::Upper => Value::Str(Cow::Owned(self.as_string(next()).to_uppercase())),
            Function::Trim => Value::Str(Cow::Owned(self.as_string(next()).trim().to_owned())),
            Function::Left | Function::Right => {
                let text = self.as_string(next());
                let count = self.as_int(next());
                if count < 0 {
                    self.fail(
                        ErrorKind::FunctionEvaluation,
                        "LEFT/RIGHT length must not be negative",
                    );
                    return Value::Str(text);
                }
                let chars: Vec<char> = text.chars().collect();
                let count = (count as usize).min(chars.len());
                let slice = if function == Function::Left {
                    &chars[..count]
                } else {
                    &chars[chars.len() - count..]
                };
                Value::Str(Cow::Owned(slice.iter().collect()))
            }
            Function::Substring => {
                let text = self.as_string(next());
                let position = self.as_int(next());
                let length = (args.len() == 3).then(&mut next).map(|v| self.as_int(v));
                self.substring(&text, position, length)
            }
            Function::Abs => {
                let i = self.as_int(next());
                Value::Int(i.checked_abs().unwrap_or_else(|| {
                    self.fail(ErrorKind::Math, "ABS overflows for -2147483648");
                    i32::MAX
                }))
            }
            Function::Int => Value::Int(self.as_int(next())),
            Function::Bool => match next() {
                Value::Int(i) => Value::Bool(i != 0),
                other => Value::Bool(self.as_bool(other)),
            },
            Function::String => Value::Str(self.as_string(next())),
            Function::IsInt => Value::Bool(match next() {
                Value::Int(_) => true,
                Value::Bool(_) => false,
                Value::Str(s) => s.parse::<i32>().is_ok(),
            }),
            Function::IsBool => Value::Bool(match next() {
                Value::Bool(_) => true,
                Value::Int(_) => false,
                Value::Str(s) => s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false"),
            }),
        }
    }

    fn substring(&mut self, text: &str, position: i32, length: Option<i32>) -> Value<'a> {
        let chars: Vec<char> = text.chars().collect();
        let len = chars.len() as i64;
        let position = i64::from(position);
        if position > len || position < -len {
            self.fail(
                ErrorKind::FunctionEvaluation,
                format!("SUBSTRING position {position} is outside the string"),
            );
            return zero(Type::Str);
        }
        if length.is_some_and(|l| l < 0) {
            self.fail(
                ErrorKind::FunctionEvaluation,
                "SUBSTRING length must not be negative",
            );
            return zero(Type::Str);
        }
        if position == 0 {
            return zero(Type::Str);
        }
        let start = if position > 0 {
            position - 1
        } else {
            len + position
        } as usize;
        let end = match length {
            Some(l) => (start + l as usize).min(chars.len()),
            None => chars.len(),
        };
        Value::Str(Cow::Owned(chars[start..end].iter().collect()))
    }

    fn cast(&mut self, value: Value<'a>, target: Type) -> Value<'a> {
        match target {
            Type::Bool => Value::Bool(self.as_bool(value)),
            Type::Int => Value::Int(self.as_int(value)),
            Type::Str => Value::Str(self.as_string(value)),
        }
    }

    /// Implicit cast to Boolean: strings `true`/`false` in any case; integers do not cast.
    fn as_bool(&mut self, value: Value<'a>) -> bool {
        match value {
            Value::Bool(b) => b,
            Value::Str(s) if s.eq_ignore_ascii_case("true") => true,
            Value::Str(s) if s.eq_ignore_ascii_case("false") => false,
            other => {
                self.fail(ErrorKind::Cast, format!("cannot cast {other:?} to Boolean"));
                false
            }
        }
    }

    fn as_int(&mut self, value: Value<'a>) -> i32 {
        match value {
            Value::Int(i) => i,
            Value::Bool(b) => i32::from(b),
            Value::Str(s) => s.parse().unwrap_or_else(|_| {
                self.fail(ErrorKind::Cast, format!("cannot cast {s:?} to Integer"));
                0
            }),
        }
    }

    fn as_string(&mut self, value: Value<'a>) -> Cow<'a, str> {
        match value {
            Value::Str(s) => s,
            Value::Int(i) => Cow::Owned(i.to_string()),
            Value::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        }
    }
}
