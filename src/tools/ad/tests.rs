use super::*;

const LDIF: &str = include_str!("../../../tests/fixtures/ad/recovery.ldif");
const CSV: &[u8] = include_bytes!("../../../tests/fixtures/ad/recovery.csv");
const OWNERS: &str = include_str!("../../../tests/fixtures/ad/owners.csv");
const VOLUMES: &str = include_str!("../../../tests/fixtures/ad/volumes.csv");
const PW1: &str = "038258-286682-604857-317823-647658-401093-009361-230186";

fn tenant() -> TenantId {
    TenantId::parse("contoso").unwrap()
}

fn csv() -> String {
    table::decode(CSV).unwrap().to_string()
}

/// (device, owner, key ID, volume type) of every key.
fn keys(a: &AdImport) -> Vec<(String, String, String, &'static str)> {
    a.seed
        .devices
        .iter()
        .flat_map(|d| {
            d.passwords.iter().map(move |(m, _)| {
                (
                    d.device.device_id.to_string(),
                    d.device.owner.to_string(),
                    m.key_id.to_string(),
                    m.volume_type.as_str(),
                )
            })
        })
        .collect()
}

fn expected(pc2_type: &'static str) -> Vec<(String, String, String, &'static str)> {
    vec![
        (
            "PC-1".into(),
            "alice".into(),
            "1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B".into(),
            "operating_system",
        ),
        (
            "PC-2".into(),
            "bob".into(),
            "A0B1C2D3-E4F5-4617-8829-3A4B5C6D7E8F".into(),
            pc2_type,
        ),
    ]
}

#[test]
fn the_ldifde_fixture_imports_with_its_key_ids_and_owners() {
    let a = from_ldif(LDIF, &tenant(), &owners(OWNERS).unwrap()).unwrap();
    assert_eq!(keys(&a), expected("operating_system"));
    assert_eq!(a.seed.devices[0].passwords[0].1.expose(), PW1);
    assert_eq!((a.volume_type_known, a.volume_type_assumed), (0, 2));
}

#[test]
fn the_export_csv_fixture_imports_the_same_keys_typed_from_volumes() {
    let o = owners(OWNERS).unwrap();
    let v = volumes(VOLUMES).unwrap();
    let a = import(Format::Csv, &csv(), &tenant(), &o, &v).unwrap();
    assert_eq!(keys(&a), expected("fixed_data"));
    assert_eq!(a.seed.devices[0].passwords[0].1.expose(), PW1);
    assert_eq!(
        a.seed.devices[1].passwords[0].0.created_at.unix_timestamp(),
        1_717_221_600
    );
    assert_eq!((a.volume_type_known, a.volume_type_assumed), (1, 1));
    assert!(
        a.note()
            .contains("1 keys given volume type operating_system")
    );
    // LDIF's binary msFVE-VolumeGuid (PC-1's) is typed by the same file.
    let v = volumes("a0b1c2d3-e4f5-4617-8829-3a4b5c6d7e8f,removable_data").unwrap();
    let a = import(Format::Ldif, LDIF, &tenant(), &o, &v).unwrap();
    assert_eq!(keys(&a)[0].3, "removable_data");
    assert_eq!((a.volume_type_known, a.volume_type_assumed), (1, 1));
}

#[test]
fn powershell_7_output_no_type_line_no_bom_lf_unquoted_imports_too() {
    let text = csv()
        .lines()
        .skip(1)
        .map(|l| l.replace("\"1f2e", "1f2e").replace("4a5b\"", "4a5b"))
        .collect::<Vec<_>>()
        .join("\n");
    let a = import(
        Format::Csv,
        &text,
        &tenant(),
        &owners(OWNERS).unwrap(),
        &Volumes::new(),
    )
    .unwrap();
    assert_eq!(keys(&a), expected("operating_system"));
}

