//! Running `portal serve` as a real process in tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A child process killed when dropped.
pub struct Served {
    child: std::process::Child,
    /// `http://<addr>` the server announced.
    pub base: String,
    /// What it printed on stderr up to and including the announcement.
    pub banner: String,
    /// Everything it printed on stderr so far.
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Stops the server and returns everything it printed on stderr.
    pub fn finish(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` (a `portal serve ... --addr 127.0.0.1:0`) and waits for the
/// `listening addr=...` line.
pub fn spawn(mut cmd: Command) -> Served {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn portal");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Arc::new(Mutex::new(String::new()));
    let all = log.clone();
    let reader = std::thread::spawn(move || {
        let mut banner = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            banner.push_str(&line);
            banner.push('\n');
            {
                let mut all = all.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
            // Other lines may carry `addr=` too (at a verbose RUST_LOG).
            if line.contains("listening")
                && let Some(addr) = line.split("addr=").nth(1)
            {
                let _ = tx.send((addr.trim().to_owned(), banner.clone()));
            }
        }
    });
    let (addr, banner) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("portal serve announced its address");
    Served {
        child,
        base: format!("http://{addr}"),
        banner,
        log,
        reader: Some(reader),
    }
}
