//! The OAuth2 authorization-code flow with PKCE, and token refresh, through
//! the `oauth2` crate over the host's own HTTP client.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    TokenResponse, TokenUrl,
};

use crate::runtime::{FetchError, TokenError, fetch};

/// What a provider's token endpoint gave.
pub struct Tokens {
    /// The access token.
    pub access_token: String,
    /// A refresh token, when the provider issued one.
    pub refresh_token: Option<String>,
    /// Lifetime of the access token.
    pub expires_in: Option<Duration>,
}

/// The settings of an OAuth2 client.
pub struct ClientSettings {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// The provider's authorization URL.
    pub authorize_url: String,
    /// The provider's token URL.
    pub token_url: String,
    /// Our callback URL.
    pub redirect_url: String,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
    /// The whole exchange with the token endpoint, connection included.
    pub timeout: Duration,
}

/// The host's HTTP client for the token endpoint, within `timeout`; the
/// status of the last answer goes to `status`.
fn sender(
    timeout: Duration,
    status: Arc<AtomicU16>,
) -> impl Fn(
    HttpRequest,
) -> std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, FetchError>> + Send>> {
    move |request| {
        let status = status.clone();
        Box::pin(async move {
            let response = fetch(request, timeout).await?;
            status.store(response.status().as_u16(), Ordering::Relaxed);
            Ok(response)
        })
    }
}

/// What a failed token request means for the account: only the provider's
/// own refusal of the grant is final; an outage, a timeout, a rate limit
/// or an answer that is not a token says nothing about the account.
fn classify<E: std::error::Error>(
    err: RequestTokenError<E, oauth2::basic::BasicErrorResponse>,
    status: u16,
) -> TokenError {
    let overloaded = status == 429 || status >= 500;
    match err {
        RequestTokenError::ServerResponse(response) => {
            let text = match response.error_description() {
                Some(description) => format!("{}: {description}", response.error()),
                None => response.error().to_string(),
            };
            let transient_code = matches!(
                response.error(),
                BasicErrorResponseType::Extension(code)
                    if ["temporarily_unavailable", "server_error", "slow_down"].contains(&code.as_str())
            );
            if overloaded || transient_code {
                TokenError::Unavailable(format!("the token endpoint answered {status} {text}"))
            } else {
                TokenError::Rejected(text)
            }
        }
        RequestTokenError::Request(err) => {
            TokenError::Unavailable(format!("token endpoint unreachable: {err}"))
        }
        RequestTokenError::Parse(err, _) => TokenError::Unavailable(format!(
            "token endpoint answered {status} with something else than a token: {err}"
        )),
        RequestTokenError::Other(message) => TokenError::Unavailable(message),
    }
}

macro_rules! client {
    ($settings:expr) => {{
        let settings = $settings;
        let auth_url = AuthUrl::new(settings.authorize_url.clone())
            .map_err(|err| format!("authorize_url: {err}"))?;
        let token_url =
            TokenUrl::new(settings.token_url.clone()).map_err(|err| format!("token_url: {err}"))?;
        let redirect = RedirectUrl::new(settings.redirect_url.clone())
            .map_err(|err| format!("redirect url: {err}"))?;
        BasicClient::new(ClientId::new(settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(settings.client_secret.clone()))
            .set_auth_uri(auth_url)
            .set_token_uri(token_url)
            .set_redirect_uri(redirect)
    }};
}

/// The URL to send the user to, the CSRF state, and the PKCE verifier.
pub fn authorize_url(settings: &ClientSettings) -> Result<(String, String, String), String> {
    let client = client!(settings);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(settings.scopes.iter().cloned().map(oauth2::Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    Ok((
        url.to_string(),
        state.secret().clone(),
        verifier.secret().clone(),
    ))
}

fn tokens(response: &oauth2::basic::BasicTokenResponse) -> Tokens {
    Tokens {
        access_token: response.access_token().secret().clone(),
        refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        expires_in: response.expires_in(),
    }
}

/// Exchanges an authorization code (with its PKCE verifier) for tokens.
pub async fn exchange_code(
    settings: &ClientSettings,
    code: &str,
    verifier: &str,
) -> Result<Tokens, String> {
    let client = client!(settings);
    let status = Arc::new(AtomicU16::new(0));
    let response = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
        .request_async(&sender(settings.timeout, status.clone()))
        .await
        .map_err(|err| classify(err, status.load(Ordering::Relaxed)).to_string())?;
    Ok(tokens(&response))
}

/// Trades a refresh token for a new access token.
pub async fn refresh(settings: &ClientSettings, refresh_token: &str) -> Result<Tokens, TokenError> {
    let client =
        (|| -> Result<_, String> { Ok(client!(settings)) })().map_err(TokenError::Rejected)?;
    let status = Arc::new(AtomicU16::new(0));
    let response = client
        .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
        .request_async(&sender(settings.timeout, status.clone()))
        .await
        .map_err(|err| classify(err, status.load(Ordering::Relaxed)))?;
    Ok(tokens(&response))
}

#[cfg(test)]
mod tests {
    use oauth2::StandardErrorResponse;

    use super::*;

    fn refused(
        code: BasicErrorResponseType,
    ) -> RequestTokenError<FetchError, oauth2::basic::BasicErrorResponse> {
        RequestTokenError::ServerResponse(StandardErrorResponse::new(code, None, None))
    }

    #[test]
    fn only_the_providers_refusal_of_the_grant_is_final() {
        use BasicErrorResponseType as Code;
        for code in [
            Code::InvalidGrant,
            Code::InvalidClient,
            Code::UnauthorizedClient,
        ] {
            assert!(
                matches!(
                    classify(refused(code.clone()), 400),
                    TokenError::Rejected(_)
                ),
                "{code:?} at 400"
            );
        }
        // The same codes from an overloaded endpoint say nothing about the
        // account, and neither do the codes of an outage.
        for status in [429, 500, 503] {
            assert!(matches!(
                classify(refused(Code::InvalidRequest), status),
                TokenError::Unavailable(_)
            ));
        }
        for code in ["temporarily_unavailable", "server_error", "slow_down"] {
            assert!(matches!(
                classify(refused(Code::Extension(code.into())), 400),
                TokenError::Unavailable(_)
            ));
        }
        assert!(matches!(
            classify(
                RequestTokenError::<FetchError, _>::Other("timed out".into()),
                0
            ),
            TokenError::Unavailable(_)
        ));
    }
}
