//! Connection startup: authentication, cancel registration and server parameters.
//!
//! The method comes from [`AuthConfig`]: `trust` (loopback only, see
//! [`crate::Config::check`]), SCRAM-SHA-256, MD5 or a cleartext password. pgwire's mechanisms
//! run the exchanges; this module supplies the credentials and turns failures into
//! PostgreSQL's own error: FATAL 28P01 `password authentication failed for user "…"`, the same
//! for an unknown user as for a wrong password.
//!
//! The handler keeps no passwords: at startup each becomes a SCRAM verifier (salted, 4096 PBKDF2
//! iterations, as PostgreSQL stores it) and the MD5 digest `md5(password || user)`. A cleartext
//! password is checked against the verifier.

use std::collections::HashMap;
use std::fmt::{self, Debug};
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::md5pass::Md5PasswordAuth;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::gen_salted_password;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, ScramAuth, ScramSecret};
use pgwire::api::auth::{
    AuthDriver, AuthOutcome, AuthSource, DefaultServerParameterProvider, LoginInfo, Password,
    StartupHandler, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, ConnectionManager};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult, SEVERITY_FATAL};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::tokio_rustls::rustls;

use super::SERVER_VERSION;
use crate::config::{AuthConfig, AuthMethod};

/// SQLSTATE of a failed password check (`invalid_password`).
const INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE of a connection the server does not accept (`invalid_authorization_specification`).
const INVALID_AUTHORIZATION: &str = "28000";

/// How connections authenticate: the configured method over the users' derived secrets.
pub struct Login {
    method: AuthMethod,
    require_tls: bool,
    mechanism: Mechanism,
}

/// pgwire's mechanism factory (or two, for SCRAM) for the configured method.
enum Mechanism {
    Trust,
    Scram {
        /// SCRAM-SHA-256 only: plaintext connections (libpq refuses a server that offers
        /// SCRAM-SHA-256-PLUS without TLS).
        plain: Arc<dyn AuthMechanismFactory>,
        /// SCRAM-SHA-256 and, when the certificate allows `tls-server-end-point` binding,
        /// SCRAM-SHA-256-PLUS: TLS connections.
        tls: Arc<dyn AuthMechanismFactory>,
    },
    Other(Arc<dyn AuthMechanismFactory>),
}

impl Login {
    /// Derives the users' secrets (a PBKDF2 per user, so call it once at startup).
    /// `cert_pem` is the TLS certificate, which SCRAM channel binding hashes.
    pub fn new(config: &AuthConfig, cert_pem: Option<&[u8]>, require_tls: bool) -> Login {
        let users = || Arc::new(Users::new(config));
        let mechanism = match config.method {
            AuthMethod::Trust => Mechanism::Trust,
            AuthMethod::ScramSha256 => {
                let mut plain = ScramAuth::new(users() as Arc<dyn AuthSource>);
                plain.set_iterations(SCRAM_ITERATIONS);
                let mut tls = plain.clone();
                if let Some(pem) = cert_pem
                    && let Err(e) = tls.configure_certificate(pem)
                {
                    // SCRAM-SHA-256 still works over TLS; only the binding is lost.
                    tracing::warn!("SCRAM channel binding is off: {e}");
                }
                Mechanism::Scram {
                    plain: Arc::new(plain),
                    tls: Arc::new(tls),
                }
            }
            AuthMethod::Md5 => Mechanism::Other(Arc::new(Md5PasswordAuth::new(users()))),
            AuthMethod::Password => Mechanism::Other(Arc::new(CleartextPasswordAuth::new(users()))),
        };
        Login {
            method: config.method,
            require_tls,
            mechanism,
        }
    }
}

/// The startup handler shared by all connections: authenticates with the configured method,
/// then registers the connection for cancel requests and reports Tally's server parameters.
pub struct Startup {
    login: Login,
    driver: AuthDriver<DefaultServerParameterProvider>,
}

impl Startup {
    /// A handler that registers connections with `manager` (for cancel requests).
    pub fn new(login: Login, manager: Arc<ConnectionManager>) -> Startup {
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = format!("{SERVER_VERSION} (Tally {})", env!("CARGO_PKG_VERSION"));
        params.time_zone = "UTC".into();
        params.date_style = "ISO, MDY".into();
        Startup {
            login,
            driver: AuthDriver::new(params).with_connection_manager(manager),
        }
    }

