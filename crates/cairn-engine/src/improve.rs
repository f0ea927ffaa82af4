//! The record of `cairn improve`'s rounds in a collection's directory, and
//! the promotion and rollback of what they train.
//!
//! ```text
//! <collection>/improve/
//!   LOCK                       one round (or rollback) at a time
//!   history.jsonl              one event per line: round, interrupted, rollback
//!   rounds/0001/
//!     data/                    the round's training and held-out data
//!     candidate/<artefact>     what was trained, until promoted (rejected
//!                              rerankers are deleted when the round ends;
//!                              adapters, a few MB at most, are kept)
//!     previous/<artefact>      what was installed before the round promoted
//!     previous/<artefact>.absent   nothing was installed
//!     round.json               the finished round's record
//! ```
//!
//! Invariants:
//! - An artefact is promoted only after a copy of what it replaces (or a
//!   marker that nothing was installed) is on disk, so every promotion can
//!   be rolled back, an interrupted one included.
//! - Installing goes beside the live artefact and is renamed over it: a
//!   round killed at any point leaves either the old artefact or the new
//!   one in place, never a half-written one.
//! - The history is append-only; a round that never wrote its record is
//!   recorded as interrupted by the next round.

use crate::{EngineError, Result, ADAPTER_FILE, GENERATOR_DIR, RERANKER_DIR};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder in a collection's directory.
pub const IMPROVE_DIR: &str = "improve";
const HISTORY_FILE: &str = "history.jsonl";
const ROUND_FILE: &str = "round.json";

/// What a round trains and can promote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Artefact {
    /// The query adapter (`adapter.json`).
    Adapter,
    /// The cross-encoder reranker (`reranker/`).
    Reranker,
    /// The generator's LoRA adapter (`generator/`).
    Generator,
}

impl Artefact {
    pub const ALL: [Artefact; 3] = [Artefact::Adapter, Artefact::Reranker, Artefact::Generator];
    /// What a round trains unless told otherwise (the generator takes
    /// about 20 minutes more on 2 cores: asked for by name).
    pub const DEFAULT: [Artefact; 2] = [Artefact::Adapter, Artefact::Reranker];

    /// Its name in the collection's directory, where the engine reads it.
    pub fn installed_name(self) -> &'static str {
        match self {
            Artefact::Adapter => ADAPTER_FILE,
            Artefact::Reranker => RERANKER_DIR,
            Artefact::Generator => GENERATOR_DIR,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Artefact::Adapter => "adapter",
            Artefact::Reranker => "reranker",
            Artefact::Generator => "generator",
        }
    }
}

impl std::str::FromStr for Artefact {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "adapter" => Ok(Artefact::Adapter),
            "reranker" => Ok(Artefact::Reranker),
            "generator" => Ok(Artefact::Generator),
            _ => Err(format!(
                "`{s}` is not an artefact (adapter, reranker or generator)"
            )),
        }
    }
}

/// What a round decided about one artefact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub artefact: Artefact,
    pub promoted: bool,
    /// Why, in words.
    pub reason: String,
    /// The held-out metric the decision was taken on ("hit5", "hit1").
    pub metric: String,
    /// Its value with what was installed before the round, and with the
    /// candidate.
    pub before: f64,
    pub after: f64,
    /// The trainer's full report.
    pub report: serde_json::Value,
}

/// An artefact a round did not train, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    pub artefact: Artefact,
    pub reason: String,
}

/// One line of the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A round that ran to its end.
    Round {
        round: u32,
        started_at: String,
        finished_at: String,
        seconds: f64,
        /// Sizes of the data it trained and judged on.
        data: serde_json::Value,
        decisions: Vec<Decision>,
        skipped: Vec<Skipped>,
    },
    /// A round that never wrote its record (killed, or failed); `backed_up`
    /// are the artefacts whose promotion may have happened (a copy of what
    /// they replaced is kept), which a rollback restores.
    Interrupted {
        round: u32,
        found_at: String,
        backed_up: Vec<Artefact>,
    },
    /// The artefacts a round promoted, put back as they were before it.
    Rollback {
        round: u32,
        at: String,
        restored: Vec<Artefact>,
    },
}

impl Event {
    pub fn round(&self) -> u32 {
        match self {
            Event::Round { round, .. }
            | Event::Interrupted { round, .. }
            | Event::Rollback { round, .. } => *round,
        }
    }

