//! Rules for text that people read: the helpdesk card a locked-out user
//! acts on, and the `reason` an auditor or a SIEM searches. What is shown
//! must be what is stored: no character may hide, reorder or split text.

use unicode_general_category::{GeneralCategory, get_general_category};

/// Characters that change how text reads without being seen: controls,
/// format characters (Unicode Cf: bidi marks and overrides, zero-width
/// space and joiners, word joiner, BOM, soft hyphen, tag characters),
/// line and paragraph separators, the Hangul fillers (blank but not
/// whitespace) and the combining grapheme joiner.
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            get_general_category(c),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
        || matches!(
            c,
            '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{034F}' | '\u{E0000}'
                ..='\u{E007F}'
        )
}

fn is_mark(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
            | GeneralCategory::EnclosingMark
    )
}

/// Why a `reason` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonError {
    TooLong,
    Hidden,
}

/// A `reason` as the trail stores it: checked for hidden characters and
/// combining marks with nothing to combine with (at the start or after
/// whitespace), then normalised to NFC, so "Rene\u{301}" and "René" are
/// stored, and found, alike.
pub fn reason(r: &str, max_chars: usize) -> Result<String, ReasonError> {
    let mut prev: Option<char> = None;
    for c in r.chars() {
        if hidden(c) || (is_mark(c) && prev.is_none_or(char::is_whitespace)) {
            return Err(ReasonError::Hidden);
        }
        prev = Some(c);
    }
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc()
        .normalize(r)
        .into_owned();
    if nfc.chars().count() > max_chars {
        return Err(ReasonError::TooLong);
    }
    Ok(nfc)
}

/// An `https://` URL with a host, and nothing a browser would not show.
pub fn is_https_url(u: &str) -> bool {
    url::Url::parse(u).is_ok_and(|p| {
        p.scheme() == "https"
            && p.host_str().is_some_and(|h| !h.is_empty())
            && p.username().is_empty()
            && p.password().is_none()
    }) && !u.chars().any(char::is_whitespace)
}

/// One plain address `local@domain.tld`: no scheme, no query, no second
/// recipient, so a `mailto:` link built from it reaches exactly it.
pub fn is_plain_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=^_`{|}~.-".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.');
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    local_ok && domain_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_checked_and_normalised() {
        assert_eq!(reason("ticket 4711", 200).unwrap(), "ticket 4711");
        assert_eq!(reason("Rene\u{301}", 200).unwrap(), "Ren\u{E9}");
        for bad in [
            "47\u{200D}11",
            "47\u{00AD}11",
            "\u{FEFF}x",
            "x\u{E0041}",
            "\u{3164}x",
            "x\u{034F}y",
            "\u{0301}x",
            "a \u{0301}x",
            "a\u{202E}b",
            "a\tb",
        ] {
            assert_eq!(reason(bad, 200), Err(ReasonError::Hidden), "{bad:?}");
        }
        assert_eq!(reason(&"x".repeat(201), 200), Err(ReasonError::TooLong));
    }

    #[test]
    fn urls_and_addresses() {
        assert!(is_https_url("https://help.example.com/x?y=1"));
        for bad in [
            "http://a.example",
            "https://",
            "javascript:alert(1)",
            "https://u:p@a.example",
        ] {
            assert!(!is_https_url(bad), "{bad}");
        }
        assert!(is_plain_email("it.desk+x@example.co.uk"));
        for bad in [
            "mailto:a@example.com",
            "a@example.com?bcc=b@evil.test",
            "a@example.com,b@evil.test",
            "a@localhost",
            "not an address",
        ] {
            assert!(!is_plain_email(bad), "{bad}");
        }
    }
}
