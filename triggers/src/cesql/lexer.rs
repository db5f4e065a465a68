//! Tokens of CESQL, each with its 0-based character position.

use super::{ErrorKind, ParseError};

#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    Int(i64),
    Str(String),
    /// A word: keyword, value identifier or function name, as written.
    Word(String),
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

impl Token {
    pub fn describe(&self) -> String {
        match self {
            Token::Int(i) => format!("integer {i}"),
            Token::Str(s) => format!("string '{s}'"),
            Token::Word(w) => format!("'{w}'"),
            Token::Eof => "the end of the expression".into(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Token::LParen => "(",
            Token::RParen => ")",
            Token::Comma => ",",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Percent => "%",
            Token::Eq => "=",
            Token::NotEq => "!=",
            Token::Lt => "<",
            Token::Le => "<=",
            Token::Gt => ">",
            Token::Ge => ">=",
            _ => "",
        }
    }
}

pub fn error(position: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        kind: ErrorKind::Parse,
        column: position + 1,
        message: message.into(),
    }
}

/// Splits `source` into tokens, ending with `Eof`.
pub fn tokenize(source: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = match c {
            '(' => Token::LParen,
            ')' => Token::RParen,
            ',' => Token::Comma,
            '+' => Token::Plus,
            '-' => Token::Minus,
            '*' => Token::Star,
            '/' => Token::Slash,
            '%' => Token::Percent,
            '=' => Token::Eq,
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 1;
                Token::NotEq
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    i += 1;
                    Token::Le
                }
                Some('>') => {
                    i += 1;
                    Token::NotEq
                }
                _ => Token::Lt,
            },
            '>' if chars.get(i + 1) == Some(&'=') => {
                i += 1;
                Token::Ge
            }
            '>' => Token::Gt,
            '\'' | '"' => {
                let (text, end) = string_literal(&chars, i)?;
                i = end;
                tokens.push((start, Token::Str(text)));
                continue;
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let token = if word.chars().all(|c| c.is_ascii_digit()) {
                    Token::Int(
                        word.parse()
                            .map_err(|_| error(start, format!("integer {word} is out of range")))?,
                    )
                } else {
                    Token::Word(word)
                };
                tokens.push((start, token));
                continue;
            }
            other => return Err(error(start, format!("unexpected character {other:?}"))),
        };
        tokens.push((start, token));
        i += 1;
    }
    tokens.push((chars.len(), Token::Eof));
    Ok(tokens)
}

/// A `'…'` or `"…"` literal starting at `open`; `\'` (or `\"`) escapes the quote, any other
/// backslash is kept as written. Returns the text and the index after the closing quote.
fn string_literal(chars: &[char], open: usize) -> Result<(String, usize), ParseError> {
    let quote = chars[open];
    let mut text = String::new();
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if chars.get(i + 1) == Some(&quote) => {
                text.push(quote);
                i += 2;
            }
            c if c == quote => return Ok((text, i + 1)),
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    Err(error(open, "unterminated string literal"))
}
