//! Shared helpers for Lanyard's whole-system tests: where the built binaries are,
//! real CA and daemon fixtures, a `pkcs11-tool` runner, a scripted pinentry, and
//! child processes that never outlive the test binary (see `process`).

pub mod ca;
pub mod daemon;
pub mod kept_logs;
pub mod operator;
pub mod paths;
pub mod pcscd;
pub mod physical_card_ca;
pub mod pinentry;
pub mod pkcs11_tool;
pub mod postgres;
pub mod process;
pub mod softhsm;
pub mod swtpm;
pub mod tools;

pub use ca::{Ca, IssuedCard};
pub use daemon::{Daemon, DaemonBuilder, KeyType};
pub use operator::Operator;
pub use paths::{bin_path, module_path, release_dir};
pub use pcscd::{Pcscd, VirtualReader};
pub use pinentry::{Answer, PinentryStandIn};
pub use pkcs11_tool::{ObjectInfo, Pkcs11Tool, SlotInfo};
pub use postgres::{require_postgres, PgDatabase, TestBackend, TestDb};
pub use process::{run, CmdOutput};
pub use swtpm::Swtpm;
pub use tools::{in_ci, require_tool, tool_available};
