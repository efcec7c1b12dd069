//! Talking to the CA over gRPC: the server-authenticated TLS endpoint
//! (Enrollment, Revocation), how a failure is classified (transport, busy
//! with the CA's `retry-after`, refused), and the bounded retry loop.

use std::future::Future;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use crate::error::{Error, Result};

/// Attempts at reaching the CA before giving up (interactive requests).
pub const CA_ATTEMPTS: u32 = 3;
/// Delay before the first retry; doubled for each further one.
pub const CA_FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Longest `retry-after` an interactive request waits for before answering CA_BUSY.
pub const MAX_INTERACTIVE_WAIT: Duration = Duration::from_secs(30);
/// Metadata entry of an overloaded CA: whole seconds to wait.
pub const RETRY_AFTER: &str = "retry-after";
/// Metadata entry on Enrollment.ResetPin's FAILED_PRECONDITION: the device must destroy the card's keys.
pub const CARD_DESTROYED: &str = "lanyard-card-destroyed";
/// How long a TCP + TLS connection to the CA may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call to the CA did not succeed.
#[derive(Debug)]
pub enum CaFailure {
    /// The CA could not be reached (connection, TLS, timeout); one line.
    Transport(String),
    /// The CA is overloaded (UNAVAILABLE / RESOURCE_EXHAUSTED).
    Busy {
        /// The CA's message.
        message: String,
        /// The CA's `retry-after`, if it gave one.
        retry_after: Option<Duration>,
        /// Whether trying again soon may help: UNAVAILABLE, or a
        /// `retry-after` hint. RESOURCE_EXHAUSTED without a hint (e.g. a rate
        /// limit on failed attempts) is not retried.
        retry: bool,
    },
    /// The CA answered with a final refusal.
    Refused(tonic::Status),
}

/// The message of `e` followed by each distinct cause, on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg.replace('\n', " ")
}

/// The CA's `retry-after` metadata, whole seconds.
pub fn retry_after(status: &tonic::Status) -> Option<Duration> {
    let v = status.metadata().get(RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The CA's message, or the status code when it gave none (one line).
pub fn status_message(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().replace('\n', " ")
    }
}

impl CaFailure {
    /// Classifies a status. One made on this side (it has a source error:
    /// connection, TLS, HTTP/2) is a transport failure; from the CA,
    /// UNAVAILABLE and RESOURCE_EXHAUSTED mean busy, anything else a refusal.
    pub fn from_status(status: tonic::Status) -> Self {
        if std::error::Error::source(&status).is_some() {
            return CaFailure::Transport(error_chain(&status));
        }
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::ResourceExhausted => {
                let retry_after = retry_after(&status);
                CaFailure::Busy {
                    message: status_message(&status),
                    retry_after,
                    retry: retry_after.is_some() || status.code() == tonic::Code::Unavailable,
                }
            }
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                CaFailure::Transport(format!("no answer in time ({})", status_message(&status)))
            }
            _ => CaFailure::Refused(status),
        }
    }

    /// The daemon error for a failed `what` (e.g. "renewal") at `url`:
    /// transport → CA_UNAVAILABLE, busy → CA_BUSY, refused → CA_REFUSED with the CA's message.
    pub fn into_error(self, url: &str, what: &str) -> Error {
        match self {
            CaFailure::Transport(why) => Error::CaUnavailable(why),
            CaFailure::Busy {
                message,
                retry_after,
                ..
            } => Error::CaBusy {
                message: busy_message(url, &message, retry_after),
                retry_after,
            },
            CaFailure::Refused(status) => Error::CaRefused(format!(
                "the CA refused the {what}: {}",
                status_message(&status)
            )),
        }
    }
}

/// One line for a busy CA.
pub fn busy_message(url: &str, message: &str, retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(
            "the CA at {url} is busy ({message}); try again in {} s",
            d.as_secs()
        ),
        None => format!("the CA at {url} cannot take the request now ({message}); try again later"),
    }
}

/// Checks a CA URL: `https://HOST:PORT`.
pub fn parse_ca_url(url: &str) -> Result<Uri> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::BadRequest(format!("CA URL {url:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(Error::BadRequest(format!(
            "CA URL must look like https://HOST:PORT, not {url:?}"
        )));
    }
    Ok(uri)
}

/// Checks that `pem` holds at least one PEM certificate.
pub fn check_pem(pem: &[u8]) -> Result<()> {
    if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::BadRequest(
            "the CA certificate file holds no PEM certificate".into(),
        ));
    }
    Ok(())
}

