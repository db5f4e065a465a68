//! A Pratt parser for CESQL with the operator precedence of the reference grammar
//! (cloudevents sdk-go, which Knative uses): prefix `NOT`/`-` bind tightest, then `LIKE`/`IN`,
//! `* / %`, `+ -`, comparisons, and `AND`/`OR`/`XOR` (one level, right-associative).

use std::borrow::Cow;

use super::eval::Value;
use super::lexer::{error, tokenize, Token};
use super::like::LikePattern;
use super::{ErrorKind, ParseError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    And,
    Or,
    Xor,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// Built-in functions, resolved by name and arity at parse time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Length,
    Concat,
    ConcatWs,
    Lower,
    Upper,
    Trim,
    Left,
    Right,
    Substring,
    Abs,
    Int,
    Bool,
    String,
    IsInt,
    IsBool,
}

impl Function {
    fn resolve(name: &str, arity: usize) -> Option<Self> {
        let upper = name.to_ascii_uppercase();
        let (function, fits) = match upper.as_str() {
            "LENGTH" => (Function::Length, arity == 1),
            "CONCAT" => (Function::Concat, true),
            "CONCAT_WS" => (Function::ConcatWs, arity >= 1),
            "LOWER" => (Function::Lower, arity == 1),
            "UPPER" => (Function::Upper, arity == 1),
            "TRIM" => (Function::Trim, arity == 1),
            "LEFT" => (Function::Left, arity == 2),
            "RIGHT" => (Function::Right, arity == 2),
            "SUBSTRING" => (Function::Substring, arity == 2 || arity == 3),
            "ABS" => (Function::Abs, arity == 1),
            "INT" => (Function::Int, arity == 1),
            "BOOL" => (Function::Bool, arity == 1),
            "STRING" => (Function::String, arity == 1),
            "IS_INT" => (Function::IsInt, arity == 1),
            "IS_BOOL" => (Function::IsBool, arity == 1),
            _ => return None,
        };
        fits.then_some(function)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Literal(Value<'static>),
    Attribute(String),
    Exists(String),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Like {
        value: Box<Expr>,
        pattern: LikePattern,
        negated: bool,
    },
    In {
        value: Box<Expr>,
        set: Vec<Expr>,
        negated: bool,
    },
    Call(Function, Vec<Expr>),
}

const PREFIX_BP: u8 = 6;
const POSTFIX_BP: u8 = 5;

/// An expression with the depth of its tree (1 for a literal or an attribute).
type Tree = (Expr, usize);

pub fn parse(source: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser {
        tokens: tokenize(source)?,
        next: 0,
        nesting: 0,
    };
    let (expr, _) = parser.expression(0)?;
    match parser.peek() {
        Token::Eof => Ok(expr),
        other => Err(error(
            parser.position(),
            format!(
                "expected an operator or the end, found {}",
                other.describe()
            ),
        )),
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    /// How many `expression` calls are open: the parser's own recursion depth.
    nesting: usize,
}

/// The error for an expression nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
fn too_deep(position: usize) -> ParseError {
    error(
        position,
        format!(
            "the expression nests deeper than {} levels (parentheses, operators and function calls inside one another)",
            super::MAX_DEPTH
        ),
    )
}

/// A node over children of the given depths, refused when it is deeper than the limit: the
/// evaluator recurses once per level, so the tree's depth is what has to stay bounded.
fn node(expr: Expr, child_depth: usize, position: usize) -> Result<Tree, ParseError> {
    let depth = child_depth + 1;
    if depth > super::MAX_DEPTH {
        return Err(too_deep(position));
    }
    Ok((expr, depth))
}

fn keyword(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.eq_ignore_ascii_case(word))
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.next.min(self.tokens.len() - 1)].1
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.next + ahead).min(self.tokens.len() - 1)].1
    }

    fn position(&self) -> usize {
        self.tokens[self.next.min(self.tokens.len() - 1)].0
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        self.next += 1;
        token
    }

    fn expect(&mut self, wanted: Token, what: &str) -> Result<(), ParseError> {
        if *self.peek() == wanted {
            self.next += 1;
            Ok(())
        } else {
            Err(error(
                self.position(),
                format!("expected {what}, found {}", self.peek().describe()),
            ))
        }
    }

    /// Parses an expression whose operators bind at least as tightly as `min_bp`; every call
    /// counts one level of nesting, so that `((((…` is refused before the stack runs out.
    fn expression(&mut self, min_bp: u8) -> Result<Tree, ParseError> {
        if self.nesting >= super::MAX_DEPTH {
            return Err(too_deep(self.position()));
        }
        self.nesting += 1;
        let result = self.operators(min_bp);
        self.nesting -= 1;
        result
    }

    fn operators(&mut self, min_bp: u8) -> Result<Tree, ParseError> {
        let mut left = self.prefix()?;
        loop {
            let token = self.peek().clone();
            let negated_postfix = keyword(&token, "NOT")
                && (keyword(self.peek_at(1), "LIKE") || keyword(self.peek_at(1), "IN"));
            if keyword(&token, "LIKE") || keyword(&token, "IN") || negated_postfix {
                if POSTFIX_BP < min_bp {
                    break;
                }
                if negated_postfix {
                    self.next += 1;
                }
                left = self.postfix(left, negated_postfix)?;
                continue;
            }
            let Some((op, left_bp, right_bp)) = infix(&token) else {
                break;
            };
            if left_bp < min_bp {
                break;
            }
            let position = self.position();
            self.next += 1;
            let (right, right_depth) = self.expression(right_bp)?;
            let (left_expr, left_depth) = left;
            left = node(
                Expr::Binary(op, Box::new(left_expr), Box::new(right)),
                left_depth.max(right_depth),
                position,
            )?;
        }
        Ok(left)
    }

    fn postfix(&mut self, (value, value_depth): Tree, negated: bool) -> Result<Tree, ParseError> {
        let operator = self.position();
        let value = Box::new(value);
        if keyword(&self.bump(), "LIKE") {
            let position = self.position();
            match self.bump() {
                Token::Str(pattern) => node(
                    Expr::Like {
                        value,
                        pattern: LikePattern::compile(&pattern),
                        negated,
                    },
                    value_depth,
                    operator,
                ),
                other => Err(error(
                    position,
                    format!(
                        "LIKE expects a string literal pattern, found {}",
                        other.describe()
                    ),
                )),
            }
        } else {
            self.expect(Token::LParen, "'(' to open the IN set")?;
            let (set, set_depth) = self.list()?;
            self.expect(Token::RParen, "',' or ')' in the IN set")?;
            node(
                Expr::In {
                    value,
                    set,
                    negated,
                },
                value_depth.max(set_depth),
                operator,
            )
        }
    }

    /// A comma-separated list of expressions (at least one) and the depth of the deepest.
    fn list(&mut self) -> Result<(Vec<Expr>, usize), ParseError> {
        let mut items = Vec::new();
        let mut deepest = 0;
        loop {
            let (item, depth) = self.expression(0)?;
            items.push(item);
            deepest = deepest.max(depth);
            if *self.peek() != Token::Comma {
                return Ok((items, deepest));
            }
            self.next += 1;
        }
    }

    fn prefix(&mut self) -> Result<Tree, ParseError> {
        let position = self.position();
        match self.bump() {
            Token::Minus => {
                if let Token::Int(magnitude) = *self.peek() {
                    // Fold `-N` so that -2147483648 is a valid literal.
                    self.next += 1;
                    return int_literal(-magnitude, position);
                }
                let (inner, depth) = self.expression(PREFIX_BP)?;
                node(Expr::Negate(Box::new(inner)), depth, position)
            }
            Token::Int(value) => int_literal(value, position),
            Token::Str(text) => Ok((Expr::Literal(Value::Str(Cow::Owned(text))), 1)),
            Token::LParen => {
                let inner = self.expression(0)?;
                self.expect(Token::RParen, "')'")?;
                Ok(inner)
            }
            Token::Word(word) => self.word(word, position),
            other => Err(error(
                position,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }

    fn word(&mut self, word: String, position: usize) -> Result<Tree, ParseError> {
        let upper = word.to_ascii_uppercase();
        match upper.as_str() {
            "TRUE" => return Ok((Expr::Literal(Value::Bool(true)), 1)),
            "FALSE" => return Ok((Expr::Literal(Value::Bool(false)), 1)),
            "NOT" => {
                let (inner, depth) = self.expression(PREFIX_BP)?;
                return node(Expr::Not(Box::new(inner)), depth, position);
            }
            "EXISTS" => {
                let position = self.position();
                return match self.bump() {
                    Token::Word(name) => Ok((Expr::Exists(attribute_name(&name, position)?), 1)),
                    other => Err(error(
                        position,
                        format!(
                            "EXISTS expects an attribute name, found {}",
                            other.describe()
                        ),
                    )),
                };
            }
            "AND" | "OR" | "XOR" | "LIKE" | "IN" => {
                return Err(error(
                    position,
                    format!("expected a value, found the operator {upper}"),
                ))
            }
            _ => {}
        }
        if *self.peek() != Token::LParen {
            return Ok((Expr::Attribute(attribute_name(&word, position)?), 1));
        }
        self.next += 1;
        let (args, args_depth) = if *self.peek() == Token::RParen {
            (Vec::new(), 0)
        } else {
            self.list()?
        };
        self.expect(Token::RParen, "',' or ')' after the function's arguments")?;
        let function = Function::resolve(&word, args.len()).ok_or_else(|| ParseError {
            kind: ErrorKind::MissingFunction,
            column: position + 1,
            message: format!("no function {upper} taking {} argument(s)", args.len()),
        })?;
        node(Expr::Call(function, args), args_depth, position)
    }
}

/// Attribute names are case-insensitive here and stored lower-case: `[a-z0-9]+`.
fn attribute_name(word: &str, position: usize) -> Result<String, ParseError> {
    let name = word.to_ascii_lowercase();
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        Ok(name)
    } else {
        Err(error(
            position,
            format!("{word:?} is not a valid attribute name (letters and digits only)"),
        ))
    }
}

fn int_literal(value: i64, position: usize) -> Result<Tree, ParseError> {
    i32::try_from(value)
        .map(|v| (Expr::Literal(Value::Int(v)), 1))
        .map_err(|_| error(position, format!("integer {value} does not fit in 32 bits")))
}

/// Binding powers (left, right) of the infix operators.
fn infix(token: &Token) -> Option<(BinOp, u8, u8)> {
    let word = |w: &str| keyword(token, w);
    Some(match token {
        _ if word("AND") => (BinOp::And, 1, 1),
        _ if word("OR") => (BinOp::Or, 1, 1),
        _ if word("XOR") => (BinOp::Xor, 1, 1),
        Token::Eq => (BinOp::Eq, 2, 3),
        Token::NotEq => (BinOp::NotEq, 2, 3),
        Token::Lt => (BinOp::Lt, 2, 3),
        Token::Le => (BinOp::Le, 2, 3),
        Token::Gt => (BinOp::Gt, 2, 3),
        Token::Ge => (BinOp::Ge, 2, 3),
        Token::Plus => (BinOp::Add, 3, 4),
        Token::Minus => (BinOp::Sub, 3, 4),
        Token::Star => (BinOp::Mul, 4, 5),
        Token::Slash => (BinOp::Div, 4, 5),
        Token::Percent => (BinOp::Mod, 4, 5),
        _ => return None,
    })
}
