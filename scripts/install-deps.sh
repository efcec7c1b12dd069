#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing and the demo need.
# Idempotent: returns at once when every package is already installed. Run as root.
set -euo pipefail

PACKAGES=(
    ca-certificates          # TLS roots for cargo
    pkg-config libssl-dev    # the openssl crate (card keys)
    gcc libc6-dev            # linker and C runtime for -sys crates
    openssl                  # dgst -verify, verify, x509 in tests and the demo
    opensc                   # pkcs11-tool
    libengine-pkcs11-openssl # libp11: OpenSSL's pkcs11 engine
    gnutls-bin               # p11tool, certtool, gnutls-cli, gnutls-serv
    libnss3-tools            # NSS: modutil, certutil, tstclnt (lanyard nss-register, NSS client tests)
    curl                     # curl --engine pkcs11 (TLS client authentication test)
    openssh-client           # ssh -I, ssh-keygen -D, ssh -R (agent socket forwarding test)
    openssh-server           # sshd: the throwaway server the OpenSSH tests log in to
    openjdk-17-jdk-headless  # javac/java: the SunPKCS11 test program
    p11-kit                  # p11-kit list-modules (packaging/p11-kit/lanyard.module test)
    chromium                 # headless Chromium: TLS client authentication with the card (protected path test)
    util-linux               # setpriv, setsid (peer-uid test, child reaping, no-tty test)
    bsdutils                 # script: a pseudo-terminal for the PIN prompt test
    procps                   # pgrep/ps in tests
    gdb                      # gcore: the non-dumpable daemon test (a core dump by the same user is refused)
    coreutils                # timeout, mktemp
    passwd                   # user 'nobody' / group 'nogroup' exist
    jq                       # demo.sh reads the CA's and the CLI's JSON
    libp11-kit-dev           # pkcs11.h for the C PKCS#11 client in the system tests
    postgresql               # the CA's PostgreSQL backend, tested for real (scripts/postgres.sh)
    softhsm2                 # SoftHSM2: the HSM that holds the issuing CA key in tests; lanyard-bench's reference token
    p11-kit-modules          # p11-kit-client.so: lanyard-bench's "SoftHSM2 behind p11-kit remoting" reference
    fonts-dejavu-core        # the TTF font lanyard-bench's renewal-storm plot is labelled with
    libpcsclite-dev          # the pcsc crate links libpcsclite (lanyard readers, PC/SC tests)
    pcscd                    # pcsc-lite: the PC/SC daemon the virtual reader plugs into
    pcsc-tools               # pcsc_scan: looking at readers by hand (README)
    dpkg-dev                 # dpkg-deb, dpkg-shlibdeps: packaging/build-debs.sh builds the .debs
    lintian                  # the .debs are checked with lintian (no errors) in the package test
    adduser                  # lanyard-ca's postinst creates its system user (dpkg -i in the package test)
    systemd                  # systemd-analyze verify (units) and systemd-socket-activate (socket activation test)
    swtpm                    # a software TPM 2.0: device_secret = "tpm" is tested against it
    swtpm-tools              # swtpm_setup: manufactures the software TPM's state
    tpm2-tools               # tpm2_* commands: inspecting the TPM in tests and by hand
    libtss2-dev              # tpm2-tss ESAPI (and its swtpm TCTI) for the tss-esapi crate
    afl++                    # afl-fuzz and afl-compiler-rt.o: scripts/fuzz.sh (the fuzz smoke in the test command)
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run this script as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
# Wait for a concurrent apt (another shell, unattended-upgrades) instead of failing.
export DEBIAN_FRONTEND=noninteractive
if ! apt-get -o DPkg::Lock::Timeout=600 update; then
    echo "install-deps: apt-get update failed" >&2
    exit 1
fi
if ! apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"; then
    echo "install-deps: apt-get install failed for: ${missing[*]}" >&2
    exit 1
fi
echo "install-deps: done"
