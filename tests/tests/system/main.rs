//! Whole-system tests: the real `lanyard-ca`, `lanyardd` and `liblanyard_pkcs11.so`
//! driven by real clients (`pkcs11-tool`, OpenSSL, GnuTLS, NSS, curl, OpenSSH, Java,
//! p11-kit, the `lanyard` CLI, the demo script). One test binary, so the fixtures in
//! `world` are started once and shared.

mod ca_cli;
mod chromium;
mod cms_signing;
mod corrupt_store;
mod crash;
mod daemon_config;
mod demo;
mod derived_enrolment;
mod enrolment;
mod gnutls;
mod hardening;
mod java;
mod lifecycle_reissue;
mod lifecycle_renewal;
mod lifecycle_reset_pin;
mod lifecycle_revocation;
mod lifecycle_world;
mod listing;
mod mechanisms;
mod no_daemon;
mod no_secrets;
mod nss;
mod openssh;
mod p11_kit;
mod pcsc;
mod pcsc_apdu;
mod pcsc_driver;
mod pcsc_opensc;
mod pcsc_pin_lock;
mod pcsc_readers;
mod pcsc_renewal;
mod peer_uid;
mod pin_entry;
mod pin_policy;
mod pkcs11_app;
mod pkcs11_uri;
mod proc_watch;
mod protected_path;
mod secrets;
mod selftest;
mod signing;
mod socket_activation;
mod sshd;
mod tls;
mod tls_server;
mod tpm;
mod vpcd_link;
mod world;
