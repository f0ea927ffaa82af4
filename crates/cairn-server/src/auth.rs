//! API keys: bearer tokens compared in constant time, each optionally
//! limited to some collections.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_core::config::ApiKeyConfig;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The configured keys, stored as BLAKE3 digests (fixed length, so the
/// comparison does not depend on the key's length either).
pub struct Keys {
    keys: Vec<([u8; 32], Vec<String>)>,
}

/// What the request's key may touch: the collection boundary's `Scope`.
pub use cairn_engine::Scope as Access;

/// 403 unless the key may use a collection.
pub trait Check {
    /// `Ok` when the key may use `collection`, else 403.
    fn check(&self, collection: &str) -> Result<(), ApiError>;
}

impl Check for Access {
    fn check(&self, collection: &str) -> Result<(), ApiError> {
        if self.allows(collection) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(collection.to_string()))
        }
    }
}

impl Keys {
    pub fn new(cfg: &[ApiKeyConfig]) -> Keys {
        Keys {
            keys: cfg
                .iter()
                .map(|k| {
                    (
                        *blake3::hash(k.key.as_bytes()).as_bytes(),
                        k.collections.clone(),
                    )
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The access a presented token grants, if any. Every key is compared
    /// (no early exit), each in constant time.
    pub fn check(&self, token: &str) -> Option<Access> {
        let digest = blake3::hash(token.as_bytes());
        let mut found: Option<&Vec<String>> = None;
        for (k, collections) in &self.keys {
            if bool::from(k.ct_eq(digest.as_bytes())) && found.is_none() {
                found = Some(collections);
            }
        }
        found.map(|c| {
            if c.is_empty() {
                Access::All
            } else {
                Access::Only(c.clone())
            }
        })
    }
}

/// Paths anyone may fetch: the UI's files, health, the API description.
fn public(path: &str) -> bool {
    matches!(path, "/" | "/healthz" | "/openapi.json" | "/favicon.ico")
        || path.starts_with("/assets/")
}

/// Middleware: with keys configured, every non-public request needs one.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let access = if state.keys.is_empty() {
        Access::All
    } else if public(req.uri().path()) {
        Access::Only(vec![])
    } else {
        let token = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match token.and_then(|t| state.keys.check(t)) {
            Some(a) => a,
            None => return ApiError::Unauthorized.into_response(),
        }
    };
    req.extensions_mut().insert(access);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_grant_their_collections_only() {
        let keys = Keys::new(&[
            ApiKeyConfig {
                key: "k-all-0123456789abcdef".into(),
                collections: vec![],
            },
            ApiKeyConfig {
                key: "k-docs-0123456789abcdef".into(),
                collections: vec!["docs".into()],
            },
        ]);
        assert!(matches!(
            keys.check("k-all-0123456789abcdef"),
            Some(Access::All)
        ));
        let docs = keys.check("k-docs-0123456789abcdef").unwrap();
        assert!(docs.allows("docs") && !docs.allows("other"));
        assert!(keys.check("k-docs-0123456789abcdeX").is_none());
        assert!(keys.check("").is_none());
    }
}
