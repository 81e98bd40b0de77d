//! Authentication and transparent forwarding of API requests to the leader.

use crate::SharedContext;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hafen_api_types::{FORWARDED_HEADER, REQUEST_ID_HEADER};
use std::time::Duration;

/// The largest request body forwarded to the leader.
const FORWARD_BODY_LIMIT: usize = 64 * 1024 * 1024;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Refuses requests without a valid API token. Join requests carry a join token instead.
pub(crate) async fn authenticate(
    State(context): State<SharedContext>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().ends_with("/cluster/join") {
        return next.run(request).await;
    }
    let Some(token) = bearer(request.headers()) else {
        return ApiError::Unauthorized(
            "missing credentials: pass --token, set HAFEN_TOKEN, or use the credentials file written by `hafen cluster init`"
                .to_string(),
        )
        .into_response();
    };
    let hash = crate::sha256_hex(token);
    let (bootstrapped, known) = context.replica.read_local(|state| {
        (
            state.identity.is_some(),
            state.authenticate(&hash).is_some(),
        )
    });
    // A node that has not received the cluster state yet cannot judge; the leader will.
    if bootstrapped && !known {
        return ApiError::Unauthorized("invalid API token".to_string()).into_response();
    }
    next.run(request).await
}

/// Serves the request here when this node leads, else forwards it whole to the leader.
pub(crate) async fn to_leader(
    State(context): State<SharedContext>,
    request: Request,
    next: Next,
) -> Response {
    let status = context.replica.status();
    if status.is_leader || request.headers().contains_key(FORWARDED_HEADER) {
        return next.run(request).await;
    }
    let Some((_, leader)) = context.replica.leader() else {
        return ApiError::Unavailable(
            "no leader is elected right now; retry in a moment".to_string(),
        )
        .into_response();
    };
    match forward(&context, &leader.address, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn forward(
    context: &SharedContext,
    leader_address: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, FORWARD_BODY_LIMIT)
        .await
        .map_err(|error| ApiError::Invalid(format!("cannot read request body: {error}")))?;
    let path = parts
        .uri
        .path_and_query()
        .map(|path| path.as_str())
        .unwrap_or("/");
    let url = format!("https://{leader_address}/api/v1{path}");
    let mut outgoing = context
        .peer
        .http()
        .request(parts.method.clone(), &url)
        .header(FORWARDED_HEADER, context.local.name.as_str())
        .timeout(FORWARD_TIMEOUT)
        .body(body);
    for name in ["authorization", "content-type", REQUEST_ID_HEADER] {
        if let Some(value) = parts.headers.get(name) {
            outgoing = outgoing.header(name, value.clone());
        }
    }
    let reply = outgoing.send().await.map_err(|error| {
        ApiError::Unavailable(format!(
            "cannot reach the leader at {leader_address}: {}; retry",
            hafen_rpc::peer::error_chain(&error)
        ))
    })?;
    let status = reply.status();
    let content_type = reply.headers().get("content-type").cloned();
    let bytes = reply.bytes().await.map_err(|error| {
        ApiError::Unavailable(format!("the leader's answer was cut off: {error}; retry"))
    })?;
    let mut response = Response::builder().status(status.as_u16());
    if let Some(content_type) = content_type {
        response = response.header("content-type", content_type);
    }
    response
        .body(Body::from(bytes))
        .map_err(|error| ApiError::Internal(error.to_string()))
}
