//! `LIKE` patterns: `%` any run, `_` one character, `\%` and `\_` literal; compiled once.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Char(char),
    One,
    Many,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LikePattern {
    parts: Vec<Part>,
}

impl LikePattern {
    pub fn compile(pattern: &str) -> Self {
        let mut parts = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if matches!(chars.peek(), Some('%' | '_')) => {
                    parts.push(Part::Char(chars.next().unwrap_or(c)));
                }
                '%' => {
                    if parts.last() != Some(&Part::Many) {
                        parts.push(Part::Many);
                    }
                }
                '_' => parts.push(Part::One),
                c => parts.push(Part::Char(c)),
            }
        }
        Self { parts }
    }

    /// Wildcard matching with single-star backtracking: O(len(text)·len(pattern)) at worst,
    /// no allocation.
    pub fn matches(&self, text: &str) -> bool {
        let mut p = 0;
        // Where to resume after the last `%`: (pattern index after it, text byte offset).
        let mut backtrack: Option<(usize, usize)> = None;
        let rest = |offset: usize| text[offset..].chars().next();
        let mut offset = 0;
        loop {
            let current = rest(offset);
            match (self.parts.get(p), current) {
                (Some(Part::Many), _) => {
                    p += 1;
                    backtrack = Some((p, offset));
                    continue;
                }
                (Some(Part::One), Some(c)) => {
                    p += 1;
                    offset += c.len_utf8();
                    continue;
                }
                (Some(Part::Char(expected)), Some(c)) if *expected == c => {
                    p += 1;
                    offset += c.len_utf8();
                    continue;
                }
                (None, None) => return true,
                _ => {}
            }
            match backtrack {
                Some((resume, from)) => match rest(from) {
                    Some(c) => {
                        let next = from + c.len_utf8();
                        backtrack = Some((resume, next));
                        p = resume;
                        offset = next;
                    }
                    None => return false,
                },
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_escapes() {
        let m = |p: &str, t: &str| LikePattern::compile(p).matches(t);
        assert!(m("a%b%c", "azzzbzzzc"));
        assert!(m("%", ""));
        assert!(!m("_", ""));
        assert!(m("a_c", "abc"));
        assert!(m("ab\\c", "ab\\c"));
        assert!(m("a\\%", "a%"));
        assert!(!m("a\\%", "ab"));
        assert!(m("%é_", "caféx"));
        assert!(!m("abc", "abcd"));
        assert!(m("%a%a%a%", "banana ana"));
    }
}
