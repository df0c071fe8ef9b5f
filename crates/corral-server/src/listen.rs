//! The accept loop and the shutdown sequence.
//!
//! Connections are served with hyper directly rather than through `axum::serve`, for a limit that
//! does not expose: a request's header must arrive within [`crate::ServerConfig::header_timeout`]
//! ([`HEADER_READ_TIMEOUT`] unless a test sets another). Without it a
//! client that opens connections and sends half a header each holds every one of them open for
//! good, until the process runs out of descriptors (tried: 3,000 such connections were all still
//! open 35 s later).
//!
//! With TLS ([`crate::tls`]) each connection's handshake runs in its own task under the same
//! deadline, and HTTP/2 is served where the client negotiated it.
//!
//! Shutdown, once the caller's future resolves: the listener closes, the scheduler takes no more
//! requests (503 "the server is shutting down"), idle connections close, and answers in progress
//! get [`crate::ServerConfig::shutdown_grace`] to finish. Then the runners are stopped, which ends
//! what still runs with that error, and connections left after a few seconds more are dropped.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;

use crate::{app, AppState};

/// The longest a client may take to send a request's header (and the longest an idle keep-alive
/// connection waits for the next one).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// After the grace period, how long the connections left get to write their error and close.
const LAST_WORDS: Duration = Duration::from_secs(5);

/// Serves `app(state)` on `listener` until `shutdown` resolves, then stops as the module docs say.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scheduler = state.scheduler.clone();
    let grace = state.config.shutdown_grace;
    let deadline = state.config.header_timeout;
    let tls = state.config.tls.clone();
    let https_url = listener.local_addr().map(|a| format!("https://{a}")).unwrap_or_default();
    if let Some(tls) = &tls {
        tls.watch();
    }
    crate::start_preload(&state);
    let router = app(state);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection { router: router.clone(), peer, deadline, watcher: graceful.watcher() };
        match &tls {
            None => {
                tokio::spawn(connection.serve(TokioIo::new(stream), false));
            }
            Some(tls) => {
                let (tls, url) = (tls.clone(), https_url.clone());
                // The handshake runs in the connection's task: a slow client holds up no one.
                tokio::spawn(async move {
                    match tls.accept(stream, deadline, &url).await {
                        Ok(Some((stream, h2))) => connection.serve(TokioIo::new(stream), h2).await,
                        Ok(None) => tracing::debug!(%peer, "plain HTTP on the TLS port: told to use HTTPS"),
                        Err(e) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: answers in progress have {grace:?} to finish");
    scheduler.close();
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    if tokio::time::timeout(grace, &mut drained).await.is_err() {
        tracing::warn!("shutdown: answers still running after {grace:?} are ended");
        scheduler.shutdown();
        let _ = tokio::time::timeout(LAST_WORDS, drained).await;
    }
    scheduler.shutdown();
    Ok(())
}

/// One accepted connection, before its protocol runs.
struct Connection {
    router: axum::Router,
    peer: SocketAddr,
    deadline: Duration,
    watcher: Watcher,
}

impl Connection {
    /// Serves HTTP/1.1, or HTTP/2 when TLS negotiated it, until the connection ends or the
    /// shutdown closes it.
    async fn serve<I>(self, io: TokioIo<I>, h2: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { router, peer, deadline, watcher } = self;
        // The router for this connection, which tells handlers the peer's address (`ConnectInfo`).
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            tower_service::Service::call(&mut router.clone(), req)
        });
        let ended = if h2 {
            let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            http.timer(TokioTimer::new());
            watcher.watch(http.serve_connection(io, service)).await
        } else {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(deadline);
            watcher.watch(http.serve_connection(io, service)).await
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, "connection ended: {e}");
        }
    }
}

/// An `accept` that failed. Out of descriptors (or memory), the loop must not spin: it waits a
/// little for connections to close. Errors of one connection (reset before it was accepted) are
/// not worth a wait.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(e.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted) {
        return;
    }
    tracing::error!("could not accept a connection: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
