//! `lanyard-ca admin …`: the IT desk's commands. They talk to the CA's Admin
//! service over gRPC with mutual TLS (an operator certificate, its key in a
//! file or a PKCS#11 token); `--dir` works on the CA directory directly and is
//! kept for the CA host's bootstrap (add-operator) and issue-card/list-cards.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::MAX_CODE_VALIDITY_HOURS;
use crate::error::CaError;

mod audit;
mod cards;
mod connection;
mod host;
mod operator_key;
mod operators;
mod output;

use cards::CardCall;
pub use connection::Connection;
use host::Host;

/// The admin commands' help epilogue: connection, output and exit status.
pub const AFTER_HELP: &str = "\
Connecting: every command talks to the CA's Admin service over mutual TLS:
  --ca https://HOST:PORT --ca-cert root.pem --cert operator.pem --key operator.key
(or LANYARD_ADMIN_CA, LANYARD_ADMIN_CA_CERT, LANYARD_ADMIN_CERT, LANYARD_ADMIN_KEY).
--key is a PEM file or an RFC 7512 PKCS#11 URI (an HSM, or your own Lanyard card), e.g.
  'pkcs11:token=…;object=…?module-path=/path/to/module.so&pin-source=file:/path/to/pin-file'
(`p11tool --list-all-privkeys --login` shows the URIs of a token's keys).
On the CA host, --dir DIR (the CA directory) works without a server for
add-operator (the first operator), issue-card and list-cards; audited as admin:$USER.

Output: readable lines; --json prints one JSON document instead.

Exit status: 0 success (also when an action waits for a second operator's approval),
1 error, 2 usage error or argument refused by the CA, 3 CA unreachable,
4 permission denied (not an operator certificate, self-approval),
5 not found or wrong state (unknown card or approval, card not in a state for this),
6 audit chain broken (audit --verify).";

/// IT-desk commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Issue a virtual card to a person and print its one-time enrolment code.
    #[command(
        long_about = "Issue a virtual card to a person and print its one-time enrolment code.\n\n\
            The code (16 characters in four groups, e.g. 7KQD-9M2X-H4TA-PZ3E) works once, \
            expires after --valid-hours (default from ca.toml, 72), and is stored only as a hash: \
            give it to the card holder by a trusted channel. They enrol with \
            `lanyard enroll --ca https://HOST:PORT --ca-cert root.pem --code CODE`.",
        after_help = AFTER_HELP
    )]
    IssueCard(IssueCardArgs),
    /// Give an existing card a new enrolment code (expired, revoked, destroyed or lost device).
    #[command(
        long_about = "Give an existing card a new enrolment code.\n\n\
            The card keeps its id (and the device its slot); its unexpired certificates are \
            revoked (superseded), any earlier code stops working, and the card is 'issued' \
            until the holder enrols again with the new code.",
        after_help = AFTER_HELP
    )]
    ReissueCard(ReissueCardArgs),
    /// List cards with their state (issued, active, suspended, revoked).
    #[command(after_help = AFTER_HELP)]
    ListCards(ListCardsArgs),
    /// Show one card with its certificates and any outstanding PIN reset code.
    #[command(after_help = AFTER_HELP)]
    ShowCard(CardArgs),
    /// Revoke a card and all its certificates (final; reissue-card starts it again).
    #[command(
        long_about = "Revoke a card and all its certificates, with an RFC 5280 reason.\n\n\
            The CRL lists its certificates from then on and the device removes the card at its \
            next check-in. Reasons: unspecified, key-compromise, ca-compromise, \
            affiliation-changed, superseded, cessation-of-operation, privilege-withdrawn, \
            aa-compromise (or their RFC 5280 codes). To put a card on hold use `suspend`.",
        after_help = AFTER_HELP
    )]
    Revoke(RevokeArgs),
    /// Put an enrolled card on hold (its certificates on the CRL as certificateHold).
    #[command(after_help = AFTER_HELP)]
    Suspend(CardArgs),
    /// Take a suspended card off hold.
    #[command(after_help = AFTER_HELP)]
    Resume(CardArgs),
    /// Release a one-time PIN reset code for an enrolled card (after checking the holder's identity).
    #[command(
        long_about = "Release a one-time PIN reset code for an enrolled card.\n\n\
            Check the holder's identity first. The code is bound to this card, expires \
            (reset_code_validity_hours) and allows reset_code_tries wrong attempts; a new code \
            ends the previous one. The holder runs `lanyard reset-pin --code CODE`; their device \
            makes a new key and the old certificate is revoked (superseded). With \
            require_second_operator = [\"reset-pin\"] the code is only released when another \
            operator approves.",
        after_help = AFTER_HELP
    )]
    ResetPin(CardArgs),
    /// Read the audit log; --verify checks its hash chain.
    #[command(
        long_about = "Read the audit log (who did what, to which card, from where, when).\n\n\
            --verify also recomputes the whole hash chain: if a record was edited, inserted or \
            deleted in the database, the command names the first record that does not chain \
            and exits with status 6.",
        after_help = AFTER_HELP
    )]
    Audit(AuditArgs),
    /// Issue an IT-desk operator certificate (registration authority role).
    #[command(
        long_about = "Issue an IT-desk operator certificate (id-kp-cmcRA) valid for \
            operator_cert_lifetime_days and register it.\n\n\
            The first operator is made on the CA host:\n  \
            lanyard-ca admin add-operator --dir /var/lib/lanyard-ca --name \"Grace Hopper\" \\\n      \
            --new-key grace.key --out grace.pem\n\
            (or --key FILE|pkcs11:URI for a key that exists, e.g. on the operator's own card).\n\
            Later operators are added by an operator over the network; the new operator's key \
            comes from --new-key, --operator-key or --csr. With require_second_operator = \
            [\"add-operator\"] a second operator must approve, and receives the certificate.",
        after_help = AFTER_HELP
    )]
    AddOperator(AddOperatorArgs),
    /// List actions waiting for a second operator's approval.
    #[command(after_help = AFTER_HELP)]
    Approvals(PlainArgs),
    /// Approve another operator's pending action; you receive its result.
    #[command(after_help = AFTER_HELP)]
    Approve(ApproveArgs),
}

