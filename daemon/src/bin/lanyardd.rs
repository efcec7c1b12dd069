//! `lanyardd`: the per-user virtual smartcard daemon. Thin glue: arguments,
//! logging, hardening, then the library's socket server until SIGINT/SIGTERM.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use lanyard_daemon::config::Config;
use lanyard_daemon::pcsc::VpcdEndpoint;
use lanyard_daemon::shutdown::{wait_for_signal, SocketGuard};
use lanyard_daemon::state::Daemon;
use lanyard_daemon::{
    check_in, hardening, idle_exit, idle_lock, paths, pcsc, renewal, server, socket_activation,
};

/// lanyardd — keeps your virtual smartcards and signs for applications that
/// use the Lanyard PKCS#11 module. One daemon per user; keys never leave it.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Config keys (lanyardd.toml, all optional): slots = 2, pin_min_len = 6 (>= 6), \
pin_max_len = 8, max_pin_failures = 3, argon2_memory_kib = 65536, argon2_iterations = 3, \
argon2_parallelism = 1, log_level = \"info\" (RUST_LOG overrides it), renewal_fraction = 0.67, \
device_secret = \"file\" (or \"tpm\": sealed to the TPM, PIN retry counters in TPM NV counters), \
tpm_tcti = \"device:/dev/tpmrm0\", \
renewal_jitter_fraction = 0.05, renewal_retry_min_secs = 5, renewal_retry_max_secs = 3600, \
expiry_warning_fraction = 0.1, check_in_interval_secs = 900, protected_path = false, \
unlock_idle_timeout_secs = 900, pinentry_program = \"pinentry\", pinentry_timeout_secs = 60 (each of \
the last ten overridden by LANYARDD_<KEY IN CAPITALS>, e.g. LANYARDD_CHECK_IN_INTERVAL_SECS); \
[pcsc] vpcd_listen = \"127.0.0.1:35963\" (off by default), vpcd_connect = \"HOST:PORT\", card = \"<card id>\"; \
[daemon] idle_exit = \"10m\" (\"off\" = never; default 10m when socket-activated, never otherwise).\n\
Socket activation: with LISTEN_PID/LISTEN_FDS (systemd's lanyardd.socket, or systemd-socket-activate), \
fd 3 is the agent socket and --socket is not used.\n\
Cards are kept in $XDG_DATA_HOME/lanyard (or ~/.local/share/lanyard). Stop with SIGINT or SIGTERM."
)]
struct Args {
    /// Agent socket path. Default: $LANYARD_AGENT_SOCK, else
    /// $XDG_RUNTIME_DIR/lanyard/agent.sock, else /tmp/lanyard-$UID/agent.sock.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Configuration file. Default: $XDG_CONFIG_HOME/lanyard/lanyardd.toml
    /// (or ~/.config/lanyard/lanyardd.toml); a missing file means defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Show the card in a PC/SC reader: listen on this loopback IP:PORT for
    /// pcscd's vpcd driver in reversed mode (e.g. 127.0.0.1:35963). Overrides
    /// [pcsc] vpcd_listen; a non-loopback address is refused.
    #[arg(long, value_name = "IP:PORT", conflicts_with = "vpcd")]
    vpcd_listen: Option<String>,
    /// Connect to a vpcd that listens at HOST:PORT instead (vpcd's default
    /// mode listens on all interfaces: only where that port is firewalled).
    #[arg(long, value_name = "HOST:PORT")]
    vpcd: Option<String>,
    /// Stop after this long with nothing to do (e.g. 10m, 90s; off = never).
    /// Overrides [daemon] idle_exit. Default: 10m when socket-activated, else never.
    #[arg(long, value_name = "DURATION")]
    idle_exit: Option<String>,
}

