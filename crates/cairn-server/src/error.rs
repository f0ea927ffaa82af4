//! The server's error: what went wrong, in the categories HTTP clients act
//! on, rendered as `{"error": {"message", "type", "field"}}` (the shape
//! OpenAI clients parse).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Errors of the HTTP layer, each with its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("missing or wrong API key (send `Authorization: Bearer KEY`)")]
    Unauthorized,
    #[error("this API key may not use collection `{0}`")]
    Forbidden(String),
    /// Refused whatever the key: a request another web site could have
    /// made the browser send, or one that needs an unscoped key.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than the server's limit (server.max_body_bytes)")]
    TooLarge,
    #[error("the generator queue is full ({queued} waiting); retry in {retry_after} s")]
    Overloaded { queued: usize, retry_after: u64 },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Something the request needs is busy or did not answer: retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0} took longer than its time limit")]
    Timeout(&'static str),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: Some(field.to_string()),
            message: format!("{field}: {}", message.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Refused(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Overloaded { .. } | ApiError::ShuttingDown | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "invalid_request_error",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) | ApiError::Refused(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge => "invalid_request_error",
            ApiError::Overloaded { .. } | ApiError::ShuttingDown => "overloaded",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "server_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                r#type: self.kind().to_string(),
                field: match self {
                    ApiError::BadRequest { field, .. } => field.clone(),
                    _ => None,
                },
            },
        }
    }
}

/// `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// invalid_request_error, not_found, unauthorized, forbidden, conflict,
    /// overloaded, timeout or server_error.
    pub r#type: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() && !matches!(self, ApiError::Overloaded { .. }) {
            tracing::error!("{self}");
        }
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        match &self {
            ApiError::Overloaded { retry_after, .. } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::ShuttingDown => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(5u64));
            }
            ApiError::Unauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

impl From<cairn_engine::EngineError> for ApiError {
    fn from(e: cairn_engine::EngineError) -> Self {
        use cairn_engine::EngineError as E;
        use cairn_engine::ErrorKind as K;
        match e {
            E::NoCollection(c) => ApiError::NotFound(format!("collection `{c}` does not exist")),
            E::NotFound(what) => ApiError::NotFound(format!("nothing matches {what}")),
            E::Generate(cairn_generate::GenerateError::Invalid { field, reason }) => {
                ApiError::bad(field, reason)
            }
            E::Question(reason) => ApiError::bad("question", reason),
            e => match e.kind() {
                K::InvalidInput => ApiError::BadRequest {
                    field: None,
                    message: e.to_string(),
                },
                K::NotFound => ApiError::NotFound(e.to_string()),
                K::Conflict => ApiError::Conflict(e.to_string()),
                K::Unavailable => ApiError::Unavailable(e.to_string()),
                K::Internal => ApiError::Internal(e.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod engine_error_tests {
    use super::*;
    use cairn_engine::EngineError;

    #[test]
    fn engine_error_categories_map_to_statuses() {
        let cases: Vec<(EngineError, StatusCode)> = vec![
            (
                EngineError::Busy {
                    collection: "docs".into(),
                    holder: "process 1 (`cairn ingest`)".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (EngineError::ReadOnly("docs".into()), StatusCode::CONFLICT),
            (
                EngineError::NoCollection("docs".into()),
                StatusCode::NOT_FOUND,
            ),
            (
                EngineError::Question("is empty".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                EngineError::Generate(cairn_generate::GenerateError::Unreachable {
                    url: "http://127.0.0.1:1".into(),
                    reason: "refused".into(),
                }),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                EngineError::Io {
                    path: "/x".into(),
                    source: std::io::Error::other("disk"),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            let api = ApiError::from(e);
            assert_eq!(api.status(), want, "{text}");
            assert!(!api.to_string().is_empty());
        }
    }
}
