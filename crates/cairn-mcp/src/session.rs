//! Sessions of the streamable HTTP transport: an id issued at `initialize`
//! (random, 128 bits), the protocol version agreed there and the caller
//! that opened it; required on every later request, ended by `DELETE` or
//! after a time unused.

use crate::server::Scope;
use crate::McpError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    pub protocol_version: String,
    /// Only the caller that opened it (the same API key's access) may use it.
    pub caller: Scope,
    used: Instant,
}

/// The open sessions.
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
    max: usize,
    idle: Duration,
}

impl Sessions {
    /// At most `max` sessions (the least recently used one goes first),
    /// each ended after `idle` unused.
    pub fn new(max: usize, idle: Duration) -> Sessions {
        Sessions {
            open: Mutex::new(HashMap::new()),
            max: max.max(1),
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open a session; its id.
    pub fn create(&self, protocol_version: &str, caller: Scope) -> Result<String, McpError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)
            .map_err(|e| McpError::Internal(format!("no random session id: {e}")))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut open = self.lock();
        let idle = self.idle;
        open.retain(|_, s| s.used.elapsed() < idle);
        while open.len() >= self.max {
            let Some(oldest) = open
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            open.remove(&oldest);
        }
        open.insert(
            id.clone(),
            Session {
                protocol_version: protocol_version.to_string(),
                caller,
                used: Instant::now(),
            },
        );
        Ok(id)
    }

    /// The session `id` when it is open and `caller` opened it (marked
    /// used now).
    pub fn get(&self, id: &str, caller: &Scope) -> Option<Session> {
        let mut open = self.lock();
        let expired = open.get(id)?.used.elapsed() >= self.idle;
        if expired {
            open.remove(id);
            return None;
        }
        let s = open.get_mut(id)?;
        if &s.caller != caller {
            return None;
        }
        s.used = Instant::now();
        Some(s.clone())
    }

    /// End a session; whether it was open (and `caller`'s).
    pub fn remove(&self, id: &str, caller: &Scope) -> bool {
        let mut open = self.lock();
        match open.get(id) {
            Some(s) if &s.caller == caller => open.remove(id).is_some(),
            _ => false,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_belong_to_their_caller_and_end() {
        let s = Sessions::new(2, Duration::from_secs(60));
        let a = s.create("2025-06-18", Scope::All).unwrap();
        let b = s
            .create("2024-11-05", Scope::Only(vec!["docs".into()]))
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(
            s.get(&a, &Scope::All).unwrap().protocol_version,
            "2025-06-18"
        );
        // Another key's access does not reach it.
        assert!(s.get(&a, &Scope::Only(vec!["docs".into()])).is_none());
        assert!(!s.remove(&b, &Scope::All));
        assert!(s.get("nope", &Scope::All).is_none());
        // A third session evicts the least recently used (b).
        let c = s.create("2025-03-26", Scope::All).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.get(&b, &Scope::Only(vec!["docs".into()])).is_none());
        assert!(s.remove(&c, &Scope::All));
        assert!(s.get(&c, &Scope::All).is_none());
    }

    #[test]
    fn unused_sessions_expire() {
        let s = Sessions::new(8, Duration::from_millis(20));
        let a = s.create("2025-06-18", Scope::All).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert!(s.get(&a, &Scope::All).is_none());
        assert!(s.is_empty());
    }
}