/// An endpoint for server-authenticated TLS to the CA at `url`, trusting only `pem`.
pub fn server_auth_endpoint(url: &str, pem: &[u8]) -> Result<Endpoint> {
    let uri = parse_ca_url(url)?;
    check_pem(pem)?;
    // tonic takes the TLS server name from the URL host; an IP address
    // becomes a rustls IpAddress name and is checked against IP SANs.
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
    Ok(Endpoint::from(uri)
        .tls_config(tls)
        .map_err(|e| Error::BadRequest(format!("CA TLS settings: {}", error_chain(&e))))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT))
}

/// Calls the CA over `endpoint` (server-authenticated TLS, see
/// [`server_auth_endpoint`]) with `retries`: each attempt connects and runs
/// `call` on the new channel; a failure to connect is a transport failure,
/// the CA's status is classified with [`CaFailure::from_status`].
pub async fn call_with_retries<T, F, Fut>(
    url: &str,
    endpoint: &Endpoint,
    retries: Retries,
    call: F,
) -> Result<T, CaFailure>
where
    F: Fn(Channel) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let call = &call;
    with_retries(url, retries, move || async move {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| CaFailure::Transport(error_chain(&e)))?;
        call(channel)
            .await
            .map(tonic::Response::into_inner)
            .map_err(CaFailure::from_status)
    })
    .await
}

/// How persistently to call the CA.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    /// Attempts in all.
    pub attempts: u32,
    /// Wait before the second attempt after a transport failure; doubled after.
    pub first_backoff: Duration,
    /// Longest `retry-after` worth waiting for; a longer one ends the loop at once.
    pub max_wait: Duration,
}

impl Retries {
    /// For a request a person waits for (enrol, renew, reset-pin).
    pub const INTERACTIVE: Retries = Retries {
        attempts: CA_ATTEMPTS,
        first_backoff: CA_FIRST_BACKOFF,
        max_wait: MAX_INTERACTIVE_WAIT,
    };
    /// One attempt (background work that has its own schedule).
    pub const ONCE: Retries = Retries {
        attempts: 1,
        first_backoff: CA_FIRST_BACKOFF,
        max_wait: Duration::ZERO,
    };
}

