//! `lanyard`: the clinician's command line. Thin glue over
//! `lanyard_daemon::cli`; it talks to lanyardd only over the agent socket
//! (`nss-register` drives NSS's modutil and needs no daemon).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lanyard_daemon::cli::{self, exit};
use lanyard_daemon::paths;

/// lanyard — your Lanyard virtual smartcard.
///
/// Talks to your lanyardd (which must be running) over its socket: enrol a
/// card with the code from your IT desk, see your cards, renew a card,
/// change a PIN, reset a forgotten PIN with a code from your IT desk,
/// unlock a card for your browser and lock it again; register the PKCS#11
/// module with your browsers' NSS databases.
///
/// Exit codes: 0 ok; 1 other error; 2 bad usage; 3 lanyardd not running or
/// unreachable; 4 PIN incorrect, locked or not acceptable; 5 CA or enrolment
/// failure (unreachable, busy, refused, reset code not accepted); 6 the card
/// is revoked, suspended or expired (ask your IT desk); 7 pcscd (the PC/SC
/// service) not running (`readers`); 8 the smartcard of `enroll
/// --derive-from` cannot be used (module, token, certificate or key not found).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Agent socket (default: $LANYARD_AGENT_SOCK, else
    /// $XDG_RUNTIME_DIR/lanyard/agent.sock, else /tmp/lanyard-$UID/agent.sock).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enrol a new virtual card: lanyardd generates the key, the CA certifies it.
    ///
    /// You choose the card's PIN (asked twice, not echoed; or the first line
    /// of standard input with --pin-stdin). The PIN is never an argument.
    Enroll {
        /// The CA's enrolment service, https://HOST:PORT.
        #[arg(long, value_name = "URL")]
        ca: String,
        /// PEM file of the CA root your organisation gave you; the CA's TLS
        /// certificate must chain to it.
        #[arg(long, value_name = "FILE")]
        ca_cert: PathBuf,
        /// The one-time enrolment code from your IT desk; `-` reads it from
        /// the first line of standard input (before the PIN's line with
        /// --pin-stdin), which keeps it out of the command line others see in `ps`.
        #[arg(
            long,
            value_name = "CODE",
            required_unless_present = "derive_from",
            conflicts_with = "derive_from"
        )]
        code: Option<String>,
        /// Enrol without a code, by derivation from a smartcard you already
        /// hold: the RFC 7512 URI of its certificate, e.g.
        /// 'pkcs11:token=NAME;object=LABEL'. You are asked for that card's PIN
        /// (its module runs in this process, not in lanyardd), then for the
        /// new card's PIN; with --pin-stdin, line 1 is the smartcard's PIN and
        /// line 2 the new PIN.
        #[arg(long, value_name = "PKCS11_URI")]
        derive_from: Option<String>,
        /// The smartcard's PKCS#11 module (with --derive-from; default OpenSC's
        /// /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so, for cards in a PC/SC reader).
        #[arg(long, value_name = "PATH", requires = "derive_from")]
        module: Option<PathBuf>,
        /// PEM file of intermediate CA certificates above the smartcard's
        /// certificate, sent to the CA with the proof (with --derive-from).
        #[arg(long, value_name = "FILE", requires = "derive_from")]
        physical_chain: Option<PathBuf>,
        /// Key type of the new card.
        #[arg(long, value_name = "TYPE", default_value = "rsa-2048", value_parser = ["rsa-2048", "ec-p256"])]
        key: String,
        /// Read the PIN from the first line of standard input.
        #[arg(long)]
        pin_stdin: bool,
        /// Print the new card as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the daemon and every card: subject, expiry, PIN state, status
    /// with the CA, next and last renewal, last check-in, warnings.
    Status {
        /// Print JSON (daemon_version, socket, store, cards[], problems[]).
        #[arg(long)]
        json: bool,
    },
    /// Renew a card's certificate now, with a new key (lanyardd also renews
    /// by itself while the card is unlocked).
    ///
    /// Needs no PIN while an application is logged in to the card; otherwise
    /// the PIN is asked (or read from the first line of standard input with --pin-stdin).
    Renew {
        /// The card, if more than one is enrolled (see `lanyard status`).
        #[arg(long, value_name = "ID")]
        card: Option<String>,
        /// Read the PIN, if one is needed, from standard input.
        #[arg(long)]
        pin_stdin: bool,
        /// Print the renewed card as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forgotten PIN: redeem the one-time reset code from your IT desk and
    /// choose a new PIN. The card gets a new key and certificate; the old
    /// certificate is revoked. Wrong codes are counted by the CA; when its
    /// tries run out, the card's keys are destroyed and it must be re-issued.
    ///
    /// The new PIN is asked twice (or the first line of standard input with --pin-stdin).
    ResetPin {
        /// The reset code from your IT desk; `-` reads it from the first line
        /// of standard input (before the PIN's line with --pin-stdin), which
        /// keeps it out of the command line others see in `ps`.
        #[arg(long, value_name = "CODE")]
        code: String,
        /// The card, if more than one is enrolled (see `lanyard status`).
        #[arg(long, value_name = "ID")]
        card: Option<String>,
        /// The CA, if not the one the card was enrolled with (https://HOST:PORT).
        #[arg(long, value_name = "URL")]
        ca: Option<String>,
        /// PEM file the CA's TLS certificate must chain to, if not the one given at enrolment.
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// Read the new PIN from the first line of standard input.
        #[arg(long)]
        pin_stdin: bool,
        /// Print the card as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the CA now whether each card is still in good standing (revoked,
    /// suspended, resumed); lanyardd also does so by itself periodically.
    CheckIn {
        /// Print the cards as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Change a card's PIN (current PIN once, new PIN twice).
    ///
    /// With --pin-stdin: the current PIN on line 1, the new PIN on line 2.
    /// A wrong current PIN counts towards locking the card.
    ChangePin {
        /// The card, if more than one is enrolled (see `lanyard status`).
        #[arg(long, value_name = "ID")]
        card: Option<String>,
        /// Read the PINs from standard input.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Unlock a card for applications that let Lanyard ask for the PIN
    /// (protected_path = true in lanyardd.toml, e.g. browsers): until `lanyard
    /// lock`, or until the card has not been used for the idle time, they log
    /// in without a PIN prompt.
    ///
    /// The PIN is asked on the terminal (or the first line of standard input
    /// with --pin-stdin), never an argument; a wrong PIN counts towards
    /// locking the card.
    Unlock {
        /// The card, if more than one is enrolled (see `lanyard status`).
        #[arg(long, value_name = "ID")]
        card: Option<String>,
        /// Minutes without use after which the card locks itself (default:
        /// unlock_idle_timeout_secs in lanyardd.toml, 15 minutes).
        #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(1..=1440))]
        idle: Option<u32>,
        /// Read the PIN from the first line of standard input.
        #[arg(long)]
        pin_stdin: bool,
        /// Print the card and until when it stays unlocked as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lock a card unlocked with `lanyard unlock` (every card without
    /// --card): applications that relied on it must log in again.
    Lock {
        /// The card to lock (default: every card).
        #[arg(long, value_name = "ID")]
        card: Option<String>,
        /// Print the locked cards as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the PC/SC smart card readers (through pcscd) and what is in
    /// each: no card, a Lanyard virtual card or another PIV card with its
    /// holder and certificate expiry. Does not need lanyardd.
    Readers {
        /// Print JSON (readers[]: name, card_present, atr, card, error).
        #[arg(long)]
        json: bool,
    },
    /// Register the PKCS#11 module with NSS so that Chromium and Firefox see
    /// the card: in ~/.pki/nssdb (created if missing) and every Firefox
    /// profile, or only in the databases given with --db. Running it again
    /// changes nothing. Needs NSS's modutil and certutil (libnss3-tools);
    /// does not need lanyardd.
    NssRegister {
        /// An NSS database directory (sql: format) instead of the user's;
        /// created if missing. May be given several times.
        #[arg(long, value_name = "DIR")]
        db: Vec<PathBuf>,
        /// The module to register (default: liblanyard_pkcs11.so next to
        /// lanyard, else in /usr/lib/<arch>-linux-gnu/pkcs11/ or /usr/lib/pkcs11/).
        #[arg(long, value_name = "PATH")]
        module: Option<PathBuf>,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let socket = paths::socket_path(args.socket);
    let result = match &args.command {
        Command::Enroll {
            ca,
            ca_cert,
            code,
            derive_from,
            module,
            physical_chain,
            key,
            pin_stdin,
            json,
        } => cli::enroll::run(
            &socket,
            cli::enroll::EnrollArgs {
                ca_url: ca,
                ca_cert,
                code: code.as_deref(),
                derive_from: derive_from.as_deref(),
                module: module.as_deref(),
                physical_chain: physical_chain.as_deref(),
                key,
                pin_stdin: *pin_stdin,
                json: *json,
            },
        ),
        Command::Status { json } => cli::status::run(&socket, *json),
        Command::ChangePin { card, pin_stdin } => {
            cli::change_pin::run(&socket, card.as_deref(), *pin_stdin)
        }
        Command::Renew {
            card,
            pin_stdin,
            json,
        } => cli::renew::run(&socket, card.as_deref(), *pin_stdin, *json),
        Command::ResetPin {
            code,
            card,
            ca,
            ca_cert,
            pin_stdin,
            json,
        } => cli::reset_pin::run(
            &socket,
            cli::reset_pin::ResetArgs {
                code,
                card: card.as_deref(),
                ca_url: ca.as_deref(),
                ca_cert: ca_cert.as_deref(),
                pin_stdin: *pin_stdin,
                json: *json,
            },
        ),
        Command::CheckIn { json } => cli::check_in::run(&socket, *json),
        Command::Unlock {
            card,
            idle,
            pin_stdin,
            json,
        } => cli::unlock::run(
            &socket,
            cli::unlock::UnlockArgs {
                card: card.as_deref(),
                idle_minutes: *idle,
                pin_stdin: *pin_stdin,
                json: *json,
            },
        ),
        Command::Lock { card, json } => cli::lock::run(&socket, card.as_deref(), *json),
        Command::Readers { json } => cli::readers::run(*json),
        Command::NssRegister { db, module, json } => {
            cli::nss_register::run(cli::nss_register::NssRegisterArgs {
                dbs: db,
                module: module.as_deref(),
                json: *json,
            })
        }
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("lanyard: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
