//! The crypto library's own single-thread signing rate, measured in the same
//! run with the very calls the daemon makes (OpenSSL through the `openssl`
//! crate), and `openssl speed`'s figures for information.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use serde::Serialize;

use super::alg::Alg;
use super::measure::Budget;

/// Raw single-thread rates, signatures per second.
#[derive(Debug, Clone, Serialize)]
pub struct RawRates {
    /// RSA-2048 PKCS#1 v1.5 over a SHA-256 DigestInfo (EVP_PKEY_sign).
    pub rsa2048_pkcs1: f64,
    /// The same with one EVP_PKEY_CTX initialised once and reused (what a
    /// signer that keeps its context ready can reach).
    pub rsa2048_pkcs1_ctx_reused: f64,
    /// ECDSA P-256 over a 32-byte digest (ECDSA_do_sign).
    pub ecdsa_p256: f64,
    /// `openssl speed -seconds 1 rsa2048 ecdsap256` sign/s, when run.
    pub openssl_speed: Option<SpeedFigures>,
}

/// `openssl speed`'s sign rates.
#[derive(Debug, Clone, Serialize)]
pub struct SpeedFigures {
    /// rsa 2048 bits sign/s.
    pub rsa2048_sign: f64,
    /// 256 bits ecdsa (nistp256) sign/s.
    pub ecdsa_p256_sign: f64,
}

/// Measures both rates.
pub fn measure(budget: Budget) -> anyhow::Result<RawRates> {
    let rsa = PKey::from_rsa(Rsa::generate(2048)?)?;
    let rsa_input = Alg::RsaPkcs.input();
    let rsa2048_pkcs1 = rate(budget, || {
        let mut ctx = PkeyCtx::new(&rsa)?;
        ctx.sign_init()?;
        ctx.set_rsa_padding(Padding::PKCS1)?;
        let mut sig = Vec::with_capacity(256);
        ctx.sign_to_vec(&rsa_input, &mut sig)?;
        Ok(())
    })?;
    let mut ctx = PkeyCtx::new(&rsa)?;
    ctx.sign_init()?;
    ctx.set_rsa_padding(Padding::PKCS1)?;
    let rsa2048_pkcs1_ctx_reused = rate(budget, || {
        let mut sig = Vec::with_capacity(256);
        ctx.sign_to_vec(&rsa_input, &mut sig)?;
        Ok(())
    })?;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let ec = EcKey::generate(&group)?;
    let ec_input = Alg::Ecdsa.input();
    let ecdsa_p256 = rate(budget, || {
        let sig = EcdsaSig::sign(&ec_input, &ec)?;
        let mut out = sig.r().to_vec_padded(32)?;
        out.extend_from_slice(&sig.s().to_vec_padded(32)?);
        Ok(())
    })?;
    Ok(RawRates {
        rsa2048_pkcs1,
        rsa2048_pkcs1_ctx_reused,
        ecdsa_p256,
        openssl_speed: None,
    })
}

fn rate(budget: Budget, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    op()?; // warm-up
    let start = Instant::now();
    let mut ops = 0u64;
    loop {
        op()?;
        ops += 1;
        let done = match budget {
            Budget::Ops(n) => ops >= n,
            Budget::Time(d) => start.elapsed() >= d,
        };
        if done {
            break;
        }
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Runs `openssl speed` for one second per operation and reads its summary.
pub fn openssl_speed() -> anyhow::Result<SpeedFigures> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "1", "rsa2048", "ecdsap256"])
        .output()
        .context("cannot run openssl speed")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rsa = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa 2048 bits"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|v| v.parse::<f64>().ok());
    let ec = text
        .lines()
        .find(|l| l.contains("ecdsa (nistp256)"))
        .and_then(|l| l.split_whitespace().nth(6))
        .and_then(|v| v.parse::<f64>().ok());
    match (rsa, ec) {
        (Some(rsa2048_sign), Some(ecdsa_p256_sign)) => Ok(SpeedFigures {
            rsa2048_sign,
            ecdsa_p256_sign,
        }),
        _ => anyhow::bail!("unexpected openssl speed output:\n{text}"),
    }
}
