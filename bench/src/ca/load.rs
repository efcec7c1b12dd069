//! The timed part: N concurrent clients, each a device opening its own TLS
//! connection per request as devices do. Enrolment phase: Enrollment.Enroll
//! with a code issued beforehand and two CSRs; renewal phase: Renewal.Renew
//! over mTLS with the card's current certificate and key, two new CSRs.
//! Answers are checked (certificate for our key, signed by the issuing CA)
//! after the clock stops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use lanyard_daemon::ca_client::{self, CaFailure};
use lanyard_daemon::ca_tls;
use lanyard_daemon::enroll::check_issued;
use lanyard_daemon::keys::SigningKey;
use lanyard_proto::ca::enrollment_client::EnrollmentClient;
use lanyard_proto::ca::renewal_client::RenewalClient;
use lanyard_proto::ca::{EnrollRequest, EnrollResponse, RenewRequest};

use super::csrs::{CardRequest, DeviceMaterial};
use super::server::Code;

/// What happened to one request.
enum Outcome {
    Issued(Box<EnrollResponse>),
    /// UNAVAILABLE/RESOURCE_EXHAUSTED: the CA's back-pressure.
    Busy,
    Failed(String),
}

/// The result of one phase.
#[derive(Debug, Default)]
pub struct Phase {
    /// Requests answered with certificates that check out.
    pub ok: usize,
    /// Requests refused by back-pressure (not retried).
    pub busy: usize,
    /// Any other failure, including an answer that does not check out.
    pub errors: usize,
    /// The first few error messages.
    pub first_errors: Vec<String>,
    /// From the first request sent to the last answer.
    pub wall: Duration,
    /// Latency of each successful request.
    pub latencies: Vec<Duration>,
    /// Certificates issued by the successful requests.
    pub certificates: usize,
    /// CPU seconds the CA process used during the phase, if known.
    pub ca_cpu_s: Option<f64>,
}

impl Phase {
    fn record_error(&mut self, e: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(e);
        }
    }
}

/// What a device holds after enrolling: its certificate chain for mTLS.
pub struct Enrolled {
    /// Index into the device material.
    pub device: usize,
    /// The card id.
    pub card_id: String,
    /// Leaf then issuing CA.
    pub chain: Vec<Vec<u8>>,
}

fn classify(failure: CaFailure) -> Outcome {
    match failure {
        CaFailure::Busy { .. } => Outcome::Busy,
        CaFailure::Transport(why) => Outcome::Failed(format!("transport: {why}")),
        CaFailure::Refused(status) => {
            Outcome::Failed(format!("refused: {:?} {}", status.code(), status.message()))
        }
    }
}

/// Runs `op(i)` for i in 0..n over `clients` concurrent tasks; returns each
/// outcome with its latency, and the wall time.
async fn drive<F, Fut>(
    n: usize,
    clients: usize,
    op: F,
) -> (Vec<(usize, Outcome, Duration)>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (next, op) = (next.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let outcome = op(i).await;
                done.push((i, outcome, t.elapsed()));
            }
            done
        }));
    }
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        match task.await {
            Ok(done) => all.extend(done),
            Err(e) => all.push((
                usize::MAX,
                Outcome::Failed(format!("client task: {e}")),
                Duration::ZERO,
            )),
        }
    }
    (all, start.elapsed())
}

/// Checks both certificates of an answer against the request's keys.
fn check_answer(request: &CardRequest, resp: &EnrollResponse) -> Result<(), String> {
    check_issued(&request.auth.key, resp).map_err(|e| e.to_string())?;
    if resp.signing_certificate_der.is_empty() {
        return Err("no document-signing certificate".into());
    }
    let signing = EnrollResponse {
        certificate_der: resp.signing_certificate_der.clone(),
        chain_der: resp.chain_der.clone(),
        ..EnrollResponse::default()
    };
    check_issued(&request.signing.key, &signing).map_err(|e| format!("signing: {e}"))
}

fn certs_in(resp: &EnrollResponse) -> usize {
    1 + usize::from(!resp.signing_certificate_der.is_empty())
}

