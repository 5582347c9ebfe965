//! Authentication and TLS of the Postgres wire server, through tokio-postgres and psql:
//! trust on loopback, SCRAM-SHA-256 (with channel binding over TLS), MD5 and cleartext
//! passwords, the refusal to serve a non-loopback address without authentication, and
//! `sslmode=require` clients.

use std::path::PathBuf;
use std::sync::Arc;

use tally_server::config::{AuthConfig, AuthMethod, TlsConfig, User};
use tally_server::{Config, Server};
use tally_tests::test_options;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::pg::{TestServer, code, simple_value};

/// The test certificate authority and the `localhost`/`127.0.0.1` certificate it signed.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(name)
}

fn tls_config(require: bool) -> Option<TlsConfig> {
    Some(TlsConfig {
        cert: fixture("server.crt"),
        key: fixture("server.key"),
        require,
    })
}

fn users(method: AuthMethod) -> AuthConfig {
    AuthConfig {
        method,
        users: vec![
            User {
                name: "alice".into(),
                password: "s3cret pass".into(),
            },
            User {
                name: "bob".into(),
                password: "hunter2".into(),
            },
        ],
    }
}

async fn start(auth: AuthConfig, tls: Option<TlsConfig>) -> TestServer {
    TestServer::start_with(Config {
        auth,
        tls,
        ..Config::default()
    })
    .await
}

fn conninfo(server: &TestServer, user: &str, password: Option<&str>, sslmode: &str) -> String {
    let mut info = format!(
        "host=127.0.0.1 port={} user={user} dbname=tally sslmode={sslmode}",
        server.addr.port()
    );
    if let Some(password) = password {
        info.push_str(&format!(" password='{password}'"));
    }
    info
}

