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

pub fn parse(source: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser {
        tokens: tokenize(source)?,
        next: 0,
    };
    let expr = parser.expression(0)?;
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

    fn expression(&mut self, min_bp: u8) -> Result<Expr, ParseError> {
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
            self.next += 1;
            let right = self.expression(right_bp)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn postfix(&mut self, value: Expr, negated: bool) -> Result<Expr, ParseError> {
        let value = Box::new(value);
        if keyword(&self.bump(), "LIKE") {
            let position = self.position();
            match self.bump() {
                Token::Str(pattern) => Ok(Expr::Like {
                    value,
                    pattern: LikePattern::compile(&pattern),
                    negated,
                }),
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
            let mut set = vec![self.expression(0)?];
            while *self.peek() == Token::Comma {
                self.next += 1;
                set.push(self.expression(0)?);
            }
            self.expect(Token::RParen, "',' or ')' in the IN set")?;
            Ok(Expr::In {
                value,
                set,
                negated,
            })
        }
    }

    fn prefix(&mut self) -> Result<Expr, ParseError> {
        let position = self.position();
        match self.bump() {
            Token::Minus => {
                if let Token::Int(magnitude) = *self.peek() {
                    // Fold `-N` so that -2147483648 is a valid literal.
                    self.next += 1;
                    return int_literal(-magnitude, position);
                }
                Ok(Expr::Negate(Box::new(self.expression(PREFIX_BP)?)))
            }
            Token::Int(value) => int_literal(value, position),
            Token::Str(text) => Ok(Expr::Literal(Value::Str(Cow::Owned(text)))),
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

    fn word(&mut self, word: String, position: usize) -> Result<Expr, ParseError> {
        let upper = word.to_ascii_uppercase();
        match upper.as_str() {
            "TRUE" => return Ok(Expr::Literal(Value::Bool(true))),
            "FALSE" => return Ok(Expr::Literal(Value::Bool(false))),
            "NOT" => return Ok(Expr::Not(Box::new(self.expression(PREFIX_BP)?))),
            "EXISTS" => {
                let position = self.position();
                return match self.bump() {
                    Token::Word(name) => Ok(Expr::Exists(attribute_name(&name, position)?)),
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
            return Ok(Expr::Attribute(attribute_name(&word, position)?));
        }
        self.next += 1;
        let mut args = Vec::new();
        if *self.peek() != Token::RParen {
            args.push(self.expression(0)?);
            while *self.peek() == Token::Comma {
                self.next += 1;
                args.push(self.expression(0)?);
            }
        }
        self.expect(Token::RParen, "',' or ')' after the function's arguments")?;
        let function = Function::resolve(&word, args.len()).ok_or_else(|| ParseError {
            kind: ErrorKind::MissingFunction,
            column: position + 1,
            message: format!("no function {upper} taking {} argument(s)", args.len()),
        })?;
        Ok(Expr::Call(function, args))
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

fn int_literal(value: i64, position: usize) -> Result<Expr, ParseError> {
    i32::try_from(value)
        .map(|v| Expr::Literal(Value::Int(v)))
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
