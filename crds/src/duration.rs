//! ISO-8601 durations as Knative writes them (`PT0.2S`, `PT1M`, `P1D`).

use std::time::Duration;

/// Parses an ISO-8601 duration such as `PT0.5S`; the error says what was expected.
pub fn parse_iso8601(text: &str) -> Result<Duration, String> {
    if !text.starts_with('P') || text.ends_with('T') || !text.contains(|c: char| c.is_ascii_digit())
    {
        return Err(format!(
            "invalid ISO-8601 duration {text:?}: expected a form like PT0.2S or PT1M"
        ));
    }
    iso8601::duration(text).map(Duration::from).map_err(|_| {
        format!("invalid ISO-8601 duration {text:?}: expected a form like PT0.2S or PT1M")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_knative_forms() {
        assert_eq!(parse_iso8601("PT0.2S").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_iso8601("PT1M").unwrap(), Duration::from_secs(60));
        assert_eq!(
            parse_iso8601("PT1H2M3S").unwrap(),
            Duration::from_secs(3723)
        );
        assert_eq!(parse_iso8601("P1D").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_iso8601("PT0S").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_other_forms() {
        for bad in ["5s", "", "PT", "P1X", "PTS", "0.2"] {
            assert!(parse_iso8601(bad).is_err(), "{bad} should be rejected");
        }
    }
}
