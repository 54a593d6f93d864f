//! Errors of the HTTP layer: the domain's, plus the ones only a transport
//! has (no such route, another method, a body too large or not JSON).

use crate::domain::error::ApiError;

/// What a request can fail with before or after the domain answers.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Domain(#[from] ApiError),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("payload too large")]
    PayloadTooLarge { max: usize },
    /// `allow`: the path's methods, as the `Allow` header lists them.
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("no such route")]
    RouteNotFound,
}

impl HttpError {
    /// A 400 `invalid-request` with `detail`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::Domain(ApiError::BadRequest(detail.into()))
    }
}
