//! A real headless Chromium, driven over the Chrome DevTools Protocol: enough to type, click,
//! read the page and take screenshots, as a person at the browser would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Browser {
    child: tokio::process::Child,
    sink: Mutex<futures::stream::SplitSink<Socket, Message>>,
    replies: Mutex<mpsc::UnboundedReceiver<Value>>,
    next_id: AtomicU64,
    session: String,
    profile: PathBuf,
}

fn chromium() -> PathBuf {
    std::env::var("SOVD_CHROMIUM").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/bin/chromium"))
}

impl Browser {
    /// Starts Chromium and opens one tab.
    pub async fn launch() -> Self {
        let profile = std::env::temp_dir().join(format!("sovd-chromium-{}", uuid::Uuid::new_v4()));
        let mut child = tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}); ./deploy/local/test installs chromium", chromium().display())
            });
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium exited before it listened for DevTools");
        })
        .await
        .expect("chromium did not start within 30 s");
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let (sink, mut stream) = socket.split();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                if let Ok(value) = serde_json::from_str::<Value>(&text) {
                    let _ = tx.send(value);
                }
            }
        });
        let mut browser = Self {
            child,
            sink: Mutex::new(sink),
            replies: Mutex::new(rx),
            next_id: AtomicU64::new(1),
            session: String::new(),
            profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"})).await;
        let attached =
            browser.call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true})).await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.send("Page.enable", json!({})).await;
        browser.send("Runtime.enable", json!({})).await;
        browser
    }

    async fn call(&self, method: &str, params: Value) -> Value {
        self.request(method, params, None).await
    }

    /// A method on the tab.
    pub async fn send(&self, method: &str, params: Value) -> Value {
        self.request(method, params, Some(self.session.clone())).await
    }

    async fn request(&self, method: &str, params: Value, session: Option<String>) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = Value::String(session);
        }
        self.sink.lock().await.send(Message::Text(message.to_string().into())).await.unwrap();
        let mut replies = self.replies.lock().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = tokio::time::timeout_at(deadline.into(), replies.recv())
                .await
                .unwrap_or_else(|_| panic!("no DevTools answer to {method} within 30 s"))
                .expect("DevTools connection closed");
            if reply["id"].as_u64() == Some(id) {
                if let Some(error) = reply.get("error") {
                    panic!("DevTools {method} failed: {error}");
                }
                return reply["result"].clone();
            }
        }
    }

    pub async fn goto(&self, url: &str) {
        self.send("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete'").await;
    }

    /// Evaluates `expression` in the page (promises are awaited) and returns its value.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .send("Runtime.evaluate", json!({"expression": expression, "awaitPromise": true, "returnByValue": true}))
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("page script failed: {exception}\n{expression}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `condition` (a JS expression) is truthy; fails after 15 s with the page text.
    pub async fn wait_for(&self, condition: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ok = self.eval(&format!("Boolean({condition})")).await;
            if ok == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body ? document.body.innerText : ''").await;
                panic!("browser: {condition} did not hold within 15 s; the page said:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CSS selector for a `data-testid`.
    pub fn id(testid: &str) -> String {
        format!("[data-testid=\"{testid}\"]")
    }

    pub async fn wait_visible(&self, testid: &str) {
        let sel = Self::id(testid);
        self.wait_for(&format!(
            "(() => {{ const e = document.querySelector('{sel}'); return e && e.offsetParent !== null; }})()"
        ))
        .await;
    }

    pub async fn click(&self, testid: &str) {
        self.wait_visible(testid).await;
        self.eval(&format!("document.querySelector('{}').click()", Self::id(testid))).await;
    }

    /// Focuses a field and types into it like a keyboard would.
    pub async fn type_into(&self, testid: &str, text: &str) {
        self.wait_visible(testid).await;
        self.eval(&format!(
            "(() => {{ const e = document.querySelector('{}'); e.focus(); e.select && e.select(); }})()",
            Self::id(testid)
        ))
        .await;
        self.send("Input.insertText", json!({"text": text})).await;
    }

    /// Chooses the option of a `<select>` whose text contains `text`.
    pub async fn choose(&self, testid: &str, text: &str) {
        let sel = Self::id(testid);
        self.wait_for(&format!(
            "[...((document.querySelector('{sel}') || {{}}).options || [])].some(o => o.textContent.includes({text:?}))"
        ))
        .await;
        self.eval(&format!(
            "(() => {{ const s = document.querySelector('{sel}');
                 const o = [...s.options].find(o => o.textContent.includes({text:?}));
                 s.value = o.value; s.dispatchEvent(new Event('change', {{bubbles: true}})); }})()"
        ))
        .await;
    }

    pub async fn text(&self, testid: &str) -> String {
        self.eval(&format!("(document.querySelector('{}') || {{}}).innerText || ''", Self::id(testid)))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// How many elements with this `data-testid` a person can see.
    pub async fn visible(&self, testid: &str) -> u64 {
        self.eval(&format!(
            "[...document.querySelectorAll('{}')].filter(e => e.offsetParent !== null).length",
            Self::id(testid)
        ))
        .await
        .as_u64()
        .unwrap_or(0)
    }

    pub async fn count(&self, testid: &str) -> u64 {
        self.eval(&format!("document.querySelectorAll('{}').length", Self::id(testid))).await.as_u64().unwrap_or(0)
    }

    /// Saves a PNG of the whole page into `dir` (created if missing).
    pub async fn screenshot(&self, dir: &Path, name: &str) {
        let height = self.eval("document.documentElement.scrollHeight").await.as_f64().unwrap_or(900.0).min(2400.0);
        let clip = json!({"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1});
        let shot = self
            .send("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true, "clip": clip}))
            .await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Where screenshots go: `SOVD_SCREENSHOTS` (the user guide's images when regenerating them),
/// else `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var("SOVD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots"))
}

pub type Shared = Arc<Browser>;
