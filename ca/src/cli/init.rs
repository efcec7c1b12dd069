//! `lanyard-ca init`: makes a new CA directory. Everything is generated in
//! memory first (the issuing key in a PKCS#11 token with `--key`), then
//! written file by file (0600 keys, atomic); if a write fails, what was
//! written (and a key generated in the token) is removed so `init` can
//! simply be run again.

use std::path::{Path, PathBuf};

use clap::Args;
use lanyard_certs::rcgen::{Issuer, KeyPair};
use lanyard_certs::{
    generate_ca_key, generate_server_key, issuing_ca_params, root_ca_params, server_params,
    CertSerial,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::audit::{admin_actor, AuditAction, AuditEvent};
use crate::ca_dir::{create_private_dir, write_atomic, CaDir, KEY_MODE, PUBLIC_MODE};
use crate::cli::print_line;
use crate::config::CaConfig;
use crate::derive::config::{DerivationConfig, PHYSICAL_CARD_CA_FILE};
use crate::derive::load_anchors;
use crate::error::CaError;
use crate::issuer::CaSigningKey;
use crate::pkcs11_key::{KeyOrigin, Pkcs11Key};
use crate::pkcs11_uri::Pkcs11Uri;
use crate::store::{DbLocation, Store};

/// Arguments of `init` (Default: for tests that run `init` in-process).
#[derive(Debug, Default, Args)]
pub struct InitArgs {
    /// Directory to create the CA in (made 0700; refused if it already holds a CA).
    #[arg(long, value_name = "DIR", env = "LANYARD_CA_DIR")]
    pub dir: PathBuf,
    /// Extra name for the server's TLS certificate besides localhost, 127.0.0.1
    /// and ::1: an IP address or a DNS name. Repeat for several.
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
    /// Organisation name, the O= of every certificate.
    #[arg(long, value_name = "NAME", default_value = "Lanyard Demo Trust")]
    pub org: String,
    /// Keep the issuing CA's key in a PKCS#11 token (an HSM) instead of
    /// issuing.key: an RFC 7512 URI such as
    /// 'pkcs11:token=CA;object=issuing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/lanyard-ca/hsm-pin'.
    /// The token's key with that label is used; if there is none, an EC P-384
    /// key pair is generated in the token (sensitive, not extractable).
    #[arg(long = "key", value_name = "PKCS11_URI")]
    pub key: Option<String>,
    /// Keep the CA's records in PostgreSQL instead of DIR/ca.db: the URL of an
    /// existing, empty database, postgres://USER:PASSWORD@HOST:PORT/DB. It is
    /// recorded in ca.toml (then 0600), which `serve` and `admin --dir` read;
    /// CA replicas copy the directory and share the database. The environment
    /// keeps the password out of the process list.
    #[arg(
        long,
        value_name = "URL",
        env = "LANYARD_CA_DATABASE",
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// Enable derived enrolment: PEM file of the CA(s) whose smartcards may be
    /// used to enrol by derivation (`lanyard enroll --derive-from`). Copied to
    /// DIR/physical-card-ca.pem; needs --derivation-role and --derivation-policy.
    /// Repeat for several files.
    #[arg(long = "physical-card-ca", value_name = "FILE")]
    pub physical_card_ca: Vec<PathBuf>,
    /// The role of every card issued by derivation (with --physical-card-ca).
    #[arg(long, value_name = "ROLE")]
    pub derivation_role: Option<String>,
    /// A certificate policy OID the physical card's certificate must carry
    /// (with --physical-card-ca). Repeat for several; one is enough.
    #[arg(long = "derivation-policy", value_name = "OID")]
    pub derivation_policies: Vec<String>,
    /// A CRL file (DER or PEM) of the physical-card CAs, read at every
    /// derived enrolment (kept where it is: replace it to update).
    #[arg(long, value_name = "FILE")]
    pub physical_card_crl: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The issuing key `init` certifies: a new file key, or one in a token.
enum NewIssuingKey {
    File,
    Pkcs11 { key: Pkcs11Key, origin: KeyOrigin },
}

impl NewIssuingKey {
    /// Undoes a key generated in the token (after a later step failed).
    fn discard(self) {
        if let NewIssuingKey::Pkcs11 {
            key,
            origin: KeyOrigin::Generated,
        } = self
        {
            if let Err(e) = key.destroy() {
                tracing::warn!(error = %e, "could not remove the key pair generated in the token");
            }
        }
    }

    fn origin(&self) -> &'static str {
        match self {
            NewIssuingKey::File => "file",
            NewIssuingKey::Pkcs11 {
                origin: KeyOrigin::Generated,
                ..
            } => "generated",
            NewIssuingKey::Pkcs11 {
                origin: KeyOrigin::Existing,
                ..
            } => "existing",
        }
    }
}

/// PEM texts of everything `init` writes.
struct Material {
    root_key: Zeroizing<String>,
    root_pem: String,
    root_der: Vec<u8>,
    /// `None` when the key stays in a PKCS#11 token.
    issuing_key: Option<Zeroizing<String>>,
    issuing_pem: String,
    server_key: Zeroizing<String>,
    server_pem: String,
    /// The physical-card trust anchors (PEM) for derived enrolment, if any.
    physical_card_ca: Option<String>,
    root_serial: CertSerial,
    issuing_serial: CertSerial,
}

fn random_serial() -> Result<CertSerial, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(CertSerial::from_random(bytes))
}