    async fn finish<C>(&self, client: &mut C, outcome: AuthOutcome) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let AuthOutcome::Authenticated { final_message, .. } = outcome {
            self.driver
                .complete_authentication(client, final_message)
                .await?;
            tracing::debug!(
                "connection from {} (user {:?}, {}, {})",
                client.socket_addr(),
                client.metadata().get("user"),
                self.login.method,
                if client.is_secure() { "TLS" } else { "no TLS" },
            );
        }
        Ok(())
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.login.require_tls && !client.is_secure() {
                    return Err(fatal(
                        INVALID_AUTHORIZATION,
                        "this server accepts only TLS connections: connect with sslmode=require"
                            .into(),
                    ));
                }
                let factory = match &self.login.mechanism {
                    Mechanism::Trust => None,
                    Mechanism::Scram { tls, .. } if client.is_secure() => Some(tls),
                    Mechanism::Scram { plain, .. } => Some(plain),
                    Mechanism::Other(factory) => Some(factory),
                };
                match factory {
                    None => Ok(AuthOutcome::Authenticated {
                        identity: None,
                        final_message: None,
                    }),
                    Some(_) if client.metadata().get("user").is_none() => {
                        return Err(PgWireError::UserNameRequired);
                    }
                    Some(factory) => {
                        self.driver
                            .begin_authentication(client, factory.create())
                            .await
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                self.driver.advance_authentication(client, message).await
            }
            _ => return Ok(()),
        };
        match outcome {
            Ok(outcome) => self.finish(client, outcome).await,
            Err(PgWireError::InvalidPassword(_)) => {
                // The SCRAM exchange carries no user name (libpq sends `n=`): use the startup's.
                let user = client.metadata().get("user").cloned().unwrap_or_default();
                tracing::info!(
                    "password authentication failed for user {user:?} from {} ({})",
                    client.socket_addr(),
                    self.login.method
                );
                Err(fatal(
                    INVALID_PASSWORD,
                    format!("password authentication failed for user \"{user}\""),
                ))
            }
            Err(e) => Err(e),
        }
    }
}

/// A FATAL error at startup (PostgreSQL closes the connection after it).
fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        SEVERITY_FATAL.into(),
        code.into(),
        message,
    )))
}

/// The configured users' secrets, derived from their passwords at startup.
struct Users {
    by_name: HashMap<String, Secrets>,
    /// Seeds the salts of made-up verifiers for unknown users, so that a user's salt does not
    /// tell whether the user exists and is the same on every attempt.
    unknown_seed: [u8; 32],
}

/// What is kept of one password.
struct Secrets {
    salt: Vec<u8>,
    /// SCRAM `StoredKey = H(HMAC(SaltedPassword, "Client Key"))`.
    stored_key: Vec<u8>,
    /// SCRAM `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    server_key: Vec<u8>,
    /// Hex of `md5(password || user)`, as PostgreSQL's `md5…` password hashes.
    md5: String,
}

impl Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material, only who is configured.
        f.debug_struct("Users")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Users {
    fn new(config: &AuthConfig) -> Users {
        let by_name = config
            .users
            .iter()
            .map(|user| {
                let salt = random_bytes::<16>().to_vec();
                let salted = gen_salted_password(&user.password, &salt, SCRAM_ITERATIONS);
                let ScramSecret::Verifier {
                    stored_key,
                    server_key,
                    ..
                } = ScramSecret::verifier_from_salted_password(
                    salt.clone(),
                    salted,
                    SCRAM_ITERATIONS,
                )
                else {
                    unreachable!("verifier_from_salted_password returns a verifier")
                };
                let md5 = format!(
                    "{:x}",
                    md5::compute(format!("{}{}", user.password, user.name))
                );
                let secrets = Secrets {
                    salt,
                    stored_key,
                    server_key,
                    md5,
                };
                (user.name.clone(), secrets)
            })
            .collect();
        Users {
            by_name,
            unknown_seed: random_bytes(),
        }
    }

    fn get(&self, login: &LoginInfo) -> Option<&Secrets> {
        self.by_name.get(login.user()?)
    }

    /// A salt for a user that does not exist: the same for every attempt with that name.
    fn unknown_salt(&self, login: &LoginInfo) -> Vec<u8> {
        let user = login.user().unwrap_or_default();
        gen_salted_password(user, &self.unknown_seed, 1)[..16].to_vec()
    }

    fn invalid(login: &LoginInfo) -> PgWireError {
        PgWireError::InvalidPassword(login.user().unwrap_or_default().to_owned())
    }
}