pub(crate) fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanyardd: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The vpcd endpoint: a flag wins over `[pcsc]` in the config file.
fn vpcd_endpoint(
    listen: &Option<String>,
    connect: &Option<String>,
    config: &Config,
) -> Result<Option<VpcdEndpoint>, String> {
    match (listen, connect) {
        (Some(l), _) => VpcdEndpoint::listen(l).map(Some),
        (None, Some(c)) => VpcdEndpoint::connect(c).map(Some),
        (None, None) => config.pcsc.endpoint(),
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // Nothing this daemon creates is for anyone else.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    // No core dumps or ptrace by other processes of this user: keys live in memory.
    if let Err(e) = hardening::set_not_dumpable() {
        eprintln!("lanyardd: warning: {e}");
    }
    // Before any key exists and before any other thread: private keys in locked memory.
    let key_memory = hardening::lock_key_memory();
    let config_path = match args.config {
        Some(p) => p,
        None => paths::config_file()?,
    };
    let config = Config::load(&config_path)?;
    let vpcd = vpcd_endpoint(&args.vpcd_listen, &args.vpcd, &config)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_level))
        .map_err(|e| anyhow::anyhow!("config {}: bad log_level: {e}", config_path.display()))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // systemd's listener (LISTEN_FDS), if any; the LISTEN_* variables are removed.
    let activated = socket_activation::take_from_env()?;
    let idle_period = idle_exit::period(
        args.idle_exit.as_deref(),
        &config.daemon,
        activated.is_some(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let socket_path = match &activated {
        Some(a) => {
            let configured = paths::socket_path(args.socket);
            if configured != a.path {
                tracing::warn!(activated = %a.path.display(), configured = %configured.display(), "socket-activated on another path than the configured one; clients must use the activated one");
            }
            a.path.clone()
        }
        None => paths::socket_path(args.socket),
    };
    let store_dir = paths::store_dir()?;
    // Refuse to start on a card store other users could read or change.
    lanyard_daemon::card_store::check_store_access(&store_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // An activated socket belongs to systemd: it stays when lanyardd stops.
        let (listener, _guard) = match activated {
            Some(a) => (server::adopt_listener(a.listener)?, None),
            None => (
                server::bind_socket(&socket_path)?,
                Some(SocketGuard(socket_path.clone())),
            ),
        };
        let daemon = Arc::new(Daemon::open(config, &store_dir, socket_path.clone())?);
        hardening::log_key_memory(key_memory);
        tracing::info!(
            socket = %socket_path.display(),
            store = %store_dir.display(),
            config = %config_path.display(),
            cards = daemon.cards(None).len(),
            version = lanyard_daemon::DAEMON_VERSION,
            socket_activated = _guard.is_none(),
            idle_exit = idle_period.map(idle_exit::humanize).unwrap_or_else(|| "off".into()),
            "lanyardd ready"
        );
        // Background lifecycle work and the unlock's idle timer; all end with the runtime.
        tokio::spawn(renewal::run_scheduler(daemon.clone()));
        // Each card's first signature waits for its start-up check-in.
        check_in::hold_first_signatures(&daemon);
        tokio::spawn(check_in::run(daemon.clone()));
        tokio::spawn(idle_lock::run(daemon.clone()));
        if let Some(endpoint) = vpcd {
            pcsc::start(daemon.clone(), endpoint, daemon.config().pcsc.card.clone()).await?;
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<&'static str>();
        tokio::spawn(async move {
            match wait_for_signal().await {
                Ok(sig) => {
                    let _ = tx.send(sig);
                }
                Err(e) => tracing::error!(error = %e, "signal handling unavailable"),
            }
        });
        let idle = {
            let daemon = daemon.clone();
            async move {
                match idle_period {
                    Some(period) => idle_exit::watch(daemon, period).await,
                    None => std::future::pending().await,
                }
            }
        };
        server::serve(listener, daemon, async {
            tokio::select! {
                sig = rx => {
                    if let Ok(sig) = sig {
                        tracing::info!(signal = sig, "stopping");
                    }
                }
                why = idle => tracing::info!(reason = %why, "stopping: idle exit"),
            }
        })
        .await;
        Ok::<(), anyhow::Error>(())
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}
