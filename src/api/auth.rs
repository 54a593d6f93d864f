//! Who is calling: the bearer token of the `Authorization` header, checked
//! by the portal's verifier (the `TokenVerifier` port).

use crate::domain::caller::Caller;
use crate::domain::error::{ApiError, AuthFailure};
use crate::domain::metrics::{Cause, Metric};
use crate::domain::ports::Portal;
use http::{HeaderMap, header};

pub(super) async fn authenticate(portal: &Portal, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let value = match headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => None,
        [v] => Some(
            v.to_str()
                .map_err(|_| ApiError::Unauthenticated(AuthFailure::Malformed))?,
        ),
        _ => return Err(ApiError::Unauthenticated(AuthFailure::Malformed)),
    };
    let token = bearer_token(value).map_err(ApiError::Unauthenticated)?;
    portal.verifier.verify(token).await.map_err(|f| {
        tracing::info!(reason = %f, "token rejected");
        let e = ApiError::from(f);
        if matches!(
            e,
            ApiError::IdentityProviderUnavailable { .. } | ApiError::IdentityProviderMisconfigured
        ) {
            portal.count(Metric::Unavailable(Cause::Idp), 1);
        }
        e
    })
}

/// Extracts the token from an `Authorization` header value (RFC 6750 §2.1).
pub fn bearer_token(value: Option<&str>) -> Result<&str, AuthFailure> {
    let v = value.ok_or(AuthFailure::Missing)?;
    let (scheme, token) = v.trim().split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthFailure::Malformed);
    }
    Ok(token)
}
