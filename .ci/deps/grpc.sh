#!/usr/bin/env bash
# The independent gRPC client of tests/it/grpc.rs: Python's grpcio with Envoy's own protos as
# published on PyPI (xds-protos) and the standard health client, in target/grpc-venv; and the raw
# HTTP/2 client (h2, with its hpack and hyperframe) with which tests/it/grpc_bounds.rs floods serve.
# Idempotent: a venv that already holds these exact versions is left as it is. The tests that use
# it are ignored (build.rs: skip_grpc_venv) until this has run.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/grpc-venv
pins=(grpcio==1.85.3 grpcio-health-checking==1.85.1 xds-protos==1.85.0 protobuf==7.36.2 h2==4.4.1 hpack==4.2.0 hyperframe==6.1.0)
stamp=$venv/.pins
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${pins[*]}" ]; then
  exit 0
fi
if ! python3 -m venv "$venv"; then
  # Debian's python3 keeps venv (ensurepip) in a package of its own.
  apt-get install -y -qq python3-venv >/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
"$venv/bin/python" -c 'import grpc, grpc_health.v1.health_pb2, envoy.service.auth.v3.external_auth_pb2_grpc, h2.connection'
echo "${pins[*]}" >"$stamp"
# build.rs (skip_grpc_venv) looks for the stamp when the tests are built: have Cargo run it again.
touch build.rs
