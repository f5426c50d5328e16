//! Optional bearer-token authentication (`serve --token-file FILE`): every call to the composer
//! and inference services must carry `authorization: Bearer TOKEN`; a missing or wrong token gets
//! `UNAUTHENTICATED`; reflection too, and the page's API and the metrics over HTTP (401). Health
//! stays open, so probes need no token, and so does the page itself (static HTML that asks for
//! the token and sends it with each API call).

use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The server's check.
#[derive(Clone)]
pub struct RequireToken(Option<Arc<str>>);

impl RequireToken {
    /// `None`: no authentication.
    pub fn new(token: Option<String>) -> RequireToken {
        RequireToken(token.map(Arc::from))
    }
}

/// Equal bytes, compared in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl RequireToken {
    /// Whether an `authorization` header value passes: `Bearer TOKEN` with the right token,
    /// the scheme in any case (HTTP's schemes are case-insensitive). Every listener that
    /// needs the token (gRPC, the page's API, the metrics) asks this.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), Status> {
        let Some(token) = &self.0 else {
            return Ok(());
        };
        let given = authorization
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, given)| given.trim_start_matches(' '));
        match given {
            Some(given) if same(given.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(Status::unauthenticated("authorization: wrong token")),
            None => Err(Status::unauthenticated(
                "authorization: this server needs \"Bearer TOKEN\"",
            )),
        }
    }

    /// Whether a token is asked for at all.
    pub fn is_required(&self) -> bool {
        self.0.is_some()
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.check(given).map(|()| request)
    }
}

/// The HTTP listeners' check (the page's API, the metrics), as axum middleware: 401 with a
/// JSON error and a `WWW-Authenticate: Bearer` challenge when the token is missing or wrong.
pub async fn require_token_http(
    axum::extract::State(token): axum::extract::State<RequireToken>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match token.check(given) {
        Ok(()) => next.run(request).await,
        Err(status) => (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({ "error": status.message() })),
        )
            .into_response(),
    }
}

/// The client's side: adds `authorization: Bearer TOKEN` to every call when there is a token.
#[derive(Clone)]
pub struct AddToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl AddToken {
    /// Fails when the token cannot be a header value (control characters, non-ASCII).
    pub fn new(token: Option<&str>) -> Result<AddToken, String> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| "the token must be printable ASCII".to_owned())
            })
            .transpose()
            .map(AddToken)
    }
}

impl Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A token from `path`: the file's text, surrounding whitespace removed. It must not be empty,
/// and must be printable ASCII without spaces, since it travels in a header: a token no client
/// could send would start a server nobody can use.
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "--token-file {}: the file is empty",
            path.display()
        ));
    }
    if let Some(bad) = token.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "--token-file {}: the token holds {bad:?}; a token is printable ASCII without \
             spaces (it is sent in an HTTP header)",
            path.display()
        ));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_must_hold_a_token_a_client_can_send() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret-token\n").unwrap();
        assert_eq!(read_token_file(&file).unwrap(), "s3cret-token");
        for (text, why) in [
            ("\n \n", "the file is empty"),
            ("clé", "'é'"),
            ("two words", "' '"),
            ("tab\there", "'\\t'"),
        ] {
            std::fs::write(&file, text).unwrap();
            let error = read_token_file(&file).unwrap_err();
            assert!(
                error.contains("--token-file") && error.contains(why),
                "{text:?}: {error}"
            );
        }
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_exact() {
        let check = RequireToken::new(Some("abc".to_owned()));
        for good in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer  abc"] {
            assert!(check.check(Some(good)).is_ok(), "{good}");
        }
        for bad in [
            "Bearer abd",
            "Bearer ab",
            "Basic abc",
            "abc",
            "Bearerabc",
            "",
        ] {
            assert!(check.check(Some(bad)).is_err(), "{bad}");
        }
        assert!(check.check(None).is_err());
        assert!(RequireToken::new(None).check(None).is_ok());
    }
}
