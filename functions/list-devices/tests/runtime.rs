//! Runtime smoke test: the `list-devices` binary as a real process under the
//! Lambda Runtime API emulator, fed the API Gateway events in `events/`.
//!
//! Also runs `$PORTAL_SMOKE_BOOTSTRAP_DIR/list-devices/bootstrap` (the
//! cargo-lambda package) when that variable is set.

#[path = "../../portal_dev.rs"]
mod portal_dev;

use lambda_emulator::smoke::{self, AUDIENCE, ISSUER, TIMEOUT, event, invoke};
use lambda_emulator::{Emulator, EmulatorHandle, FunctionProcess};
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};

const FUNCTION: &str = "list-devices";

fn binaries() -> Vec<std::path::PathBuf> {
    smoke::binaries(FUNCTION, env!("CARGO_BIN_EXE_list-devices"))
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
    let alice = idp.token("contoso", "alice", "RecoveryKey.Read", now, 600);
    let agent = idp.token("contoso", "agent", "RecoveryKey.Read.All", now, 600);
    let auditor = idp.token("contoso", "auditor", "AuditLog.Read.All", now, 600);
    for program in binaries() {
        let (emu, mut f) = start(&program, &idp, &[]);
        assert!(
            emu.wait_next(1, TIMEOUT).is_some(),
            "{}: no /next; output:\n{}",
            program.display(),
            f.output()
        );

        let (s, h, j) = invoke(&emu, &mut f, event("list-devices.json", &alice));
        assert_eq!(s, 200, "{j}");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(
            h["x-request-id"], "Ab1Cd2Ef3Gh0=",
            "the gateway's request id"
        );
        let devices = j["devices"].as_array().expect("devices");
        assert!(
            devices.iter().any(|d| d["device_id"] == "DESKTOP-7Q2M4K1"),
            "{j}"
        );
        assert!(
            !j.to_string().contains("recovery_password"),
            "listing never holds keys: {j}"
        );

        let (s, h, j) = invoke(&emu, &mut f, event("find-recovery-keys.json", &agent));
        assert_eq!(s, 200, "{j}");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(
            j["recovery_keys"][0]["key_id"], "3B8FAA18-37F8-488B-97FC-695A07A0CA6E",
            "{j}"
        );
        assert_eq!(j["recovery_keys"][0]["device_id"], "DESKTOP-7Q2M4K1");

        let (s, h, j) = invoke(&emu, &mut f, event("audit-events.json", &auditor));
        assert_eq!(s, 200, "{j}");
        assert_eq!(h["content-type"], "application/json");
        assert!(j["events"].is_array(), "{j}");

        // Without the permission: a problem answer, not an invocation error.
        let (s, h, j) = invoke(&emu, &mut f, event("audit-events.json", &alice));
        assert_eq!((s, j["status"].as_u64()), (403, Some(403)), "{j}");
        assert_eq!(h["content-type"], "application/problem+json");
        // This function does not serve key retrieval.
        let (s, _, j) = invoke(&emu, &mut f, event("get-recovery-key.json", &alice));
        assert_eq!(s, 404, "{j}");
        // A bad token is a 401 problem.
        let (s, h, j) = invoke(&emu, &mut f, event("list-devices.json", "not.a.token"));
        assert_eq!((s, j["status"].as_u64()), (401, Some(401)), "{j}");
        assert!(
            h["www-authenticate"]
                .as_str()
                .unwrap()
                .contains("invalid_token"),
            "{h}"
        );

        // The output is read by the emulator's threads: under load the last
        // lines can arrive after the response. Killing the process joins
        // them, so the log below is complete (an empty log once passed the
        // secret checks vacuously and failed only the positive one).
        f.kill();
        let log = f.output();
        for t in [&alice, &agent, &auditor] {
            assert!(!log.contains(t.as_str()), "a token reached the logs");
        }
    }
}

#[test]
fn a_bad_configuration_stops_the_function_at_init() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    for program in binaries() {
        // A bad value, and PORTAL_BACKEND left unset (empty counts as unset):
        // a function never falls back to the embedded demo data.
        for (var, value) in [("PORTAL_KEY_RATE_LIMIT", "0"), ("PORTAL_BACKEND", "")] {
            let (emu, mut f) = start(&program, &idp, &[(var, value)]);
            let status = f.wait_exit(TIMEOUT).expect("the function exits at init");
            assert!(!status.success(), "{var}={value:?}: {status:?}");
            let out = f.output();
            assert!(out.contains(var), "the message names the variable: {out}");
            assert!(
                emu.first_next_at().is_none(),
                "{var}={value:?}: no invocation was polled for"
            );
        }
    }
}

/// The README's local-development path: `portal dev-env` configures the
/// function and `portal event <route> --user <name>` makes each request it
/// serves; every one gets a 200 on the demo data, logged as JSON lines.
#[test]
fn serves_the_events_portal_event_prints_under_portal_dev_env() {
    let portal = portal_dev::portal_binary(env!("CARGO_BIN_EXE_list-devices"));
    let key = portal_dev::fresh_key_file(FUNCTION);
    let env = portal_dev::dev_env(&portal, &key);
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let event = |route: &str, user: &str| {
        portal_dev::portal(&portal, &key, &["event", route, "--user", user])
    };
    let devices = event("list-devices", "alice");
    let lookup = event("find-recovery-keys", "agent");
    let audit = event("audit-events", "auditor");
    for program in binaries() {
        let (addr, emu) = Emulator::start().unwrap();
        let mut f = FunctionProcess::spawn(&program, FUNCTION, addr, &vars).unwrap();
        let (s, _, j) = invoke(&emu, &mut f, devices.clone());
        assert_eq!(s, 200, "{j}");
        let ids: Vec<&str> = j["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device_id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&"DESKTOP-7Q2M4K1"), "{j}");
        let (s, _, j) = invoke(&emu, &mut f, lookup.clone());
        assert_eq!(s, 200, "{j}");
        assert_eq!(
            j["recovery_keys"][0]["key_id"],
            "3B8FAA18-37F8-488B-97FC-695A07A0CA6E"
        );
        assert_eq!(j["recovery_keys"][0]["owner"], "alice");
        let (s, _, j) = invoke(&emu, &mut f, audit.clone());
        assert_eq!(s, 200, "{j}");
        assert!(j["events"].is_array(), "{j}");
        f.kill();
        portal_dev::assert_json_log_lines(&f.output());
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
