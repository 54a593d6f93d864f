//! Runtime smoke test: the `manage-keys` binary as a real process under the
//! Lambda Runtime API emulator, fed the API Gateway events in `events/`.
//!
//! Also runs `$PORTAL_SMOKE_BOOTSTRAP_DIR/manage-keys/bootstrap` (the
//! cargo-lambda package) when that variable is set.

use lambda_emulator::smoke::{self, AUDIENCE, ISSUER, TIMEOUT, event, invoke};
use lambda_emulator::{EmulatorHandle, FunctionProcess};
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};

const FUNCTION: &str = "manage-keys";
/// The password in `events/escrow-recovery-key.json`.
const ESCROWED: &str = "111111-222222-333333-444444-555555-666666-077770-088880";

fn binaries() -> Vec<std::path::PathBuf> {
    smoke::binaries(FUNCTION, env!("CARGO_BIN_EXE_manage-keys"))
}

fn start(
    program: &std::path::Path,
    idp: &DevIdentityProvider,
    extra: &[(&str, &str)],
) -> (EmulatorHandle, FunctionProcess) {
    smoke::start(program, FUNCTION, idp, extra)
}

#[test]
fn serves_its_events_as_a_lambda_process() {
    let idp = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mdm = idp.token("contoso", "mdm-sync", "RecoveryKey.Escrow", now, 600);
    let alice = idp.token("contoso", "alice", "RecoveryKey.Read", now, 600);
    for program in binaries() {
        let (emu, mut f) = start(&program, &idp, &[]);
        assert!(
            emu.wait_next(1, TIMEOUT).is_some(),
            "{}: no /next; output:\n{}",
            program.display(),
            f.output()
        );

        // Escrow: created, then the same key again is a 200.
        let (s, h, j) = invoke(&emu, &mut f, event("escrow-recovery-key.json", &mdm));
        assert_eq!(s, 201, "{j}");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-request-id"], "Ab1Cd2Ef3Gh7=");
        assert_eq!(j["key_id"], "7C1D2E3F-4A5B-4C6D-8E7F-901A2B3C4D5E");
        assert!(j["recovery_password"].is_null(), "never echoed: {j}");
        let (s, _, j) = invoke(&emu, &mut f, event("escrow-recovery-key.json", &mdm));
        assert_eq!(s, 200, "{j}");

        let (s, _, j) = invoke(&emu, &mut f, event("rotation-requests.json", &mdm));
        assert_eq!(s, 200, "{j}");
        assert!(j["rotation_requests"].is_array(), "{j}");

        // Without the permission: a problem answer.
        let (s, h, j) = invoke(&emu, &mut f, event("escrow-recovery-key.json", &alice));
        assert_eq!((s, j["status"].as_u64()), (403, Some(403)), "{j}");
        assert_eq!(h["content-type"], "application/problem+json");
        // This function serves neither listing nor retrieval.
        for other in ["list-devices.json", "get-recovery-key.json"] {
            let (s, _, j) = invoke(&emu, &mut f, event(other, &alice));
            assert_eq!(s, 404, "{other}: {j}");
        }

        // The output is read by the emulator's threads: under load the last
        // lines can arrive after the response. Killing the process joins
        // them, so the log below is complete (an empty log once passed the
        // secret checks vacuously and failed only the positive one).
        f.kill();
        let log = f.output();
        assert!(
            !log.contains(ESCROWED),
            "a recovery password reached the logs"
        );
        for t in [&mdm, &alice] {
            assert!(!log.contains(t.as_str()), "a token reached the logs");
        }
        assert!(log.contains("recovery key escrowed"), "{log}");
    }
}

#[test]
fn a_bad_configuration_stops_the_function_at_init() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    for program in binaries() {
        let (emu, mut f) = start(&program, &idp, &[("PORTAL_KEY_RATE_LIMIT", "0")]);
        let status = f.wait_exit(TIMEOUT).expect("the function exits at init");
        assert!(!status.success(), "{status:?}");
        assert!(f.output().contains("PORTAL_KEY_RATE_LIMIT"));
        assert!(emu.first_next_at().is_none());
    }
}

/// Init reads no CA file and connects only to the runtime API, on both
/// backends (BENCHMARKS.md §1: the platform trust store cost 146 file opens
/// and ~5 ms of every cold start).
#[test]
fn init_reads_no_trust_store_and_connects_only_to_the_runtime_api() {
    let idp = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    for program in binaries() {
        smoke::assert_init_reads_no_trust_store(&program, FUNCTION, &idp);
    }
}
