//! Reads samples back from Herald's own Prometheus text (what `/metrics` serves), so that the
//! console's history shows exactly the numbers Prometheus scrapes. The exporter has no way to
//! read a value back but rendering; this reads only the few series the history keeps.
//! Written by hand: a Prometheus parser crate would bring a whole query model for one line
//! shape (`name{label="value",...} number`).

/// One sample line: its metric name, labels in order, and value.
#[derive(Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

impl Sample<'_> {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Lines longer than this are skipped (Herald's own series are far shorter).
pub const MAX_LINE: usize = 4096;

/// The samples of `text` whose metric name `wanted` accepts; comments and malformed or overlong
/// lines are skipped.
pub fn samples<'a>(
    text: &'a str,
    wanted: impl Fn(&str) -> bool + 'a,
) -> impl Iterator<Item = Sample<'a>> + 'a {
    text.lines()
        .filter(|line| line.len() <= MAX_LINE && !line.starts_with('#'))
        .filter(move |line| {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            wanted(&line[..end])
        })
        .filter_map(parse_line)
}

fn parse_line(line: &str) -> Option<Sample<'_>> {
    let end = line.find(['{', ' '])?;
    let name = &line[..end];
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = rest.split_once("=\"")?;
            let (value, after) = quoted(after)?;
            labels.push((label, value));
            rest = after;
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// A label value up to its closing quote, unescaped, and what follows the quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# HELP x y\n\
            herald_events_delivered_total{namespace=\"default\",trigger=\"a\\\"b\"} 3\n\
            herald_event_latency_seconds_sum{namespace=\"n\",trigger=\"t\"} 0.25\n\
            herald_log_records 7\n\
            other_metric{a=\"b\"} 1\n\
            herald_events_delivered_total{namespace=\"broken} 1\n";
        let got: Vec<Sample> = samples(text, |name| name.starts_with("herald_")).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].label("trigger"), Some("a\"b"));
        assert_eq!(got[0].value, 3.0);
        assert_eq!(got[1].name, "herald_event_latency_seconds_sum");
        assert_eq!(got[1].value, 0.25);
        assert_eq!(got[2].labels, vec![]);
        assert_eq!(got[2].value, 7.0);
    }
}