    /// The artefacts this event may have put in place (none for a
    /// rollback).
    fn promoted(&self) -> Vec<Artefact> {
        match self {
            Event::Round { decisions, .. } => decisions
                .iter()
                .filter(|d| d.promoted)
                .map(|d| d.artefact)
                .collect(),
            Event::Interrupted { backed_up, .. } => backed_up.clone(),
            Event::Rollback { .. } => vec![],
        }
    }
}

/// A round's entry in [`Improvements::history`]: its recorded events, and
/// for a round without any, whether it is running now.
#[derive(Debug, Clone, Serialize)]
pub struct Unrecorded {
    pub round: u32,
    pub running: bool,
}

/// The `improve/` folder of one collection.
pub struct Improvements {
    collection_dir: PathBuf,
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Copy a file or a folder (recursively), into a path that must not exist.
fn copy_all(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(io(to))?;
        for e in std::fs::read_dir(from).map_err(io(from))? {
            let e = e.map_err(io(from))?;
            copy_all(&e.path(), &to.join(e.file_name()))?;
        }
    } else {
        std::fs::copy(from, to).map_err(io(to))?;
    }
    Ok(())
}

fn remove_all(path: &Path) -> Result<()> {
    let r = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// Put `from` (a file or folder, written beside `live`) in place of
/// `live`: renamed over a file; for a folder, the old one is renamed aside
/// first, then removed. An interruption leaves the old one, or the new.
pub fn swap_in(from: &Path, live: &Path) -> Result<()> {
    if live.is_dir() {
        let aside = live.with_file_name(format!(
            "{}.old-{}",
            live.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        remove_all(&aside)?;
        std::fs::rename(live, &aside).map_err(io(live))?;
        std::fs::rename(from, live).map_err(io(live))?;
        remove_all(&aside)
    } else {
        std::fs::rename(from, live).map_err(io(live))
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Improvements {
    /// The record of the collection whose directory is `collection_dir`
    /// (nothing is created until a round begins).
    pub fn new(collection_dir: &Path) -> Self {
        Improvements {
            collection_dir: collection_dir.to_path_buf(),
            root: collection_dir.join(IMPROVE_DIR),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn rounds_dir(&self) -> PathBuf {
        self.root.join("rounds")
    }

    fn round_dir(&self, round: u32) -> PathBuf {
        self.rounds_dir().join(format!("{round:04}"))
    }

    /// The round numbers that have a folder, in order.
    fn round_numbers(&self) -> Result<Vec<u32>> {
        let dir = self.rounds_dir();
        let mut out = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries {
                    let e = e.map_err(io(&dir))?;
                    if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                        out.push(n);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Every recorded event, oldest first. A line that is not an event is
    /// an error naming the file and line.
    pub fn events(&self) -> Result<Vec<Event>> {
        let path = self.root.join(HISTORY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io(&path)(e)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    EngineError::Invalid(format!(
                        "{}:{}: not a `cairn improve` history event: {e}",
                        path.display(),
                        i + 1
                    ))
                })
            })
            .collect()
    }

    /// The recorded events, and the rounds that have a folder but no
    /// event: running now (when another process holds the lock), or
    /// interrupted (the next round records them).
    pub fn history(&self) -> Result<(Vec<Event>, Vec<Unrecorded>)> {
        let events = self.events()?;
        let recorded: std::collections::HashSet<u32> = events.iter().map(Event::round).collect();
        let busy = self.root.is_dir() && self.try_lock()?.is_none();
        let unrecorded: Vec<u32> = self
            .round_numbers()?
            .into_iter()
            .filter(|n| !recorded.contains(n))
            .collect();
        let last = unrecorded.last().copied();
        Ok((
            events,
            unrecorded
                .into_iter()
                .map(|round| Unrecorded {
                    round,
                    running: busy && Some(round) == last,
                })
                .collect(),
        ))
    }

    fn append(&self, event: &Event) -> Result<()> {
        let path = self.root.join(HISTORY_FILE);
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut line = serde_json::to_string(event).expect("events serialise");
        line.push('\n');
        f.write_all(line.as_bytes()).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))
    }

    /// The lock, if no other process holds it.
    fn try_lock(&self) -> Result<Option<File>> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let path = self.root.join("LOCK");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }

    fn lock(&self) -> Result<File> {
        self.try_lock()?.ok_or_else(|| {
            EngineError::Invalid(format!(
                "another `cairn improve` is running on this collection ({} is locked); run this again when it ends",
                self.root.join("LOCK").display()
            ))
        })
    }

    /// Record the rounds that never finished as interrupted (the lock is
    /// held, so none of them is running).
    fn record_interrupted(&self) -> Result<()> {
        let (_, unrecorded) = self.history()?;
        for u in unrecorded {
            let previous = self.round_dir(u.round).join("previous");
            let backed_up = Artefact::ALL
                .into_iter()
                .filter(|a| {
                    previous.join(a.installed_name()).exists()
                        || previous
                            .join(format!("{}.absent", a.installed_name()))
                            .exists()
                })
                .collect();
            self.append(&Event::Interrupted {
                round: u.round,
                found_at: cairn_core::time::now_rfc3339(),
                backed_up,
            })?;
        }
        Ok(())
    }

    /// Start a round: take the lock (an error if another round holds it),
    /// record earlier rounds that never finished, and make the round's
    /// folder.
    pub fn begin(&self) -> Result<Round> {
        let lock = self.lock()?;
        self.record_interrupted()?;
        let last_event = self.events()?.iter().map(Event::round).max().unwrap_or(0);
        let last_dir = self.round_numbers()?.last().copied().unwrap_or(0);
        let number = last_event.max(last_dir) + 1;
        let dir = self.round_dir(number);
        std::fs::create_dir_all(dir.join("data")).map_err(io(&dir))?;
        Ok(Round {
            number,
            dir,
            collection_dir: self.collection_dir.clone(),
            started_at: cairn_core::time::now_rfc3339(),
            started: std::time::Instant::now(),
            _lock: lock,
        })
    }

    /// The round a rollback would undo: the newest one whose promotions
    /// have not been rolled back yet.
    pub fn rollback_target(&self) -> Result<Option<(u32, Vec<Artefact>)>> {
        let events = self.events()?;
        let rolled: std::collections::HashSet<u32> = events
            .iter()
            .filter(|e| matches!(e, Event::Rollback { .. }))
            .map(Event::round)
            .collect();
        Ok(events
            .iter()
            .rev()
            .filter(|e| !matches!(e, Event::Rollback { .. }) && !rolled.contains(&e.round()))
            .map(|e| (e.round(), e.promoted()))
            .find(|(_, p)| !p.is_empty()))
    }

    /// Put back what `round` (default: the newest round not rolled back
    /// that promoted something) replaced, and record it. Rounds are undone
    /// newest first: naming an older one while a newer one's promotions
    /// stand is an error that names the newer.
    pub fn rollback(&self, round: Option<u32>) -> Result<Event> {
        let _lock = self.lock()?;
        self.record_interrupted()?;
        let Some((target, artefacts)) = self.rollback_target()? else {
            return Err(EngineError::Invalid(match round {
                Some(n) => format!("round {n} has nothing to roll back: no round's promotion stands (see `cairn improve history`)"),
                None => "nothing to roll back: no round's promotion stands (see `cairn improve history`)".into(),
            }));
        };
        if let Some(n) = round {
            if n != target {
                let events = self.events()?;
                let rolled = |n: u32| {
                    events
                        .iter()
                        .any(|e| matches!(e, Event::Rollback { round, .. } if *round == n))
                };
                let stands = !rolled(n)
                    && events
                        .iter()
                        .any(|e| e.round() == n && !e.promoted().is_empty());
                return Err(EngineError::Invalid(if stands {
                    format!("round {target}'s promotions are newer than round {n}'s: roll back round {target} first")
                } else {
                    format!("round {n} has no promotion to roll back; the newest that has is round {target}")
                }));
            }
        }
        let previous = self.round_dir(target).join("previous");
        let mut restored = Vec::new();
        for a in artefacts {
            let live = self.collection_dir.join(a.installed_name());
            let saved = previous.join(a.installed_name());
            if saved.exists() {
                // Copied beside and swapped in, so that the saved copy stays
                // whole until the swap and the live one is never half there.
                let staged = self.collection_dir.join(format!(
                    "{}.restore-{}",
                    a.installed_name(),
                    std::process::id()
                ));
                remove_all(&staged)?;
                copy_all(&saved, &staged)?;
                swap_in(&staged, &live)?;
            } else if previous
                .join(format!("{}.absent", a.installed_name()))
                .exists()
            {
                remove_all(&live)?;
            } else {
                return Err(EngineError::Invalid(format!(
                    "{}: round {target}'s copy of the {} it replaced is missing; nothing was rolled back",
                    previous.display(),
                    a.name()
                )));
            }
            restored.push(a);
        }
        sync_dir(&self.collection_dir);
        let event = Event::Rollback {
            round: target,
            at: cairn_core::time::now_rfc3339(),
            restored,
        };
        self.append(&event)?;
        // The copies are spent: a rollback is not undone.
        remove_all(&previous)?;
        Ok(event)
    }
}

/// A round in progress: it holds the lock until it is finished or dropped.
pub struct Round {
    pub number: u32,
    dir: PathBuf,
    collection_dir: PathBuf,
    started_at: String,
    started: std::time::Instant,
    _lock: File,
}

impl Round {
    /// Where the round's training and held-out data go.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The round's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a trained `artefact` is written before the decision (a file
    /// for the adapter, a folder for the reranker and the generator's
    /// adapter; its parent exists).
    pub fn candidate(&self, artefact: Artefact) -> Result<PathBuf> {
        let dir = self.dir.join("candidate");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(dir.join(artefact.installed_name()))
    }

    /// Install the candidate of `artefact` in the collection, after keeping
    /// a copy of what it replaces (or a marker that nothing was installed)
    /// for a rollback. The engine reads it at its next query.
    pub fn promote(&self, artefact: Artefact) -> Result<()> {
        let candidate = self.dir.join("candidate").join(artefact.installed_name());
        if !candidate.exists() {
            return Err(EngineError::Invalid(format!(
                "{}: no candidate {} to promote",
                candidate.display(),
                artefact.name()
            )));
        }
        let previous = self.dir.join("previous");
        std::fs::create_dir_all(&previous).map_err(io(&previous))?;
        let live = self.collection_dir.join(artefact.installed_name());
        let saved = previous.join(artefact.installed_name());
        let absent = previous.join(format!("{}.absent", artefact.installed_name()));
        remove_all(&saved)?;
        remove_all(&absent)?;
        if live.exists() {
            let tmp = previous.join(format!("{}.tmp", artefact.installed_name()));
            remove_all(&tmp)?;
            copy_all(&live, &tmp)?;
            std::fs::rename(&tmp, &saved).map_err(io(&saved))?;
        } else {
            File::create(&absent).map_err(io(&absent))?;
        }
        sync_dir(&previous);
        cairn_core::failpoint::reach("improve.promote.saved");
        swap_in(&candidate, &live)?;
        sync_dir(&self.collection_dir);
        cairn_core::failpoint::reach("improve.promoted");
        Ok(())
    }

    /// Record the finished round in the history (and its folder), and
    /// delete rejected rerankers (hundreds of MB each).
    pub fn finish(
        self,
        data: serde_json::Value,
        decisions: Vec<Decision>,
        skipped: Vec<Skipped>,
    ) -> Result<Event> {
        let event = Event::Round {
            round: self.number,
            started_at: self.started_at.clone(),
            finished_at: cairn_core::time::now_rfc3339(),
            seconds: self.started.elapsed().as_secs_f64(),
            data,
            decisions,
            skipped,
        };
        let file = self.dir.join(ROUND_FILE);
        std::fs::write(
            &file,
            serde_json::to_vec_pretty(&event).expect("events serialise"),
        )
        .map_err(io(&file))?;
        Improvements::new(&self.collection_dir).append(&event)?;
        remove_all(
            &self
                .dir
                .join("candidate")
                .join(Artefact::Reranker.installed_name()),
        )?;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(a: Artefact, promoted: bool) -> Decision {
        Decision {
            artefact: a,
            promoted,
            reason: String::new(),
            metric: "hit5".into(),
            before: 0.5,
            after: if promoted { 0.6 } else { 0.4 },
            report: serde_json::json!({}),
        }
    }

    /// A round that trains `adapter` (the file's text) and `reranker` (a
    /// folder with one file), promotes those asked, and finishes.
    fn round(imp: &Improvements, adapter: Option<&str>, reranker: Option<&str>) -> u32 {
        let r = imp.begin().unwrap();
        let mut decisions = vec![];
        if let Some(text) = adapter {
            std::fs::write(r.candidate(Artefact::Adapter).unwrap(), text).unwrap();
            r.promote(Artefact::Adapter).unwrap();
            decisions.push(decision(Artefact::Adapter, true));
        }
        if let Some(text) = reranker {
            let d = r.candidate(Artefact::Reranker).unwrap();
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("model.safetensors"), text).unwrap();
            r.promote(Artefact::Reranker).unwrap();
            decisions.push(decision(Artefact::Reranker, true));
        }
        let n = r.number;
        r.finish(serde_json::json!({}), decisions, vec![]).unwrap();
        n
    }

    fn installed(dir: &Path) -> (Option<String>, Option<String>) {
        (
            std::fs::read_to_string(dir.join(ADAPTER_FILE)).ok(),
            std::fs::read_to_string(dir.join(RERANKER_DIR).join("model.safetensors")).ok(),
        )
    }

    #[test]
    fn promotions_roll_back_newest_first_to_what_was_there() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let imp = Improvements::new(dir);
        assert!(
            matches!(imp.rollback(None), Err(EngineError::Invalid(m)) if m.contains("nothing to roll back"))
        );
        // Installed by hand before any round.
        std::fs::write(dir.join(ADAPTER_FILE), "hand").unwrap();
        let r1 = round(&imp, Some("a1"), Some("r1"));
        let r2 = round(&imp, None, None); // promotes nothing
        let r3 = round(&imp, Some("a3"), None);
        assert_eq!((r1, r2, r3), (1, 2, 3));
        assert_eq!(installed(dir), (Some("a3".into()), Some("r1".into())));
        // Not the newest standing promotion: refused, naming it.
        let e = imp.rollback(Some(1)).unwrap_err().to_string();
        assert!(e.contains("roll back round 3 first"), "{e}");
        let e = imp.rollback(Some(2)).unwrap_err().to_string();
        assert!(e.contains("round 2 has no promotion"), "{e}");
        match imp.rollback(Some(3)).unwrap() {
            Event::Rollback {
                round, restored, ..
            } => {
                assert_eq!((round, restored), (3, vec![Artefact::Adapter]))
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(installed(dir), (Some("a1".into()), Some("r1".into())));
        // Then round 1 (round 2 promoted nothing): the hand-made adapter
        // comes back, and the reranker, absent before, is gone.
        imp.rollback(None).unwrap();
        assert_eq!(installed(dir), (Some("hand".into()), None));
        assert!(imp.rollback(None).is_err());
        let events = imp.events().unwrap();
        let kinds: Vec<(u32, bool)> = events
            .iter()
            .map(|e| (e.round(), matches!(e, Event::Rollback { .. })))
            .collect();
        assert_eq!(
            kinds,
            vec![(1, false), (2, false), (3, false), (3, true), (1, true)]
        );
        // Later rounds go on numbering.
        assert_eq!(round(&imp, Some("a4"), None), 4);
        assert_eq!(installed(dir).0.as_deref(), Some("a4"));
    }

    #[test]
    fn a_round_that_never_finished_is_recorded_and_can_be_undone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let imp = Improvements::new(dir);
        std::fs::create_dir_all(dir.join(RERANKER_DIR)).unwrap();
        std::fs::write(dir.join(RERANKER_DIR).join("model.safetensors"), "old").unwrap();
        {
            let r = imp.begin().unwrap();
            // While it runs: a second round is refused; history says running.
            let e = imp.begin().err().unwrap().to_string();
            assert!(e.contains("another `cairn improve` is running"), "{e}");
            let (events, unrecorded) = imp.history().unwrap();
            assert!(events.is_empty());
            assert_eq!(unrecorded.len(), 1);
            assert!(unrecorded[0].running);
            let d = r.candidate(Artefact::Reranker).unwrap();
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("model.safetensors"), "new").unwrap();
            r.promote(Artefact::Reranker).unwrap();
            // Dropped without finish: as if killed after the promotion.
        }
        let (_, unrecorded) = imp.history().unwrap();
        assert!(!unrecorded[0].running);
        assert_eq!(installed(dir).1.as_deref(), Some("new"));
        // The next round records it; a rollback undoes its promotion.
        let r = imp.begin().unwrap();
        assert_eq!(r.number, 2);
        drop(r);
        let events = imp.events().unwrap();
        assert!(
            matches!(&events[0], Event::Interrupted { round: 1, backed_up, .. } if backed_up == &vec![Artefact::Reranker]),
            "{events:?}"
        );
        imp.rollback(None).unwrap();
        assert_eq!(installed(dir).1.as_deref(), Some("old"));
        // (round 2, also unfinished, is recorded, with nothing backed up)
        assert!(imp.events().unwrap().iter().any(
            |e| matches!(e, Event::Interrupted { round: 2, backed_up, .. } if backed_up.is_empty())
        ));
    }

    #[test]
    fn a_damaged_history_line_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let imp = Improvements::new(tmp.path());
        std::fs::create_dir_all(imp.root()).unwrap();
        std::fs::write(imp.root().join(HISTORY_FILE), "{\"event\":\"round\"}\n").unwrap();
        let e = imp.events().unwrap_err().to_string();
        assert!(e.contains("history.jsonl:1"), "{e}");
    }
}
