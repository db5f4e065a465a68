//! A linear pre-scan of YAML (and JSON) text for the nesting of flow collections (`[…]`,
//! `{…}`), before the text reaches libyaml.
//!
//! serde_yaml_ng refuses documents nested deeper than 128 levels, but only after libyaml has
//! scanned the whole text, and libyaml's scanner takes time quadratic in the depth of flow
//! collections: 100,000 nested `{a: ` (600 KB) keep it busy for minutes. Block collections
//! need their depth in indentation on every line, so their text grows quadratically instead
//! and needs no scan. No YAML crate exposes a depth limit on the scanner, hence this scan.

/// How deeply YAML and JSON documents (config files, admin API bodies) may nest: the limit
/// of serde_yaml_ng's deserializer, which this scan applies to flow collections up front.
pub const MAX_DOCUMENT_DEPTH: usize = 128;

/// Where a document nests too deeply: 1-based line and column of the opening bracket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the document nests deeper than {MAX_DOCUMENT_DEPTH} levels at line {} column {}",
            self.line, self.column
        )
    }
}

/// Checks that `[`/`{` nest at most [`MAX_DOCUMENT_DEPTH`] deep, skipping quoted scalars and
/// comments. A quote opens a scalar only where a token starts (after a blank, a line break
/// or `[ { , :`), as in YAML; elsewhere it is part of a plain scalar.
pub fn check_flow_nesting(text: &str) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let (mut line, mut column) = (1, 0);
    let mut previous = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        let token_start = previous.is_whitespace() || matches!(previous, '[' | '{' | ',' | ':');
        match c {
            '\n' => {
                line += 1;
                column = 0;
            }
            '#' if previous.is_whitespace() => {
                // A comment runs to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        column = 0;
                        break;
                    }
                }
                previous = '\n';
                continue;
            }
            '"' | '\'' if token_start => {
                let quote = c;
                let mut escaped = false;
                while let Some(c) = chars.next() {
                    column += 1;
                    if c == '\n' {
                        line += 1;
                        column = 0;
                    }
                    match c {
                        _ if escaped => escaped = false,
                        '\\' if quote == '"' => escaped = true,
                        // `''` is a quote inside single quotes.
                        '\'' if quote == '\'' && chars.peek() == Some(&'\'') => escaped = true,
                        c if c == quote => break,
                        _ => {}
                    }
                }
                previous = quote;
                continue;
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_DOCUMENT_DEPTH {
                    return Err(TooDeep { line, column });
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, levels: usize) -> String {
        format!("a: {}1{}\n", open.repeat(levels), close.repeat(levels))
    }

    #[test]
    fn flow_collections_nest_up_to_the_limit() {
        for (open, close) in [("[", "]"), ("{a: ", "}"), ("{\"a\": ", "}")] {
            assert_eq!(
                check_flow_nesting(&nested(open, close, MAX_DOCUMENT_DEPTH)),
                Ok(()),
                "{open}"
            );
            let err = check_flow_nesting(&nested(open, close, MAX_DOCUMENT_DEPTH + 1)).unwrap_err();
            assert_eq!(err.line, 1);
            assert_eq!(err.column, 4 + MAX_DOCUMENT_DEPTH * open.len(), "{open}");
            assert!(check_flow_nesting(&nested(open, close, 100_000)).is_err());
        }
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count() {
        let deep = "[".repeat(MAX_DOCUMENT_DEPTH + 1);
        for text in [
            format!("a: \"{deep}\"\n"),
            format!("a: '{deep}'\n"),
            format!("a: \"\\\"{deep}\"\n"),
            format!("a: 'it''s {deep}'\n"),
            format!("# {deep}\na: 1\n"),
            format!("a: 1 # {deep}\n"),
            format!("[\"{deep}\", '{deep}']\n"),
        ] {
            assert_eq!(check_flow_nesting(&text), Ok(()), "{text}");
        }
        // A quote inside a plain scalar opens nothing: the brackets after it count.
        assert!(check_flow_nesting(&format!("a: it's {deep}\n")).is_err());
        assert!(check_flow_nesting(&format!("a: b#{deep}\n")).is_err());
    }
}
