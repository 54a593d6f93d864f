//! CSV as Windows tools write it, read with the `csv` crate (RFC 4180
//! quoting, CRLF or LF): the text decoded from UTF-8 (with or without a
//! BOM) or UTF-16 with a BOM (`Export-Csv -Encoding Unicode`), and the
//! `#TYPE …` line Windows PowerShell 5.1's `Export-Csv` writes first
//! unless told `-NoTypeInformation` (PowerShell 7 does not) skipped.

use zeroize::Zeroizing;

/// The file's text, or what to do about its encoding.
pub fn decode(bytes: &[u8]) -> Result<Zeroizing<String>, String> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        let units = rest.chunks_exact(2).map(|c| unit([c[0], c[1]]));
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map(Zeroizing::new)
            .map_err(|_| "is not valid UTF-16".to_owned())
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => utf8(bytes),
    }
}

fn utf8(b: &[u8]) -> Result<Zeroizing<String>, String> {
    std::str::from_utf8(b)
        .map(|s| Zeroizing::new(s.to_owned()))
        .map_err(|_| "is not UTF-8 or UTF-16 text: export it with -Encoding UTF8".to_owned())
}

/// The rows of a CSV text, each with its 1-based line; the first row is
/// the header when there is one. Quoted fields may hold commas; spaces
/// around fields are trimmed.
pub fn rows(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    // Windows PowerShell 5.1: `#TYPE Selected.Microsoft.ActiveDirectory…`.
    let (skipped, body) = match text.strip_prefix("#TYPE") {
        Some(rest) => (1, rest.split_once('\n').map_or("", |(_, b)| b)),
        None => (0, text),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body.as_bytes());
    // The line from the byte offset (the csv crate's line count skips
    // blank lines); a record's position is where the reader stood before
    // it, so line ends still ahead are skipped first.
    let line_at = |p: Option<&csv::Position>| {
        let b = body.as_bytes();
        let mut at = p.map_or(0, |p| p.byte() as usize).min(b.len());
        while b.get(at).is_some_and(|c| matches!(c, b'\r' | b'\n')) {
            at += 1;
        }
        skipped + 1 + b[..at].iter().filter(|&&c| c == b'\n').count()
    };
    let mut out = Vec::new();
    for record in reader.records() {
        // The csv crate's errors do not quote field contents; still, say
        // only where and what kind.
        let record =
            record.map_err(|e| format!("line {}: not valid CSV", line_at(e.position())))?;
        let line = line_at(record.position());
        let fields: Vec<String> = record.iter().map(str::to_owned).collect();
        if fields.iter().all(String::is_empty) {
            continue;
        }
        out.push((line, fields));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boms_and_utf16_decode() {
        assert_eq!(*decode(b"\xEF\xBB\xBFa,b").unwrap(), "a,b");
        assert_eq!(*decode(b"a,b").unwrap(), "a,b");
        assert_eq!(*decode(b"\xFF\xFEa\0,\0b\0").unwrap(), "a,b");
        assert_eq!(*decode(b"\xFE\xFF\0a\0,\0b").unwrap(), "a,b");
        assert!(decode(b"\xC3\x28").unwrap_err().contains("-Encoding UTF8"));
    }

    #[test]
    fn the_type_line_is_skipped_and_lines_still_count() {
        let text = "#TYPE Selected.Microsoft.ActiveDirectory.Management.ADObject\r\n\"a\",\"b, c\"\r\n\r\n\"d\",\"e\"\r\n";
        let r = rows(text).unwrap();
        assert_eq!(
            r,
            vec![
                (2, vec!["a".to_owned(), "b, c".to_owned()]),
                (4, vec!["d".to_owned(), "e".to_owned()]),
            ]
        );
        assert_eq!(
            rows("x,y\nz, w \n").unwrap()[1],
            (2, vec!["z".into(), "w".into()])
        );
    }
}
