//! Loader processes: each file is parsed in a child process with a memory
//! limit and a deadline, so that a hostile or broken file (a decompression
//! bomb past the caps, a parser that loops or overflows its stack) costs
//! only that file.
//!
//! The child is the program itself started again: a program that wants
//! isolation calls [`install`] once with the command that starts its loader
//! (the `cairn` binary: `cairn __loader`) and hands that command to
//! [`worker_main`]. Without it, [`Loader`] loads in the calling process,
//! where the caps of [`crate::LoadLimits`] and caught panics still apply.
//!
//! The protocol over the child's stdin and stdout, little-endian:
//! request `u32` path length, path (UTF-8), `u64` byte count, bytes;
//! reply `u32` length, JSON [`Reply`]. A child serves files one after
//! another until its stdin closes.

use crate::{IngestError, LoadLimits, Result};
use cairn_core::Document;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The command that starts a loader process, set once per program.
static WORKER: OnceLock<(PathBuf, Vec<String>)> = OnceLock::new();

/// Make loader processes available to every [`Loader`] of this program:
/// `program args… LIMITS_JSON` must run [`worker_main`]. Later calls are
/// ignored.
pub fn install(program: PathBuf, args: Vec<String>) {
    let _ = WORKER.set((program, args));
}

/// Whether [`install`] was called.
pub fn installed() -> bool {
    WORKER.get().is_some()
}

/// What a loader process answers for one file.
#[derive(serde::Serialize, serde::Deserialize)]
pub enum Reply {
    Loaded(Document),
    /// The file could not be loaded: the reason, without the path, and
    /// whether it is worth remembering ([`IngestError::is_costly`]).
    Failed {
        reason: String,
        costly: bool,
    },
}

/// The loader process's main loop: apply the memory limit, then load the
/// files that arrive on stdin and answer on stdout until stdin closes.
/// `limits` is the JSON of the parent's [`LoadLimits`]. Returns the exit
/// code.
pub fn worker_main(limits: &str) -> i32 {
    let limits: LoadLimits = match serde_json::from_str(limits) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("loader: bad limits {limits:?}: {e}");
            return 2;
        }
    };
    limit_memory(limits.memory_bytes);
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin.lock());
    let stdout = std::io::stdout();
    let mut output = stdout.lock();
    loop {
        let (path, bytes) = match read_request(&mut input) {
            Ok(Some(r)) => r,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("loader: {e}");
                return 2;
            }
        };
        let reply = match crate::load_with(Path::new(&path), &bytes, &limits) {
            Ok(doc) => Reply::Loaded(doc),
            Err(e) => Reply::Failed {
                reason: e.reason(),
                costly: e.is_costly(),
            },
        };
        drop(bytes);
        let json = serde_json::to_vec(&reply).unwrap_or_default();
        let sent = output
            .write_all(&(json.len() as u32).to_le_bytes())
            .and_then(|_| output.write_all(&json))
            .and_then(|_| output.flush());
        if sent.is_err() {
            return 0; // the parent is gone
        }
    }
}

#[cfg(unix)]
fn limit_memory(bytes: u64) {
    if bytes == 0 {
        return;
    }
    let lim = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this
    // process's limit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
    if rc != 0 {
        eprintln!(
            "loader: cannot limit memory: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(unix))]
fn limit_memory(_bytes: u64) {}

fn read_request(r: &mut impl Read) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut path = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut path)?;
    let mut n = [0u8; 8];
    r.read_exact(&mut n)?;
    let mut bytes = Vec::new();
    r.take(u64::from_le_bytes(n)).read_to_end(&mut bytes)?;
    Ok(Some((String::from_utf8_lossy(&path).into_owned(), bytes)))
}

/// One running loader process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    /// Reply frames, read by a thread of their own so that waiting for one
    /// can time out; closed when the process's stdout closes.
    replies: Receiver<Vec<u8>>,
    /// The last lines the process wrote to stderr (why it died).
    stderr: Arc<Mutex<String>>,
}

impl Worker {
    fn spawn(program: &Path, args: &[String], limits: &LoadLimits) -> Result<Worker> {
        let json = serde_json::to_string(limits).unwrap_or_default();
        let mut child = Command::new(program)
            .args(args)
            .arg(json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| IngestError::Loader {
                reason: format!("{}: {e}", program.display()),
            })?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let (tx, replies) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("cairn-loader-out".into())
            .spawn(move || loop {
                let mut len = [0u8; 4];
                if stdout.read_exact(&mut len).is_err() {
                    return;
                }
                let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
                if stdout.read_exact(&mut frame).is_err() || tx.send(frame).is_err() {
                    return;
                }
            })
            .map_err(|e| IngestError::Loader {
                reason: e.to_string(),
            })?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let tail = stderr.clone();
        std::thread::Builder::new()
            .name("cairn-loader-err".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    t.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if t.len() > 2048 {
                        let cut = t.len() - 1024;
                        let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                        t.drain(..cut);
                    }
                }
            })
            .map_err(|e| IngestError::Loader {
                reason: e.to_string(),
            })?;
        Ok(Worker {
            child,
            stdin,
            replies,
            stderr,
        })
    }

    fn send(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let p = path.to_string_lossy();
        self.stdin.write_all(&(p.len() as u32).to_le_bytes())?;
        self.stdin.write_all(p.as_bytes())?;
        self.stdin.write_all(&(bytes.len() as u64).to_le_bytes())?;
        self.stdin.write_all(bytes)?;
        self.stdin.flush()
    }

    /// Stop the process and say how it ended.
    fn end(mut self) -> String {
        let _ = self.child.kill();
        let status = self.child.wait();
        // The stderr reader ends with the process; give it a moment.
        std::thread::sleep(Duration::from_millis(20));
        let said = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        let how = match status {
            Ok(s) => describe_exit(s),
            Err(e) => e.to_string(),
        };
        if said.is_empty() {
            how
        } else {
            format!("{how}: {said}")
        }
    }
}