/// Runs `call` until it succeeds, is refused, or the retries are spent.
/// Transport failures are retried after a doubling backoff; a busy CA
/// after its `retry-after` (plus up to a second of jitter) if that is
/// within `max_wait`. The last failure is returned.
pub async fn with_retries<T, F, Fut>(
    url: &str,
    retries: Retries,
    mut call: F,
) -> Result<T, CaFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CaFailure>>,
{
    let mut delay = retries.first_backoff;
    let mut n = 0;
    loop {
        n += 1;
        let last = n >= retries.attempts;
        match call().await {
            Ok(v) => return Ok(v),
            Err(CaFailure::Refused(status)) => return Err(CaFailure::Refused(status)),
            Err(CaFailure::Transport(why)) => {
                if last {
                    let attempts = if n == 1 {
                        String::new()
                    } else {
                        format!(" after {n} attempts")
                    };
                    return Err(CaFailure::Transport(format!(
                        "CA at {url} unreachable{attempts} ({why}); check the URL and that the CA is running"
                    )));
                }
                tracing::warn!(
                    "CA at {url} unreachable ({why}); retrying in {} s",
                    delay.as_secs()
                );
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(CaFailure::Busy {
                message,
                retry_after,
                retry,
            }) => {
                let wait = retry_after.unwrap_or(delay);
                if last || !retry || wait > retries.max_wait {
                    return Err(CaFailure::Busy {
                        message,
                        retry_after,
                        retry,
                    });
                }
                let wait = wait + Duration::from_secs(1).mul_f64(rand::random::<f64>());
                tracing::warn!(
                    "CA at {url} is busy ({message}); retrying in {} s",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
                delay *= 2;
            }
        }
    }
}

/// Enrollment.DeriveChallenge: a one-time challenge for a derived enrolment
/// (retrying transport failures and a busy CA within the interactive budget).
pub async fn derive_challenge(
    url: &str,
    pem: &[u8],
) -> Result<lanyard_proto::ca::DeriveChallengeResponse> {
    use lanyard_proto::ca::{enrollment_client::EnrollmentClient, DeriveChallengeRequest};
    let endpoint = server_auth_endpoint(url, pem)?;
    call_with_retries(url, &endpoint, Retries::INTERACTIVE, |channel| async move {
        EnrollmentClient::new(channel)
            .derive_challenge(DeriveChallengeRequest {})
            .await
    })
    .await
    .map_err(|failure| derive_failure(url, failure))
}

/// Enrollment.EnrollDerived: the proof and the new card's CSRs. A refusal
/// is ENROLL_FAILED with the CA's message (which check failed).
pub async fn enroll_derived(
    url: &str,
    pem: &[u8],
    req: lanyard_proto::ca::EnrollDerivedRequest,
) -> Result<lanyard_proto::ca::EnrollResponse> {
    use lanyard_proto::ca::enrollment_client::EnrollmentClient;
    let endpoint = server_auth_endpoint(url, pem)?;
    call_with_retries(url, &endpoint, Retries::INTERACTIVE, |channel| {
        let req = req.clone();
        async move { EnrollmentClient::new(channel).enroll_derived(req).await }
    })
    .await
    .map_err(|failure| derive_failure(url, failure))
}

fn derive_failure(url: &str, failure: CaFailure) -> Error {
    match failure {
        CaFailure::Refused(status) => {
            tracing::warn!(ca = %url, grpc_status = ?status.code(), message = %status.message(), "CA refused the derived enrolment");
            Error::EnrollFailed(format!("the CA refused it: {}", status_message(&status)))
        }
        other => other.into_error(url, "derived enrolment"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn busy(secs: &str) -> tonic::Status {
        let mut s = tonic::Status::unavailable("issuance limit reached");
        s.metadata_mut().insert(RETRY_AFTER, secs.parse().unwrap());
        s
    }

    #[test]
    fn statuses_are_classified() {
        match CaFailure::from_status(busy("7")) {
            CaFailure::Busy { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            CaFailure::from_status(tonic::Status::resource_exhausted("x")),
            CaFailure::Busy {
                retry_after: None,
                ..
            }
        ));
        for s in [
            tonic::Status::permission_denied("not your card"),
            tonic::Status::failed_precondition("card suspended"),
            tonic::Status::invalid_argument("bad CSR"),
        ] {
            let code = s.code();
            match CaFailure::from_status(s) {
                CaFailure::Refused(s) => assert_eq!(s.code(), code),
                other => panic!("{other:?}"),
            }
        }
        // Made on this side, with a source error: transport.
        let local = tonic::Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert!(matches!(
            CaFailure::from_status(local),
            CaFailure::Transport(_)
        ));
        assert_eq!(retry_after(&busy("soon")), None);
    }

    #[test]
    fn failures_map_to_precise_errors() {
        let e = CaFailure::from_status(tonic::Status::failed_precondition("card suspended"))
            .into_error("https://ca:1", "renewal");
        assert!(
            matches!(&e, Error::CaRefused(m) if m.contains("card suspended")),
            "{e}"
        );
        let e = CaFailure::from_status(busy("9")).into_error("https://ca:1", "renewal");
        match e {
            Error::CaBusy {
                message,
                retry_after,
            } => {
                assert!(message.contains("try again in 9 s"), "{message}");
                assert_eq!(retry_after, Some(Duration::from_secs(9)));
            }
            other => panic!("{other}"),
        }
        assert!(matches!(
            CaFailure::Transport("down".into()).into_error("u", "x"),
            Error::CaUnavailable(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn busy_is_retried_after_its_hint_within_the_budget() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let out = with_retries("https://ca:1", Retries::INTERACTIVE, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(CaFailure::from_status(busy("5")))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(out.unwrap(), 2);
        // Two waits of at least the hint each.
        assert!(started.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_without_a_hint_is_not_retried() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = with_retries("https://ca:1", Retries::INTERACTIVE, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err(CaFailure::from_status(tonic::Status::resource_exhausted(
                    "too many failed enrolment attempts; try again in 42 s",
                )))
            }
        })
        .await;
        let e = out.unwrap_err().into_error("https://ca:1", "enrolment");
        assert!(e.to_string().contains("too many failed"), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_hint_ends_the_loop_at_once() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = with_retries("https://ca:1", Retries::INTERACTIVE, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(CaFailure::from_status(busy("300"))) }
        })
        .await;
        assert!(matches!(out, Err(CaFailure::Busy { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn transport_failures_use_the_budget_and_refusals_end_it() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = with_retries("https://ca:1", Retries::INTERACTIVE, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(CaFailure::Transport("refused".into())) }
        })
        .await;
        match out {
            Err(CaFailure::Transport(m)) => assert!(m.contains("after 3 attempts"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = with_retries("https://ca:1", Retries::INTERACTIVE, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(CaFailure::Refused(tonic::Status::permission_denied("no"))) }
        })
        .await;
        assert!(matches!(out, Err(CaFailure::Refused(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn bad_urls_are_refused_before_any_network() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            server_auth_endpoint("http://x:1", pem),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            server_auth_endpoint("not a url", pem),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            server_auth_endpoint("https://x:1", b"junk"),
            Err(Error::BadRequest(_))
        ));
    }
}
