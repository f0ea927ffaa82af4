//! `cairn serve` in a child process on a free loopback port, and a small
//! HTTP client for talking to it.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub log: PathBuf,
    pub client: Client,
}

/// Requests to a server: its URL and the API key to send, if any.
#[derive(Clone)]
pub struct Client {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub key: Option<String>,
}

impl std::ops::Deref for Server {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Server {
    /// Start `cairn --data-dir DATA serve --addr 127.0.0.1:0 ARGS` with the
    /// small real models and wait for its "listening on" line.
    pub fn start(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        std::fs::create_dir_all(data).unwrap();
        let mut c = super::cairn(data);
        // Ingestion jobs at the tests' own priority: these servers run beside
        // other tests, and a lowered job (the default) would get a tenth of
        // the cores for as long as they do. The lowering itself is tested in
        // cairn-server's `jobs` and cairn-engine's `background` tests and
        // measured by bench/scripts/interference.sh.
        c.env_remove("CAIRN_API_KEY")
            .env("CAIRN_LLM_THREADS", "2")
            .env("CAIRN_INGEST_BACKGROUND_NICE", "0")
            .arg("serve")
            .args(["--addr", "127.0.0.1:0", "--model"])
            .arg(cairn_testkit::smollm2_gguf())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("start cairn serve");
        let log = data.join(format!("serve-{}.log", child.id()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&log2).unwrap();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(f, "{line}");
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(url);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(180);
        let url = loop {
            if let Ok(u) = rx.recv_timeout(Duration::from_millis(200)) {
                break u;
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "cairn serve exited ({st}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "cairn serve did not start");
        };
        let key = env
            .iter()
            .find(|(k, _)| *k == "CAIRN_API_KEY")
            .map(|(_, v)| v.to_string());
        Server {
            child,
            log,
            client: Client { url, key },
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "cairn serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Client {
    pub fn agent() -> ureq::Agent {
        ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(600)))
                .build(),
        )
    }

    fn auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(k) => r.header("Authorization", &format!("Bearer {k}")),
            None => r,
        }
    }

    /// GET; status and JSON (or `{"text": body}` when not JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .auth(Self::agent().get(&format!("{}{path}", self.url)))
            .call()
            .unwrap();
        read(r)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .auth(Self::agent().post(&format!("{}{path}", self.url)))
            .send_json(body)
            .unwrap();
        read(r)
    }

    pub fn delete(&self, path: &str) -> u16 {
        let r = self
            .auth(Self::agent().delete(&format!("{}{path}", self.url)))
            .call()
            .unwrap();
        r.status().as_u16()
    }

    /// POST multipart/form-data with `file` parts.
    pub fn upload(&self, collection: &str, files: &[(&str, &[u8])]) -> (u16, Value) {
        let boundary = "cairn-test-boundary-7d1f";
        let mut body = Vec::new();
        for (name, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let r = self
            .auth(Self::agent().post(&format!(
                "{}/api/collections/{collection}/documents",
                self.url
            )))
            .header(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send(&body[..])
            .unwrap();
        read(r)
    }

    /// POST and read a `text/event-stream` answer: `(event, data)` pairs;
    /// `on_event` sees each as it arrives.
    pub fn sse(
        &self,
        path: &str,
        body: &Value,
        mut on_event: impl FnMut(&str, &str),
    ) -> (u16, Vec<(String, String)>) {
        let r = self
            .auth(Self::agent().post(&format!("{}{path}", self.url)))
            .send_json(body)
            .unwrap();
        let status = r.status().as_u16();
        let mut events = vec![];
        let reader = BufReader::new(r.into_body().into_reader());
        let (mut event, mut data) = (String::from("message"), String::new());
        for line in reader.lines() {
            let line = line.unwrap();
            if line.is_empty() {
                if !data.is_empty() {
                    on_event(&event, &data);
                    events.push((event.clone(), data.clone()));
                }
                event = "message".into();
                data.clear();
            } else if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        (status, events)
    }

    /// Poll a job until it is no longer queued or running.
    pub fn wait_job(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let (s, j) = self.get(&format!("/api/jobs/{id}"));
            assert_eq!(s, 200, "{j}");
            if !matches!(j["state"].as_str(), Some("queued" | "running")) {
                return j;
            }
            assert!(Instant::now() < deadline, "job {id} did not finish: {j}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(mut r: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = r.status().as_u16();
    let mut text = String::new();
    r.body_mut().as_reader().read_to_string(&mut text).unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "text": text }));
    (status, v)
}

/// Headers of a response, for checks like `Retry-After`.
pub fn header(r: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
