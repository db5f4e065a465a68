//! Attribute values in binary-mode `ce-` headers, read and written so that the CloudEvents SDKs
//! round-trip them.
//!
//! The HTTP binding (1.0.2, 3.1.3.2) asks senders to percent-encode space, `"`, `%` and
//! everything outside printable ASCII, and receivers to decode. The Python SDK does; the Go and
//! JavaScript SDKs (and Knative, which is sdk-go) put values on the wire as they are and read
//! them as they are, so `a%20b` from Go means the six characters `a%20b`. Herald reads a value
//! as percent-encoded only when it is exactly what the binding's encoder makes, and writes values
//! as they are unless a header cannot carry them or a reader would take them as encoded: then it
//! sends the binding's encoding, which it (and every SDK that decodes) reads back exactly.
//! README "Compatibility" lists the values that cannot round-trip between every pair of SDKs.

use http::HeaderValue;

/// Attributes whose values are URI-references: their percent-escapes are URI syntax (`/a%2Fb`
/// and `/a/b` are different URIs, `/m%C3%BCnchen` is how sdk-go writes `/münchen`), so they are
/// kept exactly as sent, as Knative keeps them.
const URI_ATTRIBUTES: [&str; 3] = ["source", "dataschema", "schemaurl"];

/// The bytes the binding's encoder escapes: space, `"`, `%`, control characters and every byte
/// of a non-ASCII character. An escape of any other byte (`%2F`, `%41`) is never the encoder's
/// work, so a value holding one is taken literally.
fn encoder_escapes(byte: u8) -> bool {
    !(0x21..=0x7e).contains(&byte) || byte == b'"' || byte == b'%'
}

/// The text of the header value of `attribute`.
///
/// Bytes that are not UTF-8 are read as ISO-8859-1 (Node.js sends characters up to U+00FF as
/// one byte each). The text is then percent-decoded only when it is exactly the encoder's output:
/// printable ASCII other than space and `"`, at least one `%`, every `%` followed by two hex
/// digits that stand for a byte the encoder escapes, and the decoded bytes UTF-8. Anything
/// else, and every URI attribute, is the value as it is.
pub fn decode(attribute: &str, raw: &[u8]) -> String {
    let text = match std::str::from_utf8(raw) {
        Ok(text) => text.to_owned(),
        Err(_) => raw.iter().map(|&byte| char::from(byte)).collect(),
    };
    if URI_ATTRIBUTES.contains(&attribute) {
        return text;
    }
    percent_decoded(&text).unwrap_or(text)
}

/// The header value that carries `text` for `attribute`: the text as it is (UTF-8 bytes for
/// non-ASCII) when [`decode`] reads it back unchanged and a header can carry it, otherwise the
/// binding's percent-encoding of all of it. Fails only for an attribute name no header can have
/// (never: the caller checked the name).
pub fn encode(
    attribute: &str,
    text: &str,
) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let carried = !text.bytes().any(|b| b < 0x20 || b == 0x7f)
        && !text.starts_with([' ', '\t'])
        && !text.ends_with([' ', '\t']);
    if carried && decode(attribute, text.as_bytes()) == text {
        return HeaderValue::from_bytes(text.as_bytes());
    }
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if encoder_escapes(byte) {
            encoded.push_str(&format!("%{byte:02X}"));
        } else {
            encoded.push(char::from(byte));
        }
    }
    HeaderValue::from_str(&encoded)
}

/// `text` percent-decoded, when it is exactly what the binding's encoder makes.
fn percent_decoded(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let value = (hex_digit(hex[0])? << 4) | hex_digit(hex[1])?;
            if !encoder_escapes(value) {
                return None;
            }
            out.push(value);
            i += 3;
        } else if encoder_escapes(byte) {
            return None;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &str) -> String {
        decode("ext", raw.as_bytes())
    }

    #[test]
    fn the_encoders_output_is_decoded() {
        assert_eq!(read("a%20b"), "a b");
        assert_eq!(read("100%25%20sure"), "100% sure");
        assert_eq!(read("say%20%22hi%22"), "say \"hi\"");
        assert_eq!(read("gr%C3%BC%C3%9Fe"), "grüße");
        assert_eq!(read("%F0%9F%8E%89"), "🎉");
    }

    #[test]
    fn values_the_encoder_never_makes_are_literal() {
        // a raw space, quote, stray `%` or non-ASCII byte: not encoded
        assert_eq!(read("100% sure"), "100% sure");
        assert_eq!(read("100%"), "100%");
        assert_eq!(read("a b%20c"), "a b%20c");
        assert_eq!(read("\"a%20b\""), "\"a%20b\"");
        assert_eq!(read("grüße%20"), "grüße%20");
        // escapes of bytes the encoder leaves alone
        assert_eq!(read("50%2F50"), "50%2F50");
        assert_eq!(read("%41%20"), "%41%20");
        // malformed escapes and escapes that are not UTF-8
        assert_eq!(read("%4"), "%4");
        assert_eq!(read("%+1"), "%+1");
        assert_eq!(read("%zz"), "%zz");
        assert_eq!(read("%FC"), "%FC");
        assert_eq!(read("plain"), "plain");
    }

    #[test]
    fn utf8_bytes_are_text_and_other_bytes_latin1() {
        assert_eq!(decode("ext", "grüße 日本".as_bytes()), "grüße 日本");
        assert_eq!(decode("ext", b"gr\xfc\xdfe"), "grüße");
    }

    #[test]
    fn uri_attributes_are_kept_as_sent() {
        assert_eq!(decode("source", b"/m%C3%BCnchen"), "/m%C3%BCnchen");
        assert_eq!(decode("source", b"https://x/a%20b"), "https://x/a%20b");
        assert_eq!(decode("dataschema", b"urn:x:%22q%22"), "urn:x:%22q%22");
        assert_eq!(decode("source", b"/m\xfcnchen"), "/münchen");
        assert_eq!(decode("subject", b"https://x/a%20b"), "https://x/a b");
        assert_eq!(encode("source", "/m%C3%BCnchen").unwrap(), "/m%C3%BCnchen");
    }

    #[test]
    fn every_text_reads_back_exactly() {
        let texts = [
            "plain value",
            "100% sure",
            "a%20b",
            "a%2520b",
            "50%2F50",
            "say \"hi\"",
            "grüße 日本 🎉",
            " padded ",
            "\ttab",
            "line\nbreak",
            "%",
            "",
            "ü%20",
        ];
        for text in texts {
            let value = encode("ext", text).unwrap();
            assert_eq!(
                decode("ext", value.as_bytes()),
                text,
                "{text:?} as {value:?}"
            );
        }
    }

    #[test]
    fn values_go_as_they_are_unless_they_cannot() {
        let sent = |text: &str| encode("ext", text).unwrap().as_bytes().to_vec();
        assert_eq!(sent("plain value"), b"plain value");
        assert_eq!(sent("100% sure"), b"100% sure");
        assert_eq!(sent("50%2F50"), b"50%2F50");
        assert_eq!(sent("grüße"), "grüße".as_bytes());
        // a header cannot carry them: leading/trailing blanks, control characters
        assert_eq!(sent(" padded "), b"%20padded%20");
        assert_eq!(sent("a\nb"), b"a%0Ab");
        // a reader would take them as encoded
        assert_eq!(sent("a%20b"), b"a%2520b");
    }
}
