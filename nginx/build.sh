#!/usr/bin/env bash
# Builds ngx_http_apim_sas_module.so against the nginx on this machine and prints its path as the
# last line; with --deb, builds the Debian package libnginx-mod-http-apim-sas and prints its path.
#
#   nginx/build.sh          # the module, for /usr/sbin/nginx
#   nginx/build.sh --deb    # the module and its .deb
#   nginx/build.sh --test [ARGS]   # the module, then its tests against that nginx (cargo test ARGS)
#
# Debian and Ubuntu: apt-get install nginx nginx-dev clang libclang-dev build-essential
#   libpcre2-dev libssl-dev zlib1g-dev (and Rust). nginx-dev ships nginx's headers and the flags
#   Debian built nginx with, so the module's signature is /usr/sbin/nginx's.
# Another nginx (an nginx.org source tree): NGINX_SOURCE_DIR=/path/to/nginx-1.x.y and, when the
#   binary is not /usr/sbin/nginx, NGINX_BINARY=/path/to/sbin/nginx; the tree is configured with
#   the arguments `nginx -V` prints (less its --add-module and --add-dynamic-module entries).
# NGINX_BUILD_DIR overrides the build directory (default: target/nginx-build/<version>). Nothing
# is written into the source tree.
set -euo pipefail

usage() { sed -n '2,17s/^# \{0,1\}//p' "$0"; }
deb=false
test=false
case "${1:-}" in
  "") ;;
  --deb) deb=true ;;
  --test) test=true ;;
  -h | --help) usage; exit 0 ;;
  *) echo "build.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac
if $test; then shift; else [ $# -le 1 ] || { echo "build.sh: one argument at most" >&2; exit 2; }; fi

die() { echo "build.sh: $*" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
nginx_bin=${NGINX_BINARY:-/usr/sbin/nginx}
src=${NGINX_SOURCE_DIR:-/usr/share/nginx/src}

[ -x "$nginx_bin" ] || die "no nginx at $nginx_bin (apt-get install nginx, or set NGINX_BINARY)"
[ -x "$src/configure" ] || die "no nginx source at $src (apt-get install nginx-dev, or set NGINX_SOURCE_DIR)"
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs)"
version=$("$nginx_bin" -v 2>&1 | sed -n 's|^nginx version: [^/]*/\([0-9.]*\).*|\1|p')
[ -n "$version" ] || die "cannot read the version of $nginx_bin"
grep -q "NGINX_VERSION *\"$version\"" "$src/src/core/nginx.h" ||
  die "the source at $src is not nginx $version (the version of $nginx_bin)"

target=${CARGO_TARGET_DIR:-$root/target}
build=${NGINX_BUILD_DIR:-$target/nginx-build/$version}
mkdir -p "$build"
build=$(cd "$build" && pwd)

# Configure as the binary was: Debian's own flags (what dh_nginx uses) where nginx-dev put them,
# else the binary's configure arguments.
if [ -f "$src/conf_flags" ]; then
  # shellcheck disable=SC1091
  flags=$(cd "$src" && . ./conf_flags && printf '%q ' "${NGX_CONF_FLAGS[@]}")
  cc_opt="$(dpkg-buildflags --get CFLAGS) -fPIC $(dpkg-buildflags --get CPPFLAGS)"
  ld_opt="$(dpkg-buildflags --get LDFLAGS) -fPIC"
  flags="$flags --with-cc-opt=$(printf '%q' "$cc_opt") --with-ld-opt=$(printf '%q' "$ld_opt")"
else
  arguments=$("$nginx_bin" -V 2>&1 | sed -n 's/^configure arguments: //p')
  eval "all=($arguments)"
  flags=""
  for flag in "${all[@]}"; do
    case "$flag" in --add-module=* | --add-dynamic-module=*) continue ;; esac
    flags="$flags $(printf '%q' "$flag")"
  done
fi
if [ ! -f "$build/Makefile" ] || [ "$(cat "$build/.configured" 2>/dev/null)" != "$src $flags" ]; then
  echo "== configuring nginx $version ($src) into $build" >&2
  (cd "$src" && eval "./configure $flags --builddir=$(printf '%q' "$build")") >"$build/configure.log" 2>&1 ||
    { tail -n 30 "$build/configure.log" >&2; die "configure failed (log: $build/configure.log)"; }
  echo "$src $flags" >"$build/.configured"
fi

echo "== cargo build --release -p ngx_http_apim_sas_module" >&2
NGINX_SOURCE_DIR="$src" NGINX_BUILD_DIR="$build" \
  cargo build --release --locked -p ngx_http_apim_sas_module --manifest-path "$root/Cargo.toml" >&2