/// Connection and output options every network command takes.
#[derive(Debug, Args)]
pub struct PlainArgs {
    /// How to reach the CA.
    #[command(flatten)]
    pub conn: Connection,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `--dir` and `--database`: working on the CA directory (on the CA host, no server).
#[derive(Debug, Args)]
pub struct HostArgs {
    /// On the CA host: the CA directory, instead of --ca.
    #[arg(long, value_name = "DIR", env = "LANYARD_CA_DIR")]
    pub dir: Option<PathBuf>,
    /// With --dir: the database, overriding ca.toml's (a postgres:// URL).
    #[arg(long, value_name = "URL", requires = "dir")]
    pub database: Option<String>,
}

impl HostArgs {
    /// The CA directory opened, when `--dir` is given without `--ca`
    /// (both is a usage error); `None` means over the network.
    pub async fn open(&self, conn: &Connection) -> Result<Option<Host>, CaError> {
        match (&self.dir, &conn.ca) {
            (Some(_), Some(_)) => Err(CaError::InvalidArgument(
                "give either --dir (on the CA host) or --ca (over the network), not both \
                 (check LANYARD_CA_DIR and LANYARD_ADMIN_CA)"
                    .into(),
            )),
            (Some(dir), None) => Ok(Some(Host::open(dir, self.database.as_deref()).await?)),
            (None, _) => Ok(None),
        }
    }
}

/// Arguments of the commands about one card.
#[derive(Debug, Args)]
pub struct CardArgs {
    /// The card id (12 hex characters).
    #[arg(long = "card", value_name = "ID")]
    pub card: String,
    /// Connection and output.
    #[command(flatten)]
    pub common: PlainArgs,
}

/// Arguments of `admin issue-card`.
#[derive(Debug, Args)]
pub struct IssueCardArgs {
    /// On the CA host instead of over the network.
    #[command(flatten)]
    pub host: HostArgs,
    /// The holder's name as it should appear on the card, e.g. "Dr Ada Smith".
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The holder's user id, e.g. 555123456789.
    #[arg(long, value_name = "ID")]
    pub user_id: String,
    /// The holder's role, e.g. "R8000 Clinical Practitioner".
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// Hours the enrolment code stays valid (default: enrolment_code_validity_hours in ca.toml; with --dir only).
    #[arg(long, value_name = "H", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CODE_VALIDITY_HOURS)))]
    pub valid_hours: Option<u32>,
    /// Connection and output; --json prints {code, card_id, expires_at, name, user_id, role}.
    #[command(flatten)]
    pub common: PlainArgs,
}

/// Arguments of `admin reissue-card`.
#[derive(Debug, Args)]
pub struct ReissueCardArgs {
    /// The card id (12 hex characters).
    #[arg(long = "card", value_name = "ID")]
    pub card: String,
    /// Connection and output; --json prints {code, card_id, expires_at}.
    #[command(flatten)]
    pub common: PlainArgs,
}

/// Arguments of `admin list-cards`.
#[derive(Debug, Args)]
pub struct ListCardsArgs {
    /// On the CA host instead of over the network.
    #[command(flatten)]
    pub host: HostArgs,
    /// Only cards in this state: issued, active, suspended or revoked.
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only cards of this user id.
    #[arg(long, value_name = "ID")]
    pub user_id: Option<String>,
    /// Connection and output; --json prints an array of
    /// {card_id, name, user_id, role, state, created_at, cert_not_after}.
    #[command(flatten)]
    pub common: PlainArgs,
}

/// Arguments of `admin revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The card id (12 hex characters).
    #[arg(long = "card", value_name = "ID")]
    pub card: String,
    /// RFC 5280 reason: key-compromise, affiliation-changed, superseded,
    /// cessation-of-operation, privilege-withdrawn, unspecified… or its code.
    #[arg(long, value_name = "REASON")]
    pub reason: String,
    /// Connection and output.
    #[command(flatten)]
    pub common: PlainArgs,
}

