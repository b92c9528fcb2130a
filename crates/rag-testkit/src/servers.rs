//! Test support: local servers started from the venv (a fake OpenAI server, a Pinecone
//! data-plane server, `chroma run`), killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rag_core::{RagError, Result};

/// A child process serving on `127.0.0.1:port`, killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl ServerProcess {
    /// Base URL `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (also done on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The repository root (where `python/` and `.venv` live).
pub fn repo_root() -> PathBuf {
    Path::new(rag_python::venv::BUILD_WORKSPACE_ROOT)
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(rag_python::venv::BUILD_WORKSPACE_ROOT))
}

/// The venv's `bin/` directory.
pub fn venv_bin() -> Result<PathBuf> {
    Ok(rag_python::venv::find_venv(None)?.join("bin"))
}

/// Runs `python/testing/<script>` with the venv's Python; waits for its `PORT n` line.
pub fn spawn_python_server(script: &str, args: &[&str]) -> Result<ServerProcess> {
    let path = repo_root().join("python/testing").join(script);
    let mut child = Command::new(venv_bin()?.join("python"))
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| RagError::io(&path, e))?;
    let stdout = child.stdout.take().ok_or_else(|| RagError::Other("no stdout".into()))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| RagError::io(&path, e))?;
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| RagError::Other(format!("{script} did not print its port (got {line:?})")))?;
    Ok(ServerProcess { child, port })
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| RagError::Other(format!("bind: {e}")))?;
    Ok(l.local_addr().map_err(|e| RagError::Other(format!("addr: {e}")))?.port())
}

/// `name` on the PATH, if it is there.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.exists()))
}

/// `redis-server` on `port` (127.0.0.1, nothing persisted), waiting until it listens.
pub fn spawn_redis(port: u16) -> Result<ServerProcess> {
    let program = which("redis-server")
        .ok_or_else(|| RagError::config("redis-server is not installed: run `make setup` (apt-get install redis-server)"))?;
    let args: Vec<String> =
        ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].map(str::to_owned).to_vec();
    spawn_listening(&program, &args, port, Duration::from_secs(10))
}

/// `redis-server` on `port` persisting to an append-only file in `dir` (so a stream and its
/// consumer group survive a restart on the same `dir`), waiting until it listens.
pub fn spawn_redis_persistent(port: u16, dir: &Path) -> Result<ServerProcess> {
    let program = which("redis-server")
        .ok_or_else(|| RagError::config("redis-server is not installed: run `make setup` (apt-get install redis-server)"))?;
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]
    .map(str::to_owned)
    .to_vec();
    spawn_listening(&program, &args, port, Duration::from_secs(10))
}

/// `chroma run` from the venv on a free port, storing in `dir`, waiting until it listens.
pub fn spawn_chroma(dir: &Path) -> Result<ServerProcess> {
    let port = free_port()?;
    let args: Vec<String> = ["run", "--path", &dir.display().to_string(), "--host", "127.0.0.1", "--port", &port.to_string()]
        .map(str::to_owned)
        .to_vec();
    spawn_listening(&venv_bin()?.join("chroma"), &args, port, Duration::from_secs(60))
}

/// Spawns `command` (a program and args) that will listen on `port`, waiting until it accepts
/// connections (up to `timeout`).
pub fn spawn_listening(program: &Path, args: &[String], port: u16, timeout: Duration) -> Result<ServerProcess> {
    spawn_listening_in(program, args, None, port, timeout)
}

/// [`spawn_listening`] with the working directory `cwd` (for servers that write files there).
pub fn spawn_listening_in(
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    port: u16,
    timeout: Duration,
) -> Result<ServerProcess> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let child = cmd.spawn().map_err(|e| RagError::io(program, e))?;
    let mut server = ServerProcess { child, port };
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(server);
        }
        if !server.is_running() {
            return Err(RagError::Other(format!("{} exited before listening on {port}", program.display())));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(RagError::Timeout { what: format!("{} to listen on {port}", program.display()), after: timeout })
}

/// A plain HTTP/1.1 request to a local test server; returns the status code and the body.
pub fn http_request(method: &str, url: &str, body: Option<&str>) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let (host, path) = addr.split_once('/').unwrap_or((addr, ""));
    let err = |e: std::io::Error| RagError::Other(format!("{method} {url}: {e}"));
    let mut s = TcpStream::connect(host).map_err(err)?;
    let body = body.unwrap_or("");
    write!(s, "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        .map_err(err)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(err)?;
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

/// GETs `url` from a local test server and parses the JSON body.
pub fn http_get_json(url: &str) -> Result<serde_json::Value> {
    let (_, body) = http_request("GET", url, None)?;
    serde_json::from_str(&body).map_err(|e| RagError::Other(format!("GET {url}: not JSON: {e}")))
}

/// POSTs a JSON `body` to a local test server; returns the status code.
pub fn http_post_json(url: &str, body: &serde_json::Value) -> Result<u16> {
    Ok(http_request("POST", url, Some(&body.to_string()))?.0)
}
