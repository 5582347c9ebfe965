//! Refusing a connection past `max_connections` the way PostgreSQL does: read the client's
//! startup packet (answering `N` to an SSL or GSSAPI encryption request first), then send one
//! `FATAL` ErrorResponse with SQLSTATE 53300, `sorry, too many clients already`, and close.
//! Clients (libpq, drivers) show that message instead of a dropped connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// PostgreSQL's SQLSTATE for too many connections.
pub const TOO_MANY_CONNECTIONS: &str = "53300";

/// How long a refused client may take to send its startup packet.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest startup packet read (PostgreSQL's limit is 10,000 bytes).
const MAX_STARTUP_PACKET: u32 = 10_000;

/// Request codes of the startup phase that ask for encryption first.
const SSL_REQUEST: u32 = 80_877_103;
const GSS_ENC_REQUEST: u32 = 80_877_104;

/// Answers the client's startup with the too-many-connections error and closes the socket.
/// Gives up quietly when the client is slow or sends something else.
pub async fn too_many_clients(mut socket: TcpStream) {
    let refused = tokio::time::timeout(STARTUP_TIMEOUT, async {
        // At most one encryption request per kind precedes the startup packet.
        for _ in 0..3 {
            let mut header = [0u8; 8];
            socket.read_exact(&mut header).await?;
            let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let code = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            if length == 8 && (code == SSL_REQUEST || code == GSS_ENC_REQUEST) {
                socket.write_all(b"N").await?;
                continue;
            }
            if !(8..=MAX_STARTUP_PACKET).contains(&length) {
                return Ok(());
            }
            let mut rest = vec![0u8; length as usize - 8];
            socket.read_exact(&mut rest).await?;
            socket.write_all(&error_response()).await?;
            socket.shutdown().await?;
            return Ok(());
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if let Ok(Err(e)) = refused {
        tracing::debug!("refusing a connection past max_connections: {e}");
    }
}

/// The ErrorResponse message: severity, SQLSTATE and message fields.
fn error_response() -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', TOO_MANY_CONNECTIONS),
        (b'M', "sorry, too many clients already"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_response_is_well_formed() {
        let message = error_response();
        assert_eq!(message[0], b'E');
        let length = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
        assert_eq!(length as usize, message.len() - 1);
        assert!(message.ends_with(b"sorry, too many clients already\0\0"));
    }
}
