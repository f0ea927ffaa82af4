//! The stdio transport: one JSON-RPC message per line on the input, one
//! reply per line on the output (nothing else is written there; logs go to
//! stderr). Each request runs on its own thread, so a `ping` is answered
//! while an answer is generated; replies are written whole, one at a time.

use crate::server::{McpServer, Scope};
use crate::McpError;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

/// Serve until the input ends; then wait for the requests in flight.
pub fn serve(
    server: Arc<McpServer>,
    input: impl BufRead,
    output: impl Write + Send + 'static,
) -> Result<(), McpError> {
    let output = Arc::new(Mutex::new(output));
    let mut running: Vec<std::thread::JoinHandle<()>> = vec![];
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        running.retain(|h| !h.is_finished());
        let server = server.clone();
        let output = output.clone();
        running.push(std::thread::spawn(move || {
            if let Some(reply) = server.handle_text(&line, &Scope::All) {
                let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
                let written = out
                    .write_all(reply.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush());
                if let Err(e) = written {
                    tracing::error!("writing a reply: {e}");
                }
            }
        }));
    }
    for h in running {
        let _ = h.join();
    }
    Ok(())
}