#[cfg(unix)]
fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(6)) => "aborted".into(),
        (_, Some(9)) => "killed".into(),
        (_, Some(11)) => "segmentation fault".into(),
        (_, Some(sig)) => format!("signal {sig}"),
        _ => s.to_string(),
    }
}

#[cfg(not(unix))]
fn describe_exit(s: std::process::ExitStatus) -> String {
    s.to_string()
}

/// Loader processes shared by the threads of one ingest; each thread takes
/// an idle one (or starts one) per file. Dropping the pool stops them.
pub struct LoaderPool {
    program: PathBuf,
    args: Vec<String>,
    limits: LoadLimits,
    idle: Mutex<Vec<Worker>>,
}

impl LoaderPool {
    /// A pool of processes started with `program args…`; none is started
    /// before the first file.
    pub fn new(program: PathBuf, args: Vec<String>, limits: LoadLimits) -> LoaderPool {
        LoaderPool {
            program,
            args,
            limits,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Result<Worker> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(w) => Ok(w),
            None => Worker::spawn(&self.program, &self.args, &self.limits),
        }
    }

    /// Load one file in a loader process: its document, the loader's reason
    /// when it could not, [`IngestError::Deadline`] when it took longer than
    /// the limit, [`IngestError::LoaderDied`] when the process died on it.
    pub fn load(&self, path: &Path, bytes: &[u8]) -> Result<Document> {
        let mut worker = self.take()?;
        if worker.send(path, bytes).is_err() {
            // An idle process that died meanwhile: one fresh try.
            let _ = worker.end();
            worker = Worker::spawn(&self.program, &self.args, &self.limits)?;
            if let Err(e) = worker.send(path, bytes) {
                let how = worker.end();
                return Err(IngestError::Loader {
                    reason: format!("{e} ({how})"),
                });
            }
        }
        let deadline = Duration::from_secs(self.limits.timeout_secs);
        match worker.replies.recv_timeout(deadline) {
            Ok(frame) => {
                let reply = serde_json::from_slice::<Reply>(&frame);
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(worker);
                match reply {
                    Ok(Reply::Loaded(doc)) => Ok(doc),
                    Ok(Reply::Failed { reason, costly }) => Err(IngestError::Failed {
                        path: path.to_path_buf(),
                        reason,
                        costly,
                    }),
                    Err(e) => Err(IngestError::Loader {
                        reason: format!("unreadable reply: {e}"),
                    }),
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = worker.end();
                Err(IngestError::Deadline {
                    path: path.to_path_buf(),
                    secs: self.limits.timeout_secs,
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                let how = worker.end();
                let memory = if how.contains("memory allocation") || how.contains("aborted") {
                    format!(
                        "; it may need more than its {} MiB (ingest.loader_memory_mb)",
                        self.limits.memory_bytes >> 20
                    )
                } else {
                    String::new()
                };
                Err(IngestError::LoaderDied {
                    path: path.to_path_buf(),
                    reason: format!("{how}{memory}"),
                })
            }
        }
    }
}

impl Drop for LoaderPool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for mut w in idle {
            // Closing stdin ends the loop; kill in case it is stuck.
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}

/// How an ingest loads files: in loader processes when the program
/// installed them and the configuration asks for it, else in this process.
pub struct Loader {
    limits: LoadLimits,
    pool: Option<LoaderPool>,
}

impl Loader {
    /// A loader for `limits`; with `isolate` and an [`install`]ed loader
    /// command, files load in loader processes.
    pub fn new(limits: LoadLimits, isolate: bool) -> Loader {
        let pool = match (isolate, WORKER.get()) {
            (true, Some((program, args))) => Some(LoaderPool::new(
                program.clone(),
                args.clone(),
                limits.clone(),
            )),
            _ => None,
        };
        Loader { limits, pool }
    }

    /// Whether files load in loader processes.
    pub fn isolated(&self) -> bool {
        self.pool.is_some()
    }

    /// Load one file.
    pub fn load(&self, path: &Path, bytes: &[u8]) -> Result<Document> {
        match &self.pool {
            Some(pool) => {
                // Refuse what needs no parser here, without a round trip.
                crate::detect_format(path, bytes)?;
                pool.load(path, bytes)
            }
            None => crate::load_with(path, bytes, &self.limits),
        }
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("limits", &self.limits)
            .field("isolated", &self.isolated())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_end_at_eof() {
        let mut buf = Vec::new();
        let p = "/docs/a.md";
        buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
        buf.extend_from_slice(p.as_bytes());
        buf.extend_from_slice(&5u64.to_le_bytes());
        buf.extend_from_slice(b"# Hi\n");
        let mut r = std::io::Cursor::new(buf);
        let (path, bytes) = read_request(&mut r).unwrap().unwrap();
        assert_eq!((path.as_str(), bytes.as_slice()), (p, &b"# Hi\n"[..]));
        assert!(read_request(&mut r).unwrap().is_none());
    }

    #[test]
    fn without_a_loader_process_files_load_here() {
        let l = Loader::new(LoadLimits::default(), true);
        assert!(!l.isolated() || installed());
        let doc = l.load(Path::new("a.md"), b"# A\n\nText.\n").unwrap();
        assert_eq!(doc.sections[0].headings, vec!["A".to_string()]);
        assert!(doc.text.contains("Text."), "{}", doc.text);
    }
}