/// Arguments of `admin audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records about this card.
    #[arg(long = "card", value_name = "ID")]
    pub card: Option<String>,
    /// Only records after this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after_seq: i64,
    /// At most this many records (default 1000, at most 10000).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: u32,
    /// Also check the whole hash chain; exit status 6 names the first broken record.
    #[arg(long)]
    pub verify: bool,
    /// Connection and output.
    #[command(flatten)]
    pub common: PlainArgs,
}

/// Arguments of `admin add-operator`.
#[derive(Debug, Args)]
#[command(mut_arg("dir", |a| a.help(
    "On the CA host: the CA directory (bootstrap of the first operator), instead of --ca"
)))]
pub struct AddOperatorArgs {
    /// On the CA host instead of over the network.
    #[command(flatten)]
    pub host: HostArgs,
    /// The operator's name, the certificate's CN (e.g. "Grace Hopper").
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Generate a new P-256 key for the operator into FILE (PKCS#8 PEM, 0600; never overwritten).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["operator_key", "csr"])]
    pub new_key: Option<PathBuf>,
    /// The new operator's existing key: a PEM file or a pkcs11: URI (with --dir, --key does the same).
    #[arg(long, value_name = "FILE|URI", conflicts_with = "csr")]
    pub operator_key: Option<String>,
    /// A PKCS#10 request (PEM or DER) the new operator made for their key.
    #[arg(long, value_name = "FILE")]
    pub csr: Option<PathBuf>,
    /// Where to write the certificate (PEM, followed by the issuing CA's).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Connection and output; --json prints {name, serial, certificate, not_after}.
    #[command(flatten)]
    pub common: PlainArgs,
}

/// Arguments of `admin approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The approval id, from `approvals`.
    #[arg(value_name = "ID")]
    pub approval_id: String,
    /// For an add-operator approval: where to write the new operator's certificate.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Connection and output.
    #[command(flatten)]
    pub common: PlainArgs,
}

/// Runs an admin command.
pub async fn run(cmd: AdminCommand) -> Result<(), CaError> {
    match cmd {
        AdminCommand::IssueCard(args) => cards::issue(args).await,
        AdminCommand::ReissueCard(args) => cards::reissue(args).await,
        AdminCommand::ListCards(args) => cards::list(args).await,
        AdminCommand::ShowCard(args) => cards::card_call(CardCall::Show, args).await,
        AdminCommand::Revoke(args) => cards::revoke(args).await,
        AdminCommand::Suspend(args) => cards::card_call(CardCall::Suspend, args).await,
        AdminCommand::Resume(args) => cards::card_call(CardCall::Resume, args).await,
        AdminCommand::ResetPin(args) => cards::reset_pin(args).await,
        AdminCommand::Audit(args) => audit::run(args).await,
        AdminCommand::AddOperator(args) => operators::add(args).await,
        AdminCommand::Approvals(args) => operators::approvals(args).await,
        AdminCommand::Approve(args) => operators::approve(args).await,
    }
}