/// Connects without TLS.
async fn connect_plain(
    server: &TestServer,
    user: &str,
    password: Option<&str>,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) =
        tokio_postgres::connect(&conninfo(server, user, password, "disable"), NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Connects over TLS, verifying the server certificate against the test CA.
async fn connect_tls(
    server: &TestServer,
    user: &str,
    password: Option<&str>,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(
        &conninfo(server, user, password, "require"),
        tls_connector(),
    )
    .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn tls_connector() -> MakeRustlsConnect {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(fixture("ca.crt")).expect("read the test CA");
    roots.add(ca).expect("add the test CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

/// The ErrorResponse a failed login gets: (SQLSTATE, message).
fn login_error(err: tokio_postgres::Error) -> (String, String) {
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_else(|| format!("not a server error: {err}"));
    (code(&err), message)
}

async fn assert_password_rejected(server: &TestServer, user: &str, password: &str) {
    let err = connect_plain(server, user, Some(password))
        .await
        .err()
        .unwrap_or_else(|| panic!("{user} logged in with a wrong password"));
    assert_eq!(
        login_error(err),
        (
            "28P01".to_string(),
            format!("password authentication failed for user \"{user}\"")
        )
    );
}

/// The server's first answer to a plaintext StartupMessage for `user`, read off the wire:
/// the Authentication request code (0 ok, 3 cleartext, 5 MD5, 10 SASL) and, for SASL, the
/// mechanisms offered.
async fn first_auth_request(server: &TestServer, user: &str) -> (i32, Vec<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut body = 196_608i32.to_be_bytes().to_vec(); // protocol 3.0
    for part in ["user", user, "database", "tally", ""] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    let mut message = (body.len() as i32 + 4).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    socket.write_all(&message).await.unwrap();
    let kind = socket.read_u8().await.unwrap();
    assert_eq!(kind, b'R', "an Authentication message");
    let len = socket.read_i32().await.unwrap() as usize;
    let mut payload = vec![0; len - 4];
    socket.read_exact(&mut payload).await.unwrap();
    let code = i32::from_be_bytes(payload[..4].try_into().unwrap());
    let mechanisms = if code == 10 {
        payload[4..]
            .split(|b| *b == 0)
            .filter(|m| !m.is_empty())
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    } else {
        vec![]
    };
    (code, mechanisms)
}

#[tokio::test]
async fn each_method_asks_for_its_own_kind_of_password() {
    let server = TestServer::start().await;
    assert_eq!(first_auth_request(&server, "x").await, (0, vec![]));
    server.stop().await;
    let server = start(users(AuthMethod::ScramSha256), tls_config(false)).await;
    // Without TLS there is no channel to bind: SCRAM-SHA-256 only, for known and unknown users.
    for user in ["alice", "mallory"] {
        assert_eq!(
            first_auth_request(&server, user).await,
            (10, vec!["SCRAM-SHA-256".to_string()])
        );
    }
    server.stop().await;
    let server = start(users(AuthMethod::Md5), None).await;
    assert_eq!(first_auth_request(&server, "alice").await.0, 5);
    server.stop().await;
    let server = start(users(AuthMethod::Password), None).await;
    assert_eq!(first_auth_request(&server, "alice").await.0, 3);
    server.stop().await;
}

/// Runs psql with a connection string (and a password, if any) and returns its stdout.
async fn psql(conninfo: String, password: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut command = std::process::Command::new("psql");
    command
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &conninfo])
        .args(args)
        .env_remove("PGPASSWORD")
        .env_remove("PGSSLMODE")
        .env("PGCONNECT_TIMEOUT", "10");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("psql: {e} (install postgresql-client: scripts/setup.sh)"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn trust_is_the_default_on_loopback() {
    let server = TestServer::start().await;
    for user in ["tally", "anyone"] {
        let client = connect_plain(&server, user, None).await.unwrap();
        assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    }
    server.stop().await;
}

#[tokio::test]
async fn scram_accepts_the_right_password_and_rejects_a_wrong_one() {
    let server = start(users(AuthMethod::ScramSha256), None).await;
    let alice = connect_plain(&server, "alice", Some("s3cret pass"))
        .await
        .unwrap();
    assert_eq!(simple_value(&alice, "SELECT 1 + 1").await, "2");
    let bob = connect_plain(&server, "bob", Some("hunter2"))
        .await
        .unwrap();
    assert_eq!(simple_value(&bob, "SELECT 'bob'").await, "bob");
    assert_password_rejected(&server, "alice", "hunter2").await;
    assert_password_rejected(&server, "alice", "").await;
    // An unknown user gets exactly the answer a wrong password gets.
    assert_password_rejected(&server, "mallory", "s3cret pass").await;
    // A failed login leaves the server and other sessions alone.
    assert_eq!(simple_value(&alice, "SELECT 3").await, "3");
    server.stop().await;
}

#[tokio::test]
async fn a_connection_without_a_password_is_refused() {
    let server = start(users(AuthMethod::ScramSha256), None).await;
    // tokio-postgres gives up before sending anything; the server never lets it in.
    assert!(connect_plain(&server, "alice", None).await.is_err());
    let err = psql(
        conninfo(&server, "alice", None, "disable"),
        None,
        &["-c", "SELECT 1"],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("password") && !err.contains("(1 row)"),
        "psql without a password: {err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn md5_when_configured() {
    let server = start(users(AuthMethod::Md5), None).await;
    let alice = connect_plain(&server, "alice", Some("s3cret pass"))
        .await
        .unwrap();
    assert_eq!(simple_value(&alice, "SELECT 1").await, "1");
    assert_password_rejected(&server, "alice", "wrong").await;
    assert_password_rejected(&server, "nobody", "wrong").await;
    let out = psql(
        conninfo(&server, "bob", None, "disable"),
        Some("hunter2"),
        &["-c", "SELECT 42"],
    )
    .await
    .unwrap();
    assert_eq!(out.trim(), "42");
    server.stop().await;
}

#[tokio::test]
async fn cleartext_password_when_configured() {
    let server = start(users(AuthMethod::Password), None).await;
    let bob = connect_plain(&server, "bob", Some("hunter2"))
        .await
        .unwrap();
    assert_eq!(simple_value(&bob, "SELECT 1").await, "1");
    assert_password_rejected(&server, "bob", "hunter3").await;
    assert_password_rejected(&server, "nobody", "hunter2").await;
    let err = psql(
        conninfo(&server, "alice", None, "disable"),
        Some("nope"),
        &["-c", "SELECT 1"],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("password authentication failed for user \"alice\""),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_non_loopback_address_without_auth_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tally.toml");
    std::fs::write(
        &file,
        format!(
            "data = {:?}\nlisten = \"0.0.0.0:0\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let config = Config::resolve(None, None, Some(&file)).unwrap();
    // `tally serve` prints this error and exits with status 1.
    let err = Server::bind(&config, test_options())
        .await
        .err()
        .expect("serving 0.0.0.0 without authentication must fail");
    assert!(err.contains("refusing to listen on 0.0.0.0:0"), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(
        err.contains("[[auth.users]]"),
        "the message says how: {err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created before the refusal"
    );

    // With users, the same address passes the check (SCRAM by default).
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:5433\"\n[[auth.users]]\nname = \"app\"\npassword = \"pw\"\n",
    )
    .unwrap();
    let config = Config::resolve(None, None, Some(&file)).unwrap();
    assert_eq!(config.auth.method, AuthMethod::ScramSha256);
    config.check().unwrap();
    // Passwords never show in logs or debug output.
    assert!(!format!("{config:?}").contains("pw\""), "{config:?}");
}

#[test]
fn auth_and_tls_config_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tally.toml");
    let resolve = |text: &str| {
        std::fs::write(&file, text).unwrap();
        Config::resolve(None, None, Some(&file)).and_then(|c| c.check().map(|()| c))
    };
    let config = resolve(
        "[auth]\nmethod = \"md5\"\n[[auth.users]]\nname = \"a\"\npassword = \"b\"\n\
         [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nrequire = true\n",
    )
    .unwrap();
    assert_eq!(config.auth.method, AuthMethod::Md5);
    let tls = config.tls.unwrap();
    assert_eq!(
        (tls.cert, tls.key, tls.require),
        ("c.pem".into(), "k.pem".into(), true)
    );
    let err = resolve("[auth]\nmethod = \"scram-sha-256\"\n").unwrap_err();
    assert!(err.contains("needs at least one user"), "{err}");
    let err =
        resolve("[auth]\nmethod = \"trust\"\n[[auth.users]]\nname = \"a\"\npassword = \"b\"\n")
            .unwrap_err();
    assert!(err.contains("trust"), "{err}");
    let err = resolve("[[auth.users]]\nname = \"a\"\npassword = \"\"\n").unwrap_err();
    assert!(err.contains("empty password"), "{err}");
    let err = resolve("[auth]\nmethod = \"kerberos\"\n").unwrap_err();
    assert!(err.contains("unknown variant"), "{err}");

    // Flags complete or override the file's [tls].
    let config = Config::default()
        .with_tls_files(Some("a.crt".into()), Some("a.key".into()))
        .unwrap();
    assert_eq!(config.tls.unwrap().cert, PathBuf::from("a.crt"));
    let err = Config::default()
        .with_tls_files(Some("a.crt".into()), None)
        .unwrap_err();
    assert!(err.contains("both a certificate and a key"), "{err}");
}

#[tokio::test]
async fn a_missing_or_bad_certificate_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let config = |cert: PathBuf, key: PathBuf| Config {
        data: dir.path().join("data"),
        listen: "127.0.0.1:0".into(),
        tls: Some(TlsConfig {
            cert,
            key,
            require: false,
        }),
        ..Config::default()
    };
    let missing = config(dir.path().join("nope.crt"), fixture("server.key"));
    let err = Server::bind(&missing, test_options()).await.err().unwrap();
    assert!(err.contains("cannot read TLS certificate"), "{err}");
    // The key of another certificate (the CA's certificate is no key at all).
    let wrong = config(fixture("server.crt"), fixture("ca.crt"));
    let err = Server::bind(&wrong, test_options()).await.err().unwrap();
    assert!(err.contains("private key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_connect_and_plaintext_still_works() {
    let server = start(AuthConfig::default(), tls_config(false)).await;
    let client = connect_tls(&server, "tally", None).await.unwrap();
    client
        .batch_execute("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    assert_eq!(simple_value(&client, "SELECT sum(x) FROM t").await, "3");
    let plain = connect_plain(&server, "tally", None).await.unwrap();
    assert_eq!(simple_value(&plain, "SELECT count(*) FROM t").await, "2");

    // psql: sslmode=require encrypts; verify-full also checks the certificate and host name.
    let info = conninfo(&server, "tally", None, "require");
    let out = psql(info, None, &["-c", "\\conninfo", "-c", "SELECT 7"])
        .await
        .unwrap();
    assert!(out.contains("SSL connection"), "{out}");
    assert!(out.contains('7'), "{out}");
    let verify = format!(
        "host=localhost port={} user=tally dbname=tally sslmode=verify-full sslrootcert={}",
        server.addr.port(),
        fixture("ca.crt").display()
    );
    let out = psql(verify, None, &["-c", "SELECT count(*) FROM t"])
        .await
        .unwrap();
    assert_eq!(out.trim(), "2");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_over_tls_binds_the_channel() {
    let server = start(users(AuthMethod::ScramSha256), tls_config(false)).await;
    // tokio-postgres-rustls offers tls-server-end-point binding: SCRAM-SHA-256-PLUS.
    let alice = connect_tls(&server, "alice", Some("s3cret pass"))
        .await
        .unwrap();
    assert_eq!(simple_value(&alice, "SELECT 1").await, "1");
    let err = connect_tls(&server, "alice", Some("bad"))
        .await
        .err()
        .unwrap();
    assert_eq!(login_error(err).0, "28P01");
    // psql can insist on channel binding, which only SCRAM-SHA-256-PLUS provides.
    let info = format!(
        "{} channel_binding=require",
        conninfo(&server, "bob", None, "require")
    );
    let out = psql(info, Some("hunter2"), &["-c", "SELECT 5"])
        .await
        .unwrap();
    assert_eq!(out.trim(), "5");
    // Without TLS the server offers plain SCRAM-SHA-256, which libpq accepts.
    let bob = connect_plain(&server, "bob", Some("hunter2"))
        .await
        .unwrap();
    assert_eq!(simple_value(&bob, "SELECT 6").await, "6");
    let out = psql(
        conninfo(&server, "bob", None, "disable"),
        Some("hunter2"),
        &["-c", "SELECT 8"],
    )
    .await
    .unwrap();
    assert_eq!(out.trim(), "8");
    server.stop().await;
}

#[tokio::test]
async fn tls_can_be_required() {
    let server = start(AuthConfig::default(), tls_config(true)).await;
    let err = connect_plain(&server, "tally", None).await.err().unwrap();
    let (code, message) = login_error(err);
    assert_eq!(code, "28000");
    assert!(message.contains("sslmode=require"), "{message}");
    let client = connect_tls(&server, "tally", None).await.unwrap();
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    server.stop().await;
}