fn generate(org: &str, sans: &[String], key: &NewIssuingKey) -> Result<Material, CaError> {
    let now = OffsetDateTime::now_utc();
    let root_serial = random_serial()?;
    let issuing_serial = random_serial()?;

    let root_key: KeyPair = generate_ca_key()?;
    let root_params = root_ca_params(org, &root_serial, now)?;
    let root_cert = root_params.self_signed(&root_key)?;
    let root = Issuer::new(root_params, &root_key);

    let issuing_key = match key {
        NewIssuingKey::File => CaSigningKey::File(Box::new(generate_ca_key()?)),
        NewIssuingKey::Pkcs11 { key, .. } => CaSigningKey::Pkcs11(key.clone()),
    };
    let issuing_cert =
        issuing_ca_params(org, &issuing_serial, now)?.signed_by(&issuing_key, &root)?;
    let issuing = Issuer::from_ca_cert_der(issuing_cert.der(), &issuing_key)?;

    let server_key = generate_server_key()?;
    let server_cert =
        server_params(org, sans, &random_serial()?, now)?.signed_by(&server_key, &issuing)?;
    // A token that signs wrongly must fail here, not when the first card enrols.
    lanyard_certs::verify_issued_by(server_cert.der(), issuing_cert.der())?;

    Ok(Material {
        root_key: Zeroizing::new(root_key.serialize_pem()),
        root_pem: root_cert.pem(),
        root_der: root_cert.der().to_vec(),
        issuing_key: match &issuing_key {
            CaSigningKey::File(k) => Some(Zeroizing::new(k.serialize_pem())),
            CaSigningKey::Pkcs11(_) => None,
        },
        issuing_pem: issuing_cert.pem(),
        server_key: Zeroizing::new(server_key.serialize_pem()),
        server_pem: server_cert.pem(),
        physical_card_ca: None,
        root_serial,
        issuing_serial,
    })
}

