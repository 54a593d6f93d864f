//! Runtime smoke test: the `get-recovery-key` binary as a real process under
//! the Lambda Runtime API emulator, fed the API Gateway events in `events/`.
//!
//! Also runs `$PORTAL_SMOKE_BOOTSTRAP_DIR/get-recovery-key/bootstrap` (the
//! cargo-lambda package) when that variable is set.

#[path = "../../portal_dev.rs"]
mod portal_dev;

use lambda_emulator::smoke::{self, AUDIENCE, ISSUER, TIMEOUT, event, invoke};
use lambda_emulator::{Emulator, EmulatorHandle, FunctionProcess};
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};

const FUNCTION: &str = "get-recovery-key";
/// The demo seed's key 3B8FAA18-37F8-488B-97FC-695A07A0CA6E (src/demo-seed.json).
const DEMO_PASSWORD: &str = "038258-286682-604857-317823-647658-401093-009361-230186";

fn binaries() -> Vec<std::path::PathBuf> {
    smoke::binaries(FUNCTION, env!("CARGO_BIN_EXE_get-recovery-key"))
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
    for program in binaries() {
        let (emu, mut f) = start(&program, &idp, &[]);
        assert!(
            emu.wait_next(1, TIMEOUT).is_some(),
            "{}: no /next; output:\n{}",
            program.display(),
            f.output()
        );

        let (s, h, j) = invoke(&emu, &mut f, event("get-recovery-key.json", &alice));
        assert_eq!(s, 200, "{j}");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["pragma"], "no-cache");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(
            h["x-request-id"], "Ab1Cd2Ef3Gh3=",
            "the gateway's request id"
        );
        assert_eq!(j["device_id"], "DESKTOP-7Q2M4K1");
        assert_eq!(j["display_seconds"], 300);
        assert_eq!(j["volume_type"], "operating_system");
        // The newest operating-system key of that device in the demo seed.
        assert_eq!(j["key_id"], "3B8FAA18-37F8-488B-97FC-695A07A0CA6E");
        let pw = j["recovery_password"]
            .as_str()
            .expect("a recovery password");
        assert_eq!(pw, DEMO_PASSWORD);

        // A forged or expired token: a 401 problem, nothing disclosed.
        for bad in [
            "expired.or.forged",
            &idp.token("contoso", "alice", "RecoveryKey.Read", now - 7200, 600),
        ] {
            let (s, h, j) = invoke(&emu, &mut f, event("get-recovery-key.json", bad));
            assert_eq!((s, j["status"].as_u64()), (401, Some(401)), "{j}");
            assert_eq!(h["content-type"], "application/problem+json");
            assert!(
                h["www-authenticate"]
                    .as_str()
                    .unwrap()
                    .contains("invalid_token"),
                "{h}"
            );
            assert!(j["recovery_password"].is_null(), "{j}");
        }
        // This function serves key retrieval only.
        let (s, _, j) = invoke(&emu, &mut f, event("list-devices.json", &alice));
        assert_eq!(s, 404, "{j}");

        // The output is read by the emulator's threads: under load the last
        // lines can arrive after the response. Killing the process joins
        // them, so the log below is complete (an empty log once passed the
        // secret checks vacuously and failed only the positive one).
        f.kill();
        let log = f.output();
        assert!(!log.contains(pw), "a recovery password reached the logs");
        assert!(!log.contains(alice.as_str()), "a token reached the logs");
        assert!(
            log.contains("recovery key disclosed"),
            "the disclosure is logged: {log}"
        );
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

/// At the most verbose log level the runtime client and the libraries below
/// it would print the raw event (with its bearer token) and more; the
/// function's logging caps them, so neither the token nor the key appears.
#[test]
fn trace_logging_shows_no_token_and_no_key() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let alice = idp.token("contoso", "alice", "RecoveryKey.Read", now, 600);
    for program in binaries() {
        for (var, level) in [("RUST_LOG", "trace"), ("AWS_LAMBDA_LOG_LEVEL", "TRACE")] {
            let (emu, mut f) = start(&program, &idp, &[(var, level)]);
            let (s, _, j) = invoke(&emu, &mut f, event("get-recovery-key.json", &alice));
            assert_eq!(s, 200, "{j}");
            assert_eq!(j["recovery_password"], DEMO_PASSWORD);
            // Once it polls for the next event it has finished this one;
            // stopping it then collects all it wrote.
            assert!(emu.wait_next(2, TIMEOUT).is_some());
            f.kill();
            let log = f.output();
            assert!(
                log.contains("recovery key disclosed"),
                "{var}={level}: the capture works: {log}"
            );
            for secret in [
                DEMO_PASSWORD,
                &DEMO_PASSWORD.replace('-', ""),
                alice.rsplit('.').next().unwrap(),
                alice.split('.').nth(1).unwrap(),
            ] {
                assert!(
                    !log.contains(secret),
                    "{var}={level}: {secret} reached the logs"
                );
            }
        }
    }
}

