//! What the process tests share: a `rag serve` child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// A `rag serve` child process on a free port, killed on drop.
pub struct Served {
    pub child: Child,
    pub url: String,
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `rag` (already given its global flags) as `serve` on a free port, and waits until
/// `/readyz` answers 200 (the model warmed up).
pub fn serve(mut rag: Command) -> Served {
    let mut child = rag.args(["serve", "--addr", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "first line: {line}");
    let served = Served { child, url, _stdout: stdout };
    for _ in 0..1200 {
        if rag_testkit::http_request("GET", &format!("{}/readyz", served.url), None).is_ok_and(|(s, _)| s == 200) {
            return served;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("rag serve at {} never became ready", served.url);
}