/// Creates the CA.
pub async fn run(args: InitArgs) -> Result<(), CaError> {
    let dir = CaDir::new(&args.dir);
    if let Some(found) = dir.marker_files().into_iter().find(|f| f.exists()) {
        return Err(CaError::AlreadyInitialised {
            dir: args.dir.clone(),
            found,
        });
    }
    let mut config = CaConfig::new(args.org.clone());
    config
        .check()
        .map_err(|reason| CaError::InvalidArgument(format!("--org: {reason}")))?;
    config.database = args.database.clone();
    let physical_card_ca = derivation_settings(&args, &mut config)?;
    let location = DbLocation::from_setting(config.database.as_deref(), &dir.database())?;
    if let DbLocation::Postgres(_) = location {
        // Unreachable, or another CA's: refused before anything is made.
        check_database_is_new(&location).await?;
    }
    // Nothing is created on disk until the token has given its key.
    let key = match &args.key {
        None => NewIssuingKey::File,
        Some(text) => {
            let uri = Pkcs11Uri::parse(text)?;
            let (key, origin) = Pkcs11Key::open_or_generate(&uri)?;
            config.issuing_key = Some(text.clone());
            NewIssuingKey::Pkcs11 { key, origin }
        }
    };
    let key_location = match &key {
        NewIssuingKey::File => dir.issuing_key().display().to_string(),
        NewIssuingKey::Pkcs11 { key, .. } => key.uri_redacted(),
    };
    let material = match generate(&args.org, &args.sans, &key) {
        Ok(m) => Material {
            physical_card_ca,
            ..m
        },
        Err(e) => {
            key.discard();
            return Err(e);
        }
    };

    let mut written = Vec::new();
    let result = match create_private_dir(dir.path()) {
        Ok(()) => {
            write_everything(
                &dir,
                &config,
                &material,
                &args.sans,
                &key_location,
                &mut written,
            )
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        key.discard();
        return Err(e);
    }

    let fingerprint = hex::encode(Sha256::digest(&material.root_der));
    if args.json {
        let out = json!({
            "dir": dir.path(),
            "organisation": args.org,
            "root_pem": dir.root_pem(),
            "root_key": dir.root_key(),
            "issuing_pem": dir.issuing_pem(),
            "issuing_key": key_location,
            "issuing_key_origin": key.origin(),
            "server_pem": dir.server_pem(),
            "config": dir.config(),
            "database": location.redacted(),
            "server_names": server_names(&args.sans),
            "root_sha256": fingerprint,
            "derivation_enabled": config.derivation.enabled,
        });
        print_line(&out)?;
    } else {
        print_line(format_args!(
            "Initialised a Lanyard CA for {} in {}",
            args.org,
            dir.path().display()
        ))?;
        print_line(format_args!(
            "  root certificate (clients trust this): {}",
            dir.root_pem().display()
        ))?;
        print_line(format_args!(
            "  root certificate SHA-256:               {fingerprint}"
        ))?;
        print_line(format_args!(
            "  issuing CA certificate:                 {}",
            dir.issuing_pem().display()
        ))?;
        let key_line = match key.origin() {
            "generated" => format!("{key_location} (generated in the token)"),
            "existing" => format!("{key_location} (already in the token)"),
            _ => key_location.clone(),
        };
        print_line(format_args!(
            "  issuing CA key:                         {key_line}"
        ))?;
        print_line(format_args!(
            "  server TLS names:                       {}",
            server_names(&args.sans).join(", ")
        ))?;
        print_line(format_args!(
            "  configuration:                          {}",
            dir.config().display()
        ))?;
        print_line(format_args!(
            "  database:                               {location}"
        ))?;
        if config.derivation.enabled {
            print_line(format_args!(
                "  derived enrolment:                      enabled, physical cards of {} get role {:?}",
                dir.path().join(PHYSICAL_CARD_CA_FILE).display(),
                config.derivation.role
            ))?;
        }
        print_line(format_args!(
            "The root key {} is not needed by `serve`; move it offline now.",
            dir.root_key().display()
        ))?;
    }
    Ok(())
}

fn server_names(sans: &[String]) -> Vec<String> {
    let mut names: Vec<String> = lanyard_certs::ca_profiles::DEFAULT_SERVER_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    for s in sans {
        if !names.contains(s) {
            names.push(s.clone());
        }
    }
    names
}

async fn write_everything(
    dir: &CaDir,
    config: &CaConfig,
    m: &Material,
    sans: &[String],
    key_location: &str,
    written: &mut Vec<PathBuf>,
) -> Result<(), CaError> {
    let mut put = |path: PathBuf, bytes: &[u8], mode: u32| -> Result<(), CaError> {
        write_atomic(&path, bytes, mode)?;
        written.push(path);
        Ok(())
    };
    put(dir.root_key(), m.root_key.as_bytes(), KEY_MODE)?;
    put(dir.root_pem(), m.root_pem.as_bytes(), PUBLIC_MODE)?;
    if let Some(issuing_key) = &m.issuing_key {
        put(dir.issuing_key(), issuing_key.as_bytes(), KEY_MODE)?;
    }
    put(dir.issuing_pem(), m.issuing_pem.as_bytes(), PUBLIC_MODE)?;
    put(dir.server_key(), m.server_key.as_bytes(), KEY_MODE)?;
    put(dir.server_pem(), m.server_pem.as_bytes(), PUBLIC_MODE)?;
    if let Some(pem) = &m.physical_card_ca {
        put(
            dir.path().join(PHYSICAL_CARD_CA_FILE),
            pem.as_bytes(),
            PUBLIC_MODE,
        )?;
    }
    let location = DbLocation::from_setting(config.database.as_deref(), &dir.database())?;
    match &location {
        DbLocation::Sqlite(_) => config.save(&dir.config())?,
        // ca.toml holds the database password.
        DbLocation::Postgres(_) => {
            write_atomic(&dir.config(), config.to_toml().as_bytes(), KEY_MODE)?
        }
    }
    written.push(dir.config());

    if let DbLocation::Sqlite(db) = &location {
        written.extend(db_files(db));
        // The database holds code hashes and the audit log: 0600, and SQLite gives
        // its -wal and -shm files the same mode.
        write_atomic(db, b"", KEY_MODE)?;
    }
    let store = Store::create(&location).await?;
    let audited = store
        .record_audit(&AuditEvent {
            actor: admin_actor(),
            action: AuditAction::CaInitialised,
            card_id: None,
            peer: None,
            detail: json!({
                "organisation": config.organisation,
                "root_serial": m.root_serial.to_hex(),
                "issuing_serial": m.issuing_serial.to_hex(),
                "issuing_key": key_location,
                "server_names": server_names(sans),
            }),
        })
        .await;
    store.close().await;
    audited
}

/// The `[derivation]` settings from `--physical-card-ca` and its companions,
/// checked before anything is created; returns the anchors' PEM to write.
fn derivation_settings(args: &InitArgs, config: &mut CaConfig) -> Result<Option<String>, CaError> {
    if args.physical_card_ca.is_empty() {
        if args.derivation_role.is_some()
            || !args.derivation_policies.is_empty()
            || args.physical_card_crl.is_some()
        {
            return Err(CaError::InvalidArgument(
                "--derivation-role, --derivation-policy and --physical-card-crl go with --physical-card-ca".into(),
            ));
        }
        return Ok(None);
    }
    let mut pem = String::new();
    for file in &args.physical_card_ca {
        load_anchors(file)?;
        let text = std::fs::read_to_string(file).map_err(|e| CaError::io("read", file, e))?;
        pem.push_str(&text);
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
    }
    let crl_file = match &args.physical_card_crl {
        Some(f) => Some(std::path::absolute(f).map_err(|e| CaError::io("find", f, e))?),
        None => None,
    };
    config.derivation = DerivationConfig {
        enabled: true,
        trust_anchors: vec![PHYSICAL_CARD_CA_FILE.into()],
        allowed_policies: args.derivation_policies.clone(),
        role: args.derivation_role.clone().unwrap_or_default(),
        crl_file,
        ..DerivationConfig::default()
    };
    config
        .derivation
        .check()
        .map_err(|reason| CaError::InvalidArgument(format!("--physical-card-ca: {reason}")))?;
    Ok(Some(pem))
}

/// Connects to a PostgreSQL database for a new CA (applying the migrations)
/// and refuses one that already holds a CA's records.
async fn check_database_is_new(location: &DbLocation) -> Result<(), CaError> {
    let store = Store::create(location).await?;
    let used = store.holds_records().await;
    store.close().await;
    if used? {
        return Err(CaError::BadDatabase(format!(
            "{location} already holds a CA's records: give `init` an empty database \
             (a replica copies the CA directory instead of running init)"
        )));
    }
    Ok(())
}

/// The database file and SQLite's companions.
fn db_files(db: &Path) -> Vec<PathBuf> {
    let s = db.as_os_str().to_owned();
    let with = |suffix: &str| {
        let mut p = s.clone();
        p.push(suffix);
        PathBuf::from(p)
    };
    vec![db.to_path_buf(), with("-wal"), with("-shm")]
}
