//! A real headless Chromium (Debian's `chromium`, installed by `make setup`), driven through the
//! DevTools protocol over a WebSocket: open a page, type, click, read the DOM.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The browser binary: `RAG_CHROMIUM`, else `chromium` on the PATH.
pub fn chromium_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RAG_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    crate::which("chromium").or_else(|| crate::which("chromium-browser"))
}

/// A headless browser process, killed on drop.
pub struct Browser {
    child: Child,
    port: u16,
    browser_path: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page (tab), driven over its own DevTools WebSocket.
pub struct Page {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Starts headless Chromium with a fresh profile; panics (a test failure) if it cannot.
    pub fn launch() -> Self {
        let program = chromium_path().expect("chromium is not installed: run `make setup` (apt-get install chromium)");
        let profile = tempfile::Builder::new().prefix("rag-chromium-").tempdir().expect("a profile directory");
        let child = Command::new(&program)
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        // Chromium writes its DevTools port and browser path to this file once it listens.
        let file = profile.path().join("DevToolsActivePort");
        let mut browser = Self { child, port: 0, browser_path: String::new(), _profile: profile };
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&file)
                && let Some((port, path)) = text.split_once('\n')
                && let Ok(port) = port.trim().parse::<u16>()
                && !path.trim().is_empty()
            {
                browser.port = port;
                browser.browser_path = path.trim().to_owned();
                return browser;
            }
            assert!(matches!(browser.child.try_wait(), Ok(None)), "chromium exited before listening");
            assert!(start.elapsed() < Duration::from_secs(60), "chromium did not start in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn connect(&self, path: &str) -> Page {
        let url = format!("ws://127.0.0.1:{}{path}", self.port);
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("DevTools WebSocket");
        Page { ws, next_id: 0 }
    }

    /// Opens `url` in a new tab.
    pub async fn open(&self, url: &str) -> Page {
        let mut b = self.connect(&self.browser_path).await;
        let target = b.call("Target.createTarget", json!({ "url": url })).await;
        let id = target["targetId"].as_str().expect("targetId").to_owned();
        let mut page = self.connect(&format!("/devtools/page/{id}")).await;
        page.wait_for("document.readyState === 'complete'", Duration::from_secs(30)).await;
        page
    }
}

impl Page {
    /// Sends one DevTools command and returns its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws.send(Message::Text(msg.into())).await.expect("send");
        while let Some(m) = self.ws.next().await {
            if let Message::Text(t) = m.expect("receive") {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
        panic!("the page closed during {method}");
    }

    /// Evaluates a JavaScript expression and returns its value (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r =
            self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true, "awaitPromise": true })).await;
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `condition` (JavaScript) is true; panics with the page text after `timeout`.
    pub async fn wait_for(&mut self, condition: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.eval(&format!("Boolean({condition})")).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = self.eval("document.body ? document.body.innerText : ''").await;
        panic!("timed out after {timeout:?} waiting for `{condition}`; the page shows:\n{text}");
    }

    /// Types `text` into the element matching `selector`, as a user would (focus, then input).
    pub async fn type_into(&mut self, selector: &str, text: &str) {
        self.eval(&format!("document.querySelector({}).focus()", json!(selector))).await;
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// Clicks the element matching `selector` with a real mouse event at its centre.
    pub async fn click(&mut self, selector: &str) {
        let rect = self
            .eval(&format!(
                "(() => {{ const r = document.querySelector({}).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
                json!(selector)
            ))
            .await;
        let (x, y) = (rect[0].as_f64().expect("x"), rect[1].as_f64().expect("y"));
        for kind in ["mousePressed", "mouseReleased"] {
            self.call("Input.dispatchMouseEvent", json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }))
                .await;
        }
    }
}
