//! The plain-HTTP CRL listener of `serve --crl-listen`: `GET /issuing.crl`
//! answers the newest CRL in the database (DER, `application/pkix-crl`);
//! other paths are 404, other methods 405. Relying parties fetch it from the
//! URL in every certificate's CRL Distribution Points. HTTP/1.1 only, with
//! timeouts and a connection cap so a slow or hostile client cannot hold it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, error, warn};

use crate::store::Store;

/// The one path served.
pub const CRL_PATH: &str = "/issuing.crl";

/// The CRL's media type (RFC 5280 §4.2.1.13, RFC 2585).
pub const CRL_CONTENT_TYPE: &str = "application/pkix-crl";

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 256;

/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection is closed after this long, whatever it is doing.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The URL certificates name for a listener bound to `addr`.
pub fn crl_url_for(addr: SocketAddr) -> String {
    format!("http://{addr}{CRL_PATH}")
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answers one request.
async fn answer(store: Store, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != CRL_PATH {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "not found; the CRL is at /issuing.crl\n",
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed; use GET\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    match store.newest_crl().await {
        Ok(Some(crl)) => {
            let mut r = Response::new(Full::new(Bytes::from(crl.der)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(CRL_CONTENT_TYPE));
            // Revocations are published within seconds: do not let caches sit on it.
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            Ok(r)
        }
        Ok(None) => Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no CRL has been published yet; try again in a few seconds\n",
        )),
        Err(e) => {
            error!(error = %e, "cannot read the newest CRL");
            Ok(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the CRL cannot be read right now\n",
            ))
        }
    }
}

/// Serves `listener` until `stop` turns true.
pub async fn serve_crl(listener: TcpListener, store: Store, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            changed = stop.changed() => {
                // A dropped sender means serve is going away too.
                if changed.is_err() || *stop.borrow() {
                    debug!("CRL listener stopping");
                    return;
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // e.g. out of file descriptors: back off instead of spinning.
                warn!(error = %e, "CRL listener cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            warn!(peer = %peer, "CRL listener at its connection limit; closing a connection");
            continue;
        };
        let store = store.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| answer(store.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(peer = %peer, error = %e, "CRL connection ended with an error")
                }
                Err(_) => debug!(peer = %peer, "CRL connection timed out"),
            }
        });
    }
}