/// Decrypting with an unpinned key would accept any key's ciphertext: on the
/// AWS backend the function refuses to start without `PORTAL_KMS_KEY_ID`.
#[test]
fn refuses_to_start_on_aws_without_a_pinned_kms_key() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    for program in binaries() {
        let (emu, mut f) = start(
            &program,
            &idp,
            &[
                ("PORTAL_BACKEND", "aws"),
                ("PORTAL_TABLE_PREFIX", "recovery-portal"),
                ("AWS_REGION", "us-east-1"),
            ],
        );
        let status = f.wait_exit(TIMEOUT).expect("the function exits at init");
        assert!(!status.success(), "{status:?}");
        let out = f.output();
        assert!(
            out.contains("PORTAL_KMS_KEY_ID"),
            "the message names the variable: {out}"
        );
        assert!(
            emu.first_next_at().is_none(),
            "no invocation was polled for"
        );
    }
}

/// The README's local-development path: `portal dev-env` configures the
/// function, `portal event get-recovery-key --user alice` is the request,
/// and the answer is alice's newest operating-system key from the demo data.
/// Lambda's log level (`AWS_LAMBDA_LOG_LEVEL`, set from the Terraform
/// variable `application_log_level`) decides what is logged, as JSON lines.
#[test]
fn serves_the_event_portal_event_prints_under_portal_dev_env() {
    let portal = portal_dev::portal_binary(env!("CARGO_BIN_EXE_get-recovery-key"));
    let key = portal_dev::fresh_key_file(FUNCTION);
    let env = portal_dev::dev_env(&portal, &key);
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "PORTAL_BACKEND",
            "PORTAL_ISSUER",
            "PORTAL_AUDIENCE",
            "PORTAL_JWKS"
        ]
    );
    assert_eq!(env[0].1, "embedded");
    let event = portal_dev::portal(&portal, &key, &["event", FUNCTION, "--user", "alice"]);
    let other = portal_dev::portal(
        &portal,
        &key,
        &[
            "event",
            FUNCTION,
            "--user",
            "bob",
            "--device",
            "DESKTOP-5K1L9M3",
        ],
    );
    for program in binaries() {
        for (level, disclosure_logged) in [("INFO", true), ("WARN", false)] {
            let mut vars: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            vars.push(("AWS_LAMBDA_LOG_LEVEL", level));
            let (addr, emu) = Emulator::start().unwrap();
            let mut f = FunctionProcess::spawn(&program, FUNCTION, addr, &vars).unwrap();
            let (s, h, j) = invoke(&emu, &mut f, event.clone());
            assert_eq!(s, 200, "{j}");
            assert_eq!(h["pragma"], "no-cache");
            assert_eq!(j["device_id"], "DESKTOP-7Q2M4K1");
            assert_eq!(j["key_id"], "3B8FAA18-37F8-488B-97FC-695A07A0CA6E");
            assert_eq!(
                j["recovery_password"],
                "038258-286682-604857-317823-647658-401093-009361-230186"
            );
            let (s, _, j) = invoke(&emu, &mut f, other.clone());
            assert_eq!(s, 200, "{j}");
            assert_eq!(j["device_id"], "DESKTOP-5K1L9M3");
            f.kill();
            let log = f.output();
            portal_dev::assert_json_log_lines(&log);
            assert_eq!(
                log.contains("recovery key disclosed"),
                disclosure_logged,
                "AWS_LAMBDA_LOG_LEVEL={level}:\n{log}"
            );
            assert!(
                !log.contains("038258-286682"),
                "a password reached the logs"
            );
        }
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
