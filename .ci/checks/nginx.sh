#!/usr/bin/env bash
# The nginx module: built against Debian's nginx and tested in it (nginx/tests/), linted, packaged
# and installed as a Debian package, and built against the newest stable nginx (the source the
# nginx-src crate vendors), whose binary runs the same tests.
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "-- nginx/build.sh --test (Debian's nginx $(/usr/sbin/nginx -v 2>&1 | sed 's|.*/||'))"
so=$(nginx/build.sh --test | tail -n 1)
[ -f "$so" ] || { echo "build.sh printed no module: $so"; exit 1; }

echo "-- cargo clippy -p ngx_http_apim_sas_module --all-targets -- -D warnings"
version=$(/usr/sbin/nginx -v 2>&1 | sed -n 's|^nginx version: [^/]*/\([0-9.]*\).*|\1|p')
NGINX_SOURCE_DIR=/usr/share/nginx/src NGINX_BUILD_DIR="$PWD/target/nginx-build/$version" \
  cargo clippy --release --locked -p ngx_http_apim_sas_module --all-targets -- -D warnings

echo "-- nginx/build.sh --deb, installed, nginx -t, purged"
deb=$(nginx/build.sh --deb | tail -n 1)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
[ -L /etc/nginx/modules-enabled/50-mod-http-apim-sas.conf ] || { echo "the package enabled no load_module snippet"; exit 1; }
/usr/sbin/nginx -t
/usr/sbin/nginx -T 2>/dev/null | grep -qx 'load_module modules/ngx_http_apim_sas_module.so;' ||
  { echo "the system's nginx does not load the module"; exit 1; }
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq libnginx-mod-http-apim-sas >/dev/null
for gone in /etc/nginx/modules-enabled/50-mod-http-apim-sas.conf /usr/lib/nginx/modules/ngx_http_apim_sas_module.so; do
  if [ -e "$gone" ] || [ -L "$gone" ]; then echo "$gone is left after purge"; exit 1; fi
done
/usr/sbin/nginx -t

echo "-- the newest stable nginx (nginx-src, vendored): build, and the tests in its binary"
export CARGO_TARGET_DIR="$PWD/target/nginx-vendored"
# nginx.org's default build has no auth_request; nginx/tests/seams.rs drives the module behind it.
export NGX_CONFIGURE_ARGS="--with-http_auth_request_module"
cargo build --release --locked -p ngx_http_apim_sas_module --features vendored
binary=$(find "$CARGO_TARGET_DIR/release/build" -path '*nginx-sys-*/out/*' -name nginx -type f -perm -u+x | head -n 1)
[ -x "$binary" ] || { echo "no vendored nginx binary under $CARGO_TARGET_DIR"; exit 1; }
"$binary" -v
APIM_SAS_NGINX_MODULE="$CARGO_TARGET_DIR/release/libngx_http_apim_sas_module.so" NGINX_BINARY="$binary" \
  cargo test --release --locked -p ngx_http_apim_sas_module --features vendored -- --skip a_workers_memory
