//! Crash injection for the kill tests: a named point in a commit path where
//! the process can be made to die at once, as `kill -9` would leave it.
//!
//! `CAIRN_FAILPOINT=NAME[@N][,NAME[@N]…]` kills the process with SIGKILL the
//! `N`th time (default: the first) the point `NAME` is reached. Before dying
//! it writes one line to standard error, `cairn: failpoint NAME@N reached:
//! SIGKILL`, so a test can tell a kill that landed at the point from one that
//! happened anywhere else. Without the variable a point costs one atomic
//! load.
//!
//! The points (see ARCHITECTURE.md, "Crash safety"):
//! - `catalog.apply.mid`: inside a catalog transaction, the old chunks gone
//!   and the new ones not yet written;
//! - `catalog.apply.commit`: the transaction complete, before `COMMIT`;
//! - `catalog.apply.committed`: after `COMMIT`, before the indexes catch up;
//! - `catalog.prune`: tombstones deleted, before that transaction commits;
//! - `index.catchup.fed`: the indexes fed (graph changed in memory, BM25
//!   staged), nothing saved;
//! - `index.reset`: a rebuild's indexes emptied, nothing rebuilt;
//! - `hnsw.save.written`: the graph written to its temporary file, not
//!   synced or renamed;
//! - `hnsw.save.renamed`: the graph renamed into place, the manifest that
//!   names its sequence not yet written;
//! - `bm25.commit.prepared`: a BM25 commit prepared, not committed;
//! - `bm25.commit.done`: BM25 committed, its reader not reloaded.
//! - `improve.trained`: a `cairn improve` round's candidate written, before
//!   its decision;
//! - `improve.promote.saved`: a copy of the artefact a promotion replaces
//!   kept, the candidate not yet swapped in;
//! - `improve.promoted`: the candidate in place, the round not yet recorded.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
static POINTS: OnceLock<Mutex<Vec<Point>>> = OnceLock::new();

struct Point {
    name: String,
    at: u64,
    seen: u64,
}

/// Parse `CAIRN_FAILPOINT`'s value: `NAME[@N]`, comma-separated. A bad `N`
/// is refused with the entry named.
pub fn parse(spec: &str) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    for one in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, at) = match one.split_once('@') {
            Some((n, a)) => (
                n,
                a.parse::<u64>().ok().filter(|&a| a > 0).ok_or_else(|| {
                    format!("CAIRN_FAILPOINT: `{one}`: the hit after @ must be a number from 1")
                })?,
            ),
            None => (one, 1),
        };
        out.push((name.to_string(), at));
    }
    Ok(out)
}

fn points() -> &'static Mutex<Vec<Point>> {
    POINTS.get_or_init(|| {
        let spec = std::env::var("CAIRN_FAILPOINT").unwrap_or_default();
        let parsed = parse(&spec).unwrap_or_else(|e| {
            eprintln!("cairn: {e}");
            std::process::exit(2)
        });
        Mutex::new(
            parsed
                .into_iter()
                .map(|(name, at)| Point { name, at, seen: 0 })
                .collect(),
        )
    })
}

/// Reach the point `name`: if `CAIRN_FAILPOINT` names it and this is the
/// hit it names, the process dies here with SIGKILL.
pub fn reach(name: &str) {
    match STATE.load(Ordering::Relaxed) {
        OFF => return,
        UNKNOWN => {
            let on = std::env::var_os("CAIRN_FAILPOINT").is_some_and(|v| !v.is_empty());
            STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
            if !on {
                return;
            }
        }
        _ => {}
    }
    let mut points = points().lock().unwrap_or_else(|p| p.into_inner());
    for p in points.iter_mut().filter(|p| p.name == name) {
        p.seen += 1;
        if p.seen == p.at {
            eprintln!("cairn: failpoint {name}@{} reached: SIGKILL", p.at);
            die();
        }
    }
}

#[cfg(unix)]
fn die() -> ! {
    // SAFETY: getpid and kill have no preconditions; SIGKILL cannot be
    // caught, so nothing runs after it (no destructor, no flush).
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // Unreachable in practice: SIGKILL to oneself is delivered at once.
    std::process::abort()
}

#[cfg(not(unix))]
fn die() -> ! {
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_hits_are_named() {
        assert_eq!(
            parse("catalog.apply.mid@3, hnsw.save.written").unwrap(),
            vec![
                ("catalog.apply.mid".to_string(), 3),
                ("hnsw.save.written".to_string(), 1)
            ]
        );
        assert!(parse("").unwrap().is_empty());
        let e = parse("a@0").unwrap_err();
        assert!(e.contains("`a@0`"), "{e}");
        assert!(parse("a@x").is_err());
    }
}