out="$target/nginx-module"
mkdir -p "$out"
so="$out/ngx_http_apim_sas_module.so"
cp "$target/release/libngx_http_apim_sas_module.so" "$so.tmp"
mv "$so.tmp" "$so"

# The binary must take it: `load_module` checks the module's signature against its own.
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
printf 'load_module %s;\nevents {}\n' "$so" >"$check/nginx.conf"
"$nginx_bin" -q -t -p "$check" -c "$check/nginx.conf" -g "error_log stderr; pid $check/nginx.pid;" ||
  die "$nginx_bin does not load $so"

if $test; then
  echo "== cargo test --release -p ngx_http_apim_sas_module $*" >&2
  NGINX_SOURCE_DIR="$src" NGINX_BUILD_DIR="$build" APIM_SAS_NGINX_MODULE="$so" NGINX_BINARY="$nginx_bin" \
    cargo test --release --locked -p ngx_http_apim_sas_module --manifest-path "$root/Cargo.toml" "$@" >&2
fi
if ! $deb; then
  echo "$so"
  exit 0
fi

# The package, laid out as Debian's own libnginx-mod-* packages.
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
abi=$(dpkg-query -W -f '${Provides}' nginx 2>/dev/null | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p')
[ -n "$abi" ] || die "the installed nginx package provides no nginx-abi-… (is it Debian's nginx?)"
crate_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
name=libnginx-mod-http-apim-sas
stage="$check/pkg"
names="mod-http-apim-sas.conf:50-mod-http-apim-sas.conf"
install -D -m 0644 "$so" "$stage/usr/lib/nginx/modules/ngx_http_apim_sas_module.so"
install -d "$stage/usr/share/nginx/modules-available" "$stage/DEBIAN" "$stage/usr/share/doc/$name"
echo "load_module modules/ngx_http_apim_sas_module.so;" >"$stage/usr/share/nginx/modules-available/mod-http-apim-sas.conf"
cp "$root/LICENSE-MIT" "$stage/usr/share/doc/$name/copyright"
cat >"$stage/DEBIAN/control" <<EOF
Package: $name
Version: $crate_version-1
Architecture: $arch
Section: httpd
Priority: optional
Maintainer: apim-sas developers <apim-sas@users.noreply.github.com>
Depends: $abi, libc6
Recommends: nginx
Installed-Size: $(du -k -s "$stage/usr" | cut -f1)
Description: Azure API Management shared-access token verification for nginx
 The apim_sas directives verify Azure API Management gateway and management
 tokens (GatewayKey, SharedAccessSignature) in nginx's access phase, with
 keys from a keystore file, and expose who the token was as variables.
EOF
# The maintainer scripts of Debian's dh_nginx (autoscripts postinst-nginx, prerm-nginx,
# postrm-nginx): the snippet is enabled on install, kept aside on remove, gone on purge.
cat >"$stage/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
for confpair in $names; do
	from=\$(echo \$confpair | cut -d: -f1)
	to=\$(echo \$confpair | cut -d: -f2)
	if [ -L /etc/nginx/modules-enabled/\$to.removed ]; then
		rm /etc/nginx/modules-enabled/\$to.removed
		removed_link=true
	else
		removed_link=false
	fi
	if [ -z "\$2" -o "\$removed_link" = "true" ]; then
		mkdir -p /etc/nginx/modules-enabled
		ln -sf /usr/share/nginx/modules-available/\$from /etc/nginx/modules-enabled/\$to
	fi
done
if [ "\$1" = "configure" ] && which dpkg-trigger >/dev/null 2>&1; then
	dpkg-trigger --no-await nginx-reload
fi
EOF
cat >"$stage/DEBIAN/prerm" <<EOF
#!/bin/sh
set -e
if [ "\$1" = "remove" ] || [ "\$1" = "deconfigure" ]; then
	for confpair in $names; do
		to=\$(echo \$confpair | cut -d: -f2)
		if [ -L /etc/nginx/modules-enabled/\$to ]; then
			mv /etc/nginx/modules-enabled/\$to /etc/nginx/modules-enabled/\$to.removed
		fi
	done
fi
EOF
cat >"$stage/DEBIAN/postrm" <<EOF
#!/bin/sh
set -e
if [ "\$1" = "purge" ]; then
	for confpair in $names; do
		to=\$(echo \$confpair | cut -d: -f2)
		rm -f /etc/nginx/modules-enabled/\$to /etc/nginx/modules-enabled/\$to.removed
	done
fi
if [ "\$1" = "remove" ] && which dpkg-trigger >/dev/null 2>&1; then
	dpkg-trigger --no-await nginx-reload
fi
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
package="$out/${name}_${crate_version}-1_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$package" >&2
echo "$package"