/// Enrols device i with code i, `clients` at a time.
pub async fn enrol(
    url: &str,
    root_pem: &[u8],
    codes: Vec<Code>,
    devices: Arc<Vec<DeviceMaterial>>,
    clients: usize,
) -> Result<(Phase, Vec<Enrolled>)> {
    let endpoint =
        ca_client::server_auth_endpoint(url, root_pem).map_err(|e| anyhow!("CA endpoint: {e}"))?;
    let codes = Arc::new(codes);
    let n = codes.len().min(devices.len());
    let material = devices.clone();
    let (outcomes, wall) = drive(n, clients, move |i| {
        let endpoint = endpoint.clone();
        let req = EnrollRequest {
            code: codes[i].0.to_string(),
            csr_der: material[i].enrol.auth.csr.clone(),
            signing_csr_der: material[i].enrol.signing.csr.clone(),
        };
        async move {
            let channel = match endpoint.connect().await {
                Ok(c) => c,
                Err(e) => {
                    return Outcome::Failed(format!("connect: {}", ca_client::error_chain(&e)))
                }
            };
            match EnrollmentClient::new(channel).enroll(req).await {
                Ok(resp) => Outcome::Issued(Box::new(resp.into_inner())),
                Err(status) => classify(CaFailure::from_status(status)),
            }
        }
    })
    .await;
    let mut phase = Phase {
        wall,
        ..Phase::default()
    };
    let mut enrolled = Vec::new();
    for (i, outcome, latency) in outcomes {
        match outcome {
            Outcome::Issued(resp) => match check_answer(&devices[i].enrol, &resp) {
                Ok(()) => {
                    phase.ok += 1;
                    phase.certificates += certs_in(&resp);
                    phase.latencies.push(latency);
                    let mut chain = vec![resp.certificate_der.clone()];
                    chain.extend(resp.chain_der.first().cloned());
                    enrolled.push(Enrolled {
                        device: i,
                        card_id: resp.card_id.clone(),
                        chain,
                    });
                }
                Err(e) => phase.record_error(format!("enrolment answer: {e}")),
            },
            Outcome::Busy => phase.busy += 1,
            Outcome::Failed(e) => phase.record_error(e),
        }
    }
    Ok((phase, enrolled))
}

/// Renews every enrolled card once over mTLS, `clients` at a time.
pub async fn renew(
    url: &str,
    root_pem: &[u8],
    enrolled: Vec<Enrolled>,
    devices: Arc<Vec<DeviceMaterial>>,
    clients: usize,
) -> Result<Phase> {
    // TLS client configurations are built before the clock starts.
    let mut prepared = Vec::with_capacity(enrolled.len());
    for card in &enrolled {
        let key: Arc<SigningKey> = devices[card.device].enrol.auth.key.clone();
        let config = ca_tls::client_config(root_pem, card.chain.clone(), key)
            .map_err(|e| anyhow!("mTLS configuration for card {}: {e}", card.card_id))?;
        prepared.push((Arc::new(config), card.card_id.clone(), card.device));
    }
    let prepared = Arc::new(prepared);
    let url_owned = url.to_string();
    let material = devices.clone();
    let jobs = prepared.clone();
    let (outcomes, wall) = drive(prepared.len(), clients, move |i| {
        let (config, card_id, device) = &jobs[i];
        let config = config.clone();
        let url = url_owned.clone();
        let req = RenewRequest {
            card_id: card_id.clone(),
            csr_der: material[*device].renew.auth.csr.clone(),
            signing_csr_der: material[*device].renew.signing.csr.clone(),
        };
        async move {
            let (channel, alerts) = match ca_tls::connect(&url, config).await {
                Ok(c) => c,
                Err(f) => return classify(f),
            };
            match RenewalClient::new(channel).renew(req).await {
                Ok(resp) => Outcome::Issued(Box::new(resp.into_inner())),
                Err(status) => classify(alerts.classify(status)),
            }
        }
    })
    .await;
    let mut phase = Phase {
        wall,
        ..Phase::default()
    };
    for (i, outcome, latency) in outcomes {
        match outcome {
            Outcome::Issued(resp) => {
                let device = prepared[i].2;
                match check_answer(&devices[device].renew, &resp) {
                    Ok(()) => {
                        phase.ok += 1;
                        phase.certificates += certs_in(&resp);
                        phase.latencies.push(latency);
                    }
                    Err(e) => phase.record_error(format!("renewal answer: {e}")),
                }
            }
            Outcome::Busy => phase.busy += 1,
            Outcome::Failed(e) => phase.record_error(e),
        }
    }
    Ok(phase)
}