#[test]
fn byte_array_guids_and_culture_dates_name_the_conversion_once() {
    let o = owners(OWNERS).unwrap();
    let text = csv()
        .replace(
            "\"1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b\"",
            "\"System.Byte[]\"",
        )
        .replace(
            ",\"a0b1c2d3-e4f5-4617-8829-3a4b5c6d7e8f\",\"5c6d",
            ",\"System.Byte[]\",\"5c6d",
        )
        .replace("2024-05-15T16:30:00.0000000Z", "5/15/2024 9:30:00 AM")
        .replace("2024-06-01T06:00:00.0000000Z", "6/1/2024 8:00:00 AM");
    let e = import(Format::Csv, &text, &tenant(), &o, &Volumes::new())
        .err()
        .unwrap();
    assert_eq!(e.0.len(), 2, "{e}");
    assert!(
        e.0[0].starts_with("line 3 and 1 more: msFVE-RecoveryGuid is \"System.Byte[]\"")
            && e.0[0].contains("[guid]::new([byte[]]$_.'msFVE-RecoveryGuid')"),
        "{e}"
    );
    assert!(
        e.0[1].starts_with(
            "line 3 and 1 more: whenCreated is in the exporting machine's date format"
        ) && e.0[1].contains("$_.whenCreated.ToUniversalTime().ToString('o')"),
        "{e}"
    );
}

#[test]
fn a_malformed_file_or_a_missing_owner_loads_nothing() {
    let o = owners(OWNERS).unwrap();
    let v = Volumes::new();
    for (format, text) in [(Format::Ldif, LDIF.to_owned()), (Format::Csv, csv())] {
        let bad_pw = text.replace("038258-286682", "038259-286682");
        let e = import(format, &bad_pw, &tenant(), &o, &v).err().unwrap();
        assert!(e.0[0].contains("msFVE-RecoveryPassword"), "{e}");
        assert!(!e.to_string().contains("038259"), "{e}");
        let mut fewer = o.clone();
        fewer.remove("pc-2");
        let e = import(format, &text, &tenant(), &fewer, &v).err().unwrap();
        assert!(e.0[0].contains("\"PC-2\" has no owner"), "{e}");
        let twice = text
            .replace(
                "a0b1c2d3-e4f5-4617-8829-3a4b5c6d7e8f\",\"5c6d",
                "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b\",\"5c6d",
            )
            .replace(
                "msFVE-RecoveryGuid:: 08KxoPXkF0aIKTpLXG1+jw==",
                "msFVE-RecoveryGuid:: TD0uH2pbmEeKmwwdLj9KWw==",
            );
        let e = import(format, &twice, &tenant(), &o, &v).err().unwrap();
        assert!(e.to_string().contains("appears twice"), "{e}");
    }
    let e = import(
        Format::Csv,
        "\"DistinguishedName\",\"whenCreated\"\n",
        &tenant(),
        &o,
        &v,
    )
    .err()
    .unwrap();
    assert!(e.0[0].contains("no msFVE-RecoveryPassword column"), "{e}");
    let short = csv().replace(",\"2024-05-15T16:30:00.0000000Z\"", "");
    let e = import(Format::Csv, &short, &tenant(), &o, &v)
        .err()
        .unwrap();
    assert!(
        e.0[0].starts_with("line 3: 4 fields, the header has 5"),
        "{e}"
    );
}

/// Issue 21 (F8): a key created in the future fails the whole import,
/// naming its line, DN and whenCreated, as escrow and the Entra sync
/// refuse one.
#[test]
fn a_when_created_in_the_future_loads_nothing() {
    let o = owners(OWNERS).unwrap();
    let v = Volumes::new();
    let ldif = LDIF.replace(
        "whenCreated: 20240601060000.0Z",
        "whenCreated: 29990601060000.0Z",
    );
    let csv = csv().replace(
        "2024-06-01T06:00:00.0000000Z",
        "2999-06-01T06:00:00.0000000Z",
    );
    for (format, text, line) in [
        (Format::Ldif, ldif, "line 16 ("),
        (Format::Csv, csv, "line 4 ("),
    ] {
        let e = import(format, &text, &tenant(), &o, &v).err().unwrap();
        assert_eq!(e.0.len(), 1, "{e}");
        assert!(e.0[0].starts_with(line), "{e}");
        assert!(e.0[0].contains("CN=PC-2,OU=Lab"), "{e}");
        assert!(
            e.0[0].contains("whenCreated 2999-06-01T06:00:00Z is in the future"),
            "{e}"
        );
    }
}
