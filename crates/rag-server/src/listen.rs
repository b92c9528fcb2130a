//! The accept loop: what a slow, idle or vanished client may cost.
//!
//! `axum::serve` gives hyper no timer, so a connection that trickles its headers, or sits idle
//! after a response, is kept for ever, and nothing caps how many are open. Here every
//! connection is served by hyper's HTTP/1 with a timer and
//!
//! * a **header-read timeout**: a request head must arrive whole within
//!   `server.header_read_timeout_secs` of the connection opening or of its previous response,
//!   which closes both slowloris clients and idle keep-alive connections;
//! * a **write timeout**: a response write that makes no progress for
//!   `server.write_timeout_secs` (a client that stopped reading) closes the connection;
//! * a **connection cap**: at most `server.max_connections` are open (lowered to fit the
//!   process's open-file limit); past it the server stops accepting until one closes, so new
//!   clients wait in the kernel's backlog instead of the process running out of descriptors.
//!
//! Shutdown stops accepting at once and lets open connections finish their requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// File descriptors kept for everything but client connections (stores, models, logs).
pub const RESERVED_DESCRIPTORS: usize = 128;

/// What one connection may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// See `server.header_read_timeout_secs`.
    pub header_read_timeout: Duration,
    /// See `server.write_timeout_secs`.
    pub write_timeout: Duration,
    /// Connections open at once (already fitted to the open-file limit).
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The limits of `cfg`, with `max_connections` lowered to leave [`RESERVED_DESCRIPTORS`]
    /// of the process's open-file limit (`ulimit -n`) free; a lowered cap is logged.
    pub fn new(cfg: &rag::config::ServerConfig) -> Self {
        let open_files = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let max_connections = fit_to_open_files(cfg.max_connections, open_files);
        if max_connections < cfg.max_connections {
            tracing::warn!(
                configured = cfg.max_connections,
                open_file_limit = open_files,
                max_connections,
                "server.max_connections lowered to fit the open-file limit (raise `ulimit -n` to serve more)"
            );
        }
        Self {
            header_read_timeout: Duration::from_secs(cfg.header_read_timeout_secs),
            write_timeout: Duration::from_secs(cfg.write_timeout_secs),
            max_connections,
        }
    }
}

/// `wanted` connections, or fewer so that they and [`RESERVED_DESCRIPTORS`] fit in an open-file
/// limit of `open_files` (`None`: unlimited); at least 8.
pub fn fit_to_open_files(wanted: usize, open_files: Option<u64>) -> usize {
    match open_files {
        Some(limit) => {
            let room = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(RESERVED_DESCRIPTORS);
            wanted.min(room.max(8))
        }
        None => wanted,
    }
}

/// Connections the kernel holds for the server while it is at its cap (the listen backlog;
/// the system's `net.core.somaxconn` may lower it). Past the backlog the kernel drops new
/// handshakes, and a client that sends nothing is left believing it is connected.
pub const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`] (std's is 128).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std's `TcpListener::bind` does on Unix: a restarted server may rebind at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting and waits for the
/// open connections to finish their requests (the caller bounds that wait).
pub async fn serve(listener: TcpListener, app: Router, limits: ConnectionLimits, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first, then the connection: at the cap, new clients wait in the backlog.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was accepted: wait a
                    // little (as axum does) rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let mut io = tokio_io_timeout::TimeoutStream::new(stream);
        io.set_write_timeout(Some(limits.write_timeout));
        let io = TokioIo::new(Box::pin(io));
        let service = TowerToHyperService::new(app.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true)
            .serve_connection(io, service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_open_file_limit() {
        assert_eq!(fit_to_open_files(1024, None), 1024);
        assert_eq!(fit_to_open_files(1024, Some(1_048_576)), 1024);
        assert_eq!(fit_to_open_files(1024, Some(256)), 256 - RESERVED_DESCRIPTORS);
        assert_eq!(fit_to_open_files(1024, Some(64)), 8, "never below 8");
    }
}
