//! The OAuth2 authorization-code flow with PKCE, and token refresh, through
//! the `oauth2` crate over the host's own HTTP client.

use std::future::Future;
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

/// The host's HTTP client for the token endpoint, within `timeout`.
fn sender(
    timeout: Duration,
) -> impl Fn(
    HttpRequest,
) -> std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, FetchError>> + Send>> {
    move |request| Box::pin(fetch(request, timeout))
}

/// What a failed token request means for the account: only the provider's
/// own refusal of the grant is final; an outage, a timeout or an answer
/// that is not a token says nothing about the account.
fn classify<E: std::error::Error>(
    err: RequestTokenError<E, oauth2::basic::BasicErrorResponse>,
) -> TokenError {
    match err {
        RequestTokenError::ServerResponse(response) => {
            let text = match response.error_description() {
                Some(description) => format!("{}: {description}", response.error()),
                None => response.error().to_string(),
            };
            match response.error() {
                BasicErrorResponseType::Extension(code)
                    if code == "temporarily_unavailable" || code == "server_error" =>
                {
                    TokenError::Unavailable(format!("the token endpoint answered {text}"))
                }
                _ => TokenError::Rejected(text),
            }
        }
        RequestTokenError::Request(err) => {
            TokenError::Unavailable(format!("token endpoint unreachable: {err}"))
        }
        RequestTokenError::Parse(err, _) => TokenError::Unavailable(format!(
            "token endpoint answered something else than a token: {err}"
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
    let response = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
        .request_async(&sender(settings.timeout))
        .await
        .map_err(|err| classify(err).to_string())?;
    Ok(tokens(&response))
}

/// Trades a refresh token for a new access token.
pub async fn refresh(settings: &ClientSettings, refresh_token: &str) -> Result<Tokens, TokenError> {
    let client =
        (|| -> Result<_, String> { Ok(client!(settings)) })().map_err(TokenError::Rejected)?;
    let response = client
        .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
        .request_async(&sender(settings.timeout))
        .await
        .map_err(classify)?;
    Ok(tokens(&response))
}
