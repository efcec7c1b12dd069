#!/usr/bin/env bash
# Builds the Debian packages lanyard_VERSION_ARCH.deb (daemon, CLI, PKCS#11 module,
# p11-kit registration, pcsc-lite driver, systemd user units) and lanyard-ca_VERSION_ARCH.deb
# (the CA as a hardened system service) from the release build, with dpkg-deb.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/build-debs.sh [--out DIR] [--no-build]

  --out DIR    write the .debs to DIR (created if absent); default: target/debian
  --no-build   use the binaries already in the release directory ($CARGO_TARGET_DIR
               or target/, profile release) instead of running `cargo build --release`

Prints the path of each .deb built, one per line, on standard output.
Exit status: 0 built, 1 error, 2 usage error.
EOF
}

say() { printf 'build-debs: %s\n' "$*" >&2; }
die() { printf 'build-debs: error: %s\n' "$*" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/target/debian"
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; OUT=$2; shift 2 ;;
        --out=*) OUT=${1#--out=}; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build-debs: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ -n "$OUT" ]] || { echo "build-debs: --out needs a directory" >&2; exit 2; }

for tool in dpkg-deb dpkg-shlibdeps dpkg-architecture strip gzip md5sum; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh as root (dpkg-dev, binutils)"
done

PKG="$ROOT/packaging"
# The workspace version ([workspace.package] in Cargo.toml), Debian revision 1.
UPSTREAM=$(awk '/^\[/ { sect = $0 } sect == "[workspace.package]" && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.toml")
[[ "$UPSTREAM" =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || die "no usable version in [workspace.package] of $ROOT/Cargo.toml (found '$UPSTREAM')"
VERSION="$UPSTREAM-1"
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
# pcsc-lite's driver directory (pkg-config --variable=usbdropdir libpcsclite on Debian).
PCSC_DRIVERS=/usr/lib/pcsc/drivers

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN="$TARGET_DIR/release"
ARTEFACTS=(lanyardd lanyard lanyard-ca liblanyard_pkcs11.so liblanyard_vpcd.so)

if [[ $BUILD -eq 1 ]]; then
    command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain, or give --no-build"
    say "building the release binaries (cargo build --release --locked)…"
    (cd "$ROOT" && cargo build --release --locked -p lanyard-daemon -p lanyard-ca \
        -p lanyard-pkcs11 -p lanyard-vpcd-driver) >&2 || die "cargo build failed"
fi
for f in "${ARTEFACTS[@]}"; do
    [[ -f "$BIN/$f" ]] || die "$BIN/$f is missing: build it (cargo build --release --workspace) or run without --no-build"
done

mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lanyard-debs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
umask 022

# install_file MODE SOURCE DEST: one file into the package tree, parents 0755.
install_file() {
    install -D -m "$1" "$2" "$3" || die "cannot install $2 as $3"
}

# Executables and shared objects without symbols (the debug line tables stay in
# target/), as dh_strip does.
install_stripped() {
    install_file "$1" "$2" "$3"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$3" \
        || die "strip $3 failed"
}

# doc_files PACKAGE ROOT: copyright and changelog.Debian.gz in /usr/share/doc/PACKAGE.
doc_files() {
    local doc="$2/usr/share/doc/$1"
    install_file 0644 "$PKG/deb/copyright" "$doc/copyright"
    sed "s/@VERSION@/$VERSION/" "$PKG/deb/changelog" | gzip -9n >"$WORK/changelog.gz"
    install_file 0644 "$WORK/changelog.gz" "$doc/changelog.Debian.gz"
}

# man_page SECTION NAME ROOT
man_page() {
    gzip -9n <"$PKG/man/$2.$1" >"$WORK/$2.$1.gz"
    install_file 0644 "$WORK/$2.$1.gz" "$3/usr/share/man/man$1/$2.$1.gz"
}

# depends FILE…: the shared-library dependencies dpkg-shlibdeps finds for FILEs.
depends() {
    local dir="$WORK/shlibdeps" line
    mkdir -p "$dir/debian"
    printf 'Source: lanyard\n\nPackage: lanyard\nArchitecture: any\n' >"$dir/debian/control"
    line=$(cd "$dir" && dpkg-shlibdeps -O "${@/#/-e}" 2>"$WORK/shlibdeps.log") \
        || { cat "$WORK/shlibdeps.log" >&2; die "dpkg-shlibdeps failed"; }
    line=${line#shlibs:Depends=}
    [[ -n "$line" ]] || die "dpkg-shlibdeps found no dependencies for $*"
    printf '%s' "$line"
}

# control PACKAGE ROOT DEPENDS: DEBIAN/control from control.in, DEBIAN/md5sums, scripts.
control() {
    local name=$1 root=$2 deps=$3 size script
    mkdir -p "$root/DEBIAN"
    size=$(du -sk --apparent-size "$root" | cut -f1)
    sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$size/" \
        -e "s/@DEPENDS@/$deps/" "$PKG/deb/$name/control.in" >"$root/DEBIAN/control"
    (cd "$root" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums" \
        || die "md5sum of $name's files failed"
    for script in conffiles postinst prerm postrm; do
        [[ -f "$PKG/deb/$name/$script" ]] || continue
        if [[ $script = conffiles ]]; then
            install -m 0644 "$PKG/deb/$name/$script" "$root/DEBIAN/$script"
        else
            install -m 0755 "$PKG/deb/$name/$script" "$root/DEBIAN/$script"
        fi
    done
}

# build PACKAGE ROOT: the .deb, its path on stdout.
build() {
    local deb="$OUT/${1}_${VERSION}_${ARCH}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$2" "$deb" >/dev/null || die "dpkg-deb --build $1 failed"
    say "built $deb"
    printf '%s\n' "$deb"
}

say "packaging lanyard $VERSION ($ARCH) from $BIN…"
R="$WORK/lanyard"
install_stripped 0755 "$BIN/lanyardd" "$R/usr/bin/lanyardd"
install_stripped 0755 "$BIN/lanyard" "$R/usr/bin/lanyard"
install_stripped 0644 "$BIN/liblanyard_pkcs11.so" "$R/usr/lib/$MULTIARCH/pkcs11/liblanyard_pkcs11.so"
install_stripped 0644 "$BIN/liblanyard_vpcd.so" "$R$PCSC_DRIVERS/serial/liblanyard_vpcd.so"
install_file 0644 "$PKG/p11-kit/lanyard.module" "$R/usr/share/p11-kit/modules/lanyard.module"
install_file 0644 "$PKG/systemd/lanyardd.socket" "$R/usr/lib/systemd/user/lanyardd.socket"
install_file 0644 "$PKG/systemd/lanyardd.service" "$R/usr/lib/systemd/user/lanyardd.service"
# pcscd's reader configuration only as an example: active, it would add a
# reader to every pcscd on the machine. Its LIBPATH names the packaged driver.
sed "s|^LIBPATH .*|LIBPATH      $PCSC_DRIVERS/serial/liblanyard_vpcd.so|" "$PKG/pcsc/lanyard-vpcd.conf" \
    >"$WORK/lanyard-vpcd.conf"
grep -q "^LIBPATH      $PCSC_DRIVERS/serial/liblanyard_vpcd.so\$" "$WORK/lanyard-vpcd.conf" \
    || die "$PKG/pcsc/lanyard-vpcd.conf has no LIBPATH line to point at the packaged driver"
install_file 0644 "$WORK/lanyard-vpcd.conf" "$R/usr/share/doc/lanyard/examples/lanyard-vpcd.conf"
install_file 0644 "$ROOT/README.md" "$R/usr/share/doc/lanyard/README.md"
install_file 0644 "$ROOT/SECURITY.md" "$R/usr/share/doc/lanyard/SECURITY.md"
doc_files lanyard "$R"
man_page 1 lanyardd "$R"
man_page 1 lanyard "$R"
DEPENDS=$(depends "$R/usr/bin/lanyardd" "$R/usr/bin/lanyard" \
    "$R/usr/lib/$MULTIARCH/pkcs11/liblanyard_pkcs11.so" "$R$PCSC_DRIVERS/serial/liblanyard_vpcd.so")
control lanyard "$R" "$DEPENDS"
build lanyard "$R"

say "packaging lanyard-ca $VERSION ($ARCH)…"
R="$WORK/lanyard-ca"
install_stripped 0755 "$BIN/lanyard-ca" "$R/usr/bin/lanyard-ca"
install_file 0644 "$PKG/systemd/lanyard-ca.service" "$R/usr/lib/systemd/system/lanyard-ca.service"
install_file 0644 "$PKG/ca/lanyard-ca.conf" "$R/etc/lanyard-ca/lanyard-ca.conf"
install_file 0644 "$PKG/deb/lanyard-ca/README.Debian" "$R/usr/share/doc/lanyard-ca/README.Debian"
doc_files lanyard-ca "$R"
man_page 8 lanyard-ca "$R"
DEPENDS=$(depends "$R/usr/bin/lanyard-ca")
control lanyard-ca "$R" "$DEPENDS"
build lanyard-ca "$R"