#[async_trait]
impl AuthSource for Users {
    /// For MD5: a fresh 4-byte salt and the response expected for it.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let salt = random_bytes::<4>().to_vec();
        let expected = match self.get(login) {
            Some(secrets) => {
                let mut input = secrets.md5.clone().into_bytes();
                input.extend_from_slice(&salt);
                format!("md5{:x}", md5::compute(input))
            }
            // An unknown user still gets a challenge; no response can match this one.
            None => format!("unknown user {:x?}", random_bytes::<16>()),
        };
        Ok(Password::new(Some(salt), expected.into_bytes()))
    }

    /// For cleartext passwords: derive the SCRAM stored key from the presented password.
    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented_password: &[u8],
    ) -> PgWireResult<Option<()>> {
        let presented = String::from_utf8_lossy(presented_password);
        let (salt, expected) = match self.get(login) {
            Some(secrets) => (secrets.salt.clone(), Some(&secrets.stored_key)),
            None => (self.unknown_salt(login), None),
        };
        // The PBKDF2 runs for unknown users too, so the answer takes as long.
        let salted = gen_salted_password(&presented, &salt, SCRAM_ITERATIONS);
        let ScramSecret::Verifier { stored_key, .. } =
            ScramSecret::verifier_from_salted_password(salt, salted, SCRAM_ITERATIONS)
        else {
            unreachable!("verifier_from_salted_password returns a verifier")
        };
        match expected {
            Some(expected) if constant_time_eq(expected, &stored_key) => Ok(None),
            _ => Err(Users::invalid(login)),
        }
    }

    /// For SCRAM: the user's verifier, or for an unknown user a made-up one that no proof
    /// matches, so the exchange fails at the same step as with a wrong password.
    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let secret = match self.get(login) {
            Some(secrets) => ScramSecret::Verifier {
                salt: secrets.salt.clone(),
                iterations: SCRAM_ITERATIONS,
                stored_key: secrets.stored_key.clone(),
                server_key: secrets.server_key.clone(),
            },
            None => ScramSecret::Verifier {
                salt: self.unknown_salt(login),
                iterations: SCRAM_ITERATIONS,
                stored_key: random_bytes::<32>().to_vec(),
                server_key: random_bytes::<32>().to_vec(),
            },
        };
        Ok((secret, None))
    }
}

/// Random bytes from the operating system (through rustls' ring provider).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .expect("the operating system's random number generator works");
    bytes
}

/// Compares secrets in time that depends only on their length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use pgwire::api::auth::md5pass::hash_md5_password;

    use super::*;
    use crate::config::User;

    fn users() -> Users {
        Users::new(&AuthConfig {
            method: AuthMethod::Md5,
            users: vec![User {
                name: "alice".into(),
                password: "pa55 wörd".into(),
            }],
        })
    }

    fn login(user: &str) -> LoginInfo<'_> {
        LoginInfo::new(Some(user), Some("tally"), "127.0.0.1".into())
    }

    #[tokio::test]
    async fn md5_expects_what_libpq_computes() {
        let users = users();
        let challenge = users.get_password(&login("alice")).await.unwrap();
        let salt = challenge.salt().unwrap();
        assert_eq!(salt.len(), 4);
        let response = hash_md5_password("alice", "pa55 wörd", salt);
        assert_eq!(challenge.password(), response.as_bytes());
        // An unknown user's challenge matches no response, not even the empty one.
        let challenge = users.get_password(&login("bob")).await.unwrap();
        let response = hash_md5_password("bob", "pa55 wörd", challenge.salt().unwrap());
        assert_ne!(challenge.password(), response.as_bytes());
        assert!(!challenge.password().is_empty());
    }

    #[tokio::test]
    async fn cleartext_is_checked_against_the_scram_verifier() {
        let users = users();
        assert!(
            users
                .verify_password(&login("alice"), "pa55 wörd".as_bytes())
                .await
                .is_ok()
        );
        for (user, password) in [("alice", "pa55 word"), ("alice", ""), ("bob", "pa55 wörd")] {
            let err = users
                .verify_password(&login(user), password.as_bytes())
                .await
                .unwrap_err();
            assert!(matches!(err, PgWireError::InvalidPassword(ref u) if u == user));
        }
    }

    #[tokio::test]
    async fn unknown_users_get_a_stable_salt() {
        let users = users();
        let salt = |secret: ScramSecret| match secret {
            ScramSecret::Verifier { salt, .. } => salt,
            ScramSecret::SaltedPassword { salt, .. } => salt,
        };
        let first = salt(users.get_scram_secret(&login("bob")).await.unwrap().0);
        let again = salt(users.get_scram_secret(&login("bob")).await.unwrap().0);
        let other = salt(users.get_scram_secret(&login("carol")).await.unwrap().0);
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert_eq!(first.len(), 16);
    }
}
