//! One client connection: pgwire's message loop (`pgwire::tokio::process_socket`), run here so
//! that the connection's write buffer can be sized for result streams.
//!
//! pgwire's framed socket flushes whenever 8 KiB are buffered: a full read of a 331k-row view
//! (16 MB of DataRows) became ~2,000 `sendto` calls, a third of the server's CPU for that
//! query. Rows now leave in writes of up to [`WRITE_BUFFER`] bytes. Small results are
//! unaffected: every response still ends in a flush (pgwire flushes after each message cycle).

use std::io;
use std::time::Duration;

use futures::StreamExt;
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;

/// Bytes buffered before the socket is written while rows stream out.
pub const WRITE_BUFFER: usize = 256 * 1024;

/// How long a client has to finish TLS negotiation and authentication (pgwire's own limit).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves one TCP connection until the client leaves or a FATAL error ends the session, as
/// `pgwire::tokio::process_socket` does.
pub async fn serve<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
) -> io::Result<()> {
    let startup = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup);
    let negotiated = tokio::select! {
        _ = &mut startup => return Ok(()),
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    // None: a direct TLS handshake without TLS configured; nothing to answer.
    let Some(mut socket) = negotiated else {
        return Ok(());
    };
    socket.set_backpressure_boundary(WRITE_BUFFER);

    let startup_handler = handlers.startup_handler();
    let simple_query_handler = handlers.simple_query_handler();
    let extended_query_handler = handlers.extended_query_handler();
    let copy_handler = handlers.copy_handler();
    let cancel_handler = handlers.cancel_handler();
    let error_handler = handlers.error_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let message = if starting {
            tokio::select! {
                _ = &mut startup => None,
                message = socket.next() => message,
            }
        } else {
            socket.next().await
        };
        let Some(Ok(message)) = message else {
            break;
        };
        // Terminate: close, so that clients that wait for the server to hang up (asyncpg) go.
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let cancel_request = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        if let Err(mut e) = process_message(
            message,
            &mut socket,
            startup_handler.clone(),
            simple_query_handler.clone(),
            extended_query_handler.clone(),
            copy_handler.clone(),
            cancel_handler.clone(),
        )
        .await
        {
            error_handler.on_error(&socket, &mut e);
            let fatal = e.is_fatal();
            process_error(&mut socket, e, extended).await?;
            if fatal {
                break;
            }
        }
        if cancel_request {
            break;
        }
    }
    Ok(())
}
