//! RFC 2849 LDIF content records as `ldifde -f FILE` writes them: `dn:`
//! then `attr: value` lines, `attr:: base64` for binary or non-ASCII
//! values, long lines folded (a continuation starts with one space),
//! `#` comments, records separated by blank lines, an optional
//! `version: 1`. `attr:< URL` (a value by reference) is refused.

use base64::Engine;

/// One entry: its DN and its attributes (names lower-cased), in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    /// The line the entry starts on (1-based), for errors.
    pub line: usize,
    pub attrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let name = name.to_ascii_lowercase();
        self.attrs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Logical lines (folding undone) with the physical line each starts on.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut in_comment = false;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix(' ') {
            if !in_comment && let Some(last) = out.last_mut() {
                last.1.push_str(rest);
            }
            continue;
        }
        in_comment = raw.starts_with('#');
        if !in_comment {
            out.push((i + 1, raw.to_owned()));
        }
    }
    out
}

/// One `attr: value`, `attr:: base64` line.
fn attr_value(line: usize, l: &str) -> Result<(String, Vec<u8>), String> {
    let (name, rest) = l
        .split_once(':')
        .ok_or_else(|| format!("line {line}: expected \"attribute: value\""))?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b';' | b'.'))
    {
        return Err(format!("line {line}: {name:?} is not an attribute name"));
    }
    let value = if let Some(b64) = rest.strip_prefix(':') {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| format!("line {line}: {name}:: is not valid base64"))?
    } else if rest.starts_with('<') {
        return Err(format!(
            "line {line}: {name}:< (a value by URL) is not supported"
        ));
    } else {
        rest.strip_prefix(' ').unwrap_or(rest).as_bytes().to_vec()
    };
    Ok((name, value))
}

/// Every entry of an LDIF file, or the first problem with its line.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut current: Option<Entry> = None;
    for (line, l) in unfold(text) {
        if l.trim().is_empty() {
            entries.extend(current.take());
            continue;
        }
        let (name, value) = attr_value(line, &l)?;
        match current.as_mut() {
            None if name == "version" => {}
            None if name == "dn" => {
                let dn = String::from_utf8(value)
                    .map_err(|_| format!("line {line}: dn is not UTF-8"))?;
                current = Some(Entry {
                    dn,
                    line,
                    attrs: Vec::new(),
                });
            }
            None => return Err(format!("line {line}: an entry must start with dn:")),
            Some(e) => e.attrs.push((name, value)),
        }
    }
    entries.extend(current);
    Ok(entries)
}

/// The RDNs of a DN, their escapes (`\,`, `\\`, `\2C`) resolved.
pub fn rdns(dn: &str) -> Vec<(String, String)> {
    let mut parts = vec![String::new()];
    let mut chars = dn.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next: String = chars.clone().take(2).collect();
                if next.len() == 2 && next.chars().all(|c| c.is_ascii_hexdigit()) {
                    let byte = u8::from_str_radix(&next, 16).unwrap_or(b'?');
                    parts.last_mut().unwrap().push(byte as char);
                    chars.next();
                    chars.next();
                } else if let Some(n) = chars.next() {
                    parts.last_mut().unwrap().push(n);
                }
            }
            ',' => parts.push(String::new()),
            c => parts.last_mut().unwrap().push(c),
        }
    }
    parts
        .into_iter()
        .filter_map(|p| {
            let (t, v) = p.split_once('=')?;
            Some((t.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_lines_base64_values_and_comments() {
        let text = "version: 1\n# a comment\n  continued comment\ndn: CN=a,\n CN=PC-1,DC=x\nobjectClass: top\nmsFVE-RecoveryGuid:: TD0uH2pbmEeKmwwdLj9KWw==\ndescription:: Q049UEMtMixPVT1MYWIsREM9Y29udG9zbyxEQz1jb20=\nlong: 0382\n 58-28\n\ndn: CN=b,DC=x\r\nx: y\r\n";
        let e = parse(text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].dn, "CN=a,CN=PC-1,DC=x");
        assert_eq!(e[0].line, 4);
        assert_eq!(e[0].get("MSFVE-RECOVERYGUID").unwrap().len(), 16);
        assert_eq!(
            e[0].get("description").unwrap(),
            b"CN=PC-2,OU=Lab,DC=contoso,DC=com"
        );
        assert_eq!(e[0].get("long").unwrap(), b"038258-28");
        assert_eq!(e[1].get("x").unwrap(), b"y");
    }

    #[test]
    fn malformed_files_name_the_line() {
        for (text, want) in [
            ("objectClass: top\n", "line 1: an entry must start with dn:"),
            (
                "dn: CN=a\nguid:: ***\n",
                "line 2: guid:: is not valid base64",
            ),
            (
                "dn: CN=a\nphoto:< file:///etc/passwd\n",
                "line 2: photo:< (a value by URL)",
            ),
            ("dn: CN=a\nno colon here\n", "line 2: expected"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn rdns_resolve_escapes() {
        let r = rdns(r"CN=2024{X},CN=Smith\, John\2C PC,OU=Lab,DC=contoso");
        assert_eq!(r[1], ("cn".into(), "Smith, John, PC".into()));
        assert_eq!(r.len(), 4);
    }
}
