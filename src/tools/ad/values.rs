//! The values AD exports carry, in the forms `ldifde` and PowerShell's
//! `Export-Csv` write them: GUIDs (AD's 16 mixed-endian bytes or text)
//! and `whenCreated` (LDAP GeneralizedTime or an ISO 8601 form with a
//! time zone).

use crate::domain::ids::KeyId;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What `Export-Csv` writes for a `byte[]` it was not told to convert.
pub const BYTE_ARRAY: &str = "System.Byte[]";

/// AD's binary GUID (as `ldifde` writes `msFVE-RecoveryGuid::`): the first
/// three fields little-endian, the last eight bytes in order.
pub fn guid_from_ad_bytes(b: &[u8]) -> Option<KeyId> {
    let id = uuid::Uuid::from_bytes_le(b.try_into().ok()?);
    KeyId::parse(&id.to_string()).ok()
}

/// A key ID: a 16-byte binary GUID, or a GUID in text (braces optional).
pub fn key_id(v: &[u8]) -> Option<KeyId> {
    guid_from_ad_bytes(v).or_else(|| KeyId::parse(std::str::from_utf8(v).ok()?.trim()).ok())
}

/// A volume GUID (`msFVE-VolumeGuid`), binary or text, braces optional.
pub fn volume_guid(v: &[u8]) -> Option<uuid::Uuid> {
    if let Ok(b) = <[u8; 16]>::try_from(v) {
        return Some(uuid::Uuid::from_bytes_le(b));
    }
    let t = std::str::from_utf8(v).ok()?.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(t);
    // Hyphenated only: `Uuid::parse_str` would also take URNs and bare hex.
    (t.len() == 36).then(|| uuid::Uuid::parse_str(t).ok())?
}

/// AD's `whenCreated`, a GeneralizedTime such as `20240515163000.0Z` (UTC).
pub fn generalized_time(v: &[u8]) -> Option<OffsetDateTime> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let digits = s.get(..14)?;
    let rest = &s[14..];
    let frac_ok = rest
        .strip_suffix('Z')?
        .trim_start_matches(['.', ','])
        .bytes()
        .all(|b| b.is_ascii_digit());
    if !frac_ok || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

/// `whenCreated` as a CSV export carries it, when it says its time zone:
/// .NET's round-trip form (`ToString('o')`, `2024-05-15T16:30:00.0000000Z`
/// or with an offset), its universal sortable form (`ToString('u')`,
/// `2024-05-15 16:30:00Z`), RFC 3339, or a GeneralizedTime. The culture's
/// form that `Export-Csv` writes by default (`5/15/2024 4:30:00 PM`,
/// `15.05.2024 18:30:00`) says neither the order of day and month nor the
/// time zone, so it is refused (the caller says how to convert).
pub fn csv_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Some(t) = generalized_time(s.as_bytes()) {
        return Some(t);
    }
    let iso = match s.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &s[..10], &s[11..]),
        _ => s.to_owned(),
    };
    OffsetDateTime::parse(&iso, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_binary_guids_are_mixed_endian() {
        // Python: uuid.UUID("1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B").bytes_le
        let b = [
            0x4c, 0x3d, 0x2e, 0x1f, 0x6a, 0x5b, 0x98, 0x47, 0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f,
            0x4a, 0x5b,
        ];
        assert_eq!(
            guid_from_ad_bytes(&b).unwrap().to_string(),
            "1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B"
        );
        assert!(guid_from_ad_bytes(&b[..15]).is_none());
        assert_eq!(
            volume_guid(&b).unwrap().to_string(),
            "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b"
        );
    }

    #[test]
    fn guids_in_text_with_or_without_braces() {
        for ok in [
            "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
            "{1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B}",
        ] {
            assert_eq!(
                key_id(ok.as_bytes()).unwrap().to_string(),
                "1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B"
            );
            assert!(volume_guid(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in [
            BYTE_ARRAY,
            "",
            "urn:uuid:1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
        ] {
            assert!(key_id(bad.as_bytes()).is_none(), "{bad}");
            assert!(volume_guid(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn when_created_is_generalized_time() {
        let t = generalized_time(b"20240515163000.0Z").unwrap();
        assert_eq!(t.unix_timestamp(), 1_715_790_600);
        for bad in ["20240515163000", "2024-05-15", "20241315163000.0Z"] {
            assert!(generalized_time(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn csv_dates_must_say_their_time_zone() {
        for ok in [
            "2024-05-15T16:30:00.0000000Z",
            "2024-05-15T18:30:00.0000000+02:00",
            "2024-05-15 16:30:00Z",
            "2024-05-15T16:30:00Z",
            "20240515163000.0Z",
        ] {
            assert_eq!(
                csv_time(ok).map(|t| t.unix_timestamp()),
                Some(1_715_790_600),
                "{ok}"
            );
        }
        for bad in [
            "5/15/2024 4:30:00 PM",
            "15.05.2024 18:30:00",
            "15/05/2024 16:30:00",
            "2024-05-15T16:30:00",
            "2024-05-15",
            "",
        ] {
            assert!(csv_time(bad).is_none(), "{bad}");
        }
    }
}
