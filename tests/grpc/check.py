#!/usr/bin/env python3
"""An independent client of `apim-sas serve`'s gRPC side, on Envoy's own published protos.

Python's grpcio with the `envoy.service.auth.v3` messages of the `xds-protos` package (generated
from Envoy's data-plane API, as Envoy itself uses them) and the standard `grpc.health.v1` client
of `grpcio-health-checking`. tests/it/grpc.rs runs it with the venv that .ci/deps/grpc.sh makes:

    bash .ci/deps/grpc.sh
    target/grpc-venv/bin/python tests/grpc/check.py ADDR:PORT < spec.json

The spec on stdin is one JSON object, the answer on stdout another:

    {"checks": [{"headers": {"authorization": "..."}, "raw": false, "method": "GET",
                 "path": "/x"}, ...]}
        -> {"checks": [<response>, ...]}: each CheckResponse field by field (below).
    {"health": ["", "envoy.service.auth.v3.Authorization"]}
        -> {"health": ["SERVING", ...]} (or the gRPC error's code name).
    {"calls": ["/some.Service/Method", ...]}
        -> {"calls": ["UNIMPLEMENTED", ...]}: raw calls with an empty message, their status codes.
    {"load": {"checks": [...], "count": N, "channels": C}}
        -> {"load": {"answers": {"<code>": n, ...}, "errors": {"<grpc code>": n}, "seconds": s}}:
           N Checks, round robin over the given ones, all in flight at once over C channels.
    {"encode": [<check>, ...]}
        -> {"encode": ["<hex>", ...]}: each CheckRequest serialized, with every other field of it
           that Envoy fills set too (peers, time, host, body, ...), for the reader to skip.
    {"decode": ["<hex>", ...]}
        -> {"decode": [{"fields": <response>, "hex": "<hex>"}, ...]}: each CheckResponse parsed,
           field by field, and serialized again.

`raw: true` sends the headers as Envoy does with `encode_raw_headers: true` (in `header_map`,
values as bytes) instead of the `headers` map. `header_map: [[key, {"raw": "<hex>"}], [key,
{"value": "..."}], ...]` sends exactly these entries in `header_map` (a key may repeat).
"""

import json
import sys
import time

import grpc
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

APPEND_ACTIONS = base_pb2.HeaderValueOption.HeaderAppendAction


def check_request(spec):
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method=spec.get("method", "GET"),
        path=spec.get("path", "/"),
        host="api.example.test",
        scheme="http",
        protocol="HTTP/1.1",
    )
    headers = spec.get("headers", {})
    if spec.get("raw"):
        for key, value in headers.items():
            http.header_map.headers.add(key=key, raw_value=value.encode())
    else:
        for key, value in headers.items():
            http.headers[key] = value
    for key, value in spec.get("header_map", []):
        if "raw" in value:
            http.header_map.headers.add(key=key, raw_value=bytes.fromhex(value["raw"]))
        else:
            http.header_map.headers.add(key=key, value=value["value"])
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


def everything(request):
    """`request` with every other field Envoy fills set as well."""
    peer = attribute_context_pb2.AttributeContext.Peer(
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="10.0.0.7", port_value=41000)
        ),
        service="client",
        labels={"app": "shop"},
        principal="spiffe://cluster.local/ns/shop/sa/client",
        certificate="-----BEGIN CERTIFICATE-----",
    )
    attributes = request.attributes
    attributes.source.CopyFrom(peer)
    attributes.destination.CopyFrom(peer)
    attributes.context_extensions["virtual_host"] = "api"
    attributes.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].update({"a": 1})
    attributes.tls_session.sni = "api.example.test"
    attributes.request.time.seconds = 1776732240
    http = attributes.request.http
    http.id = "1234567890"
    http.query = "x=1"
    http.fragment = "top"
    http.size = 3
    http.body = "abc"
    http.raw_body = b"\x00\xffabc"
    return request


def header_options(options):
    out = []
    for option in options:
        out.append(
            {
                "key": option.header.key,
                "value": option.header.value,
                "raw_value": option.header.raw_value.decode("latin-1"),
                # The deprecated BoolValue: absent (None) or its value.
                "append": option.append.value if option.HasField("append") else None,
                "append_action": APPEND_ACTIONS.Name(option.append_action),
                "keep_empty_value": option.keep_empty_value,
            }
        )
    return out


def response_fields(response):
    out = {
        "status": {"code": response.status.code, "message": response.status.message}
        if response.HasField("status")
        else None,
        "http_response": response.WhichOneof("http_response"),
        "dynamic_metadata": response.HasField("dynamic_metadata"),
    }
    if out["http_response"] == "ok_response":
        ok = response.ok_response
        out["ok"] = {
            "headers": header_options(ok.headers),
            "headers_to_remove": list(ok.headers_to_remove),
            "response_headers_to_add": header_options(ok.response_headers_to_add),
            "query_parameters_to_set": len(ok.query_parameters_to_set),
            "query_parameters_to_remove": list(ok.query_parameters_to_remove),
        }
    elif out["http_response"] == "denied_response":
        denied = response.denied_response
        out["denied"] = {
            "status": denied.status.code,
            "headers": header_options(denied.headers),
            "body": denied.body,
        }
    return out


def checks(channel, specs):
    stub = external_auth_pb2_grpc.AuthorizationStub(channel)
    return [response_fields(stub.Check(check_request(spec), timeout=10)) for spec in specs]


def health(channel, services):
    stub = health_pb2_grpc.HealthStub(channel)
    answers = []
    for service in services:
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            answers.append(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
        except grpc.RpcError as error:
            answers.append(error.code().name)
    return answers


def calls(channel, methods):
    """Raw unary calls with an empty message: the gRPC status code name each is answered with."""
    answers = []
    for method in methods:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(b"", timeout=10)
            answers.append("OK")
        except grpc.RpcError as error:
            answers.append(error.code().name)
    return answers


def load(target, spec):
    requests = [check_request(check) for check in spec["checks"]]
    channels = [grpc.insecure_channel(target) for _ in range(spec.get("channels", 4))]
    stubs = [external_auth_pb2_grpc.AuthorizationStub(channel) for channel in channels]
    started = time.monotonic()
    futures = [
        stubs[n % len(stubs)].Check.future(requests[n % len(requests)], timeout=60)
        for n in range(spec["count"])
    ]
    answers, errors = {}, {}
    for future in futures:
        try:
            code = str(future.result().status.code)
            answers[code] = answers.get(code, 0) + 1
        except grpc.RpcError as error:
            name = error.code().name
            errors[name] = errors.get(name, 0) + 1
    seconds = time.monotonic() - started
    for channel in channels:
        channel.close()
    return {"answers": answers, "errors": errors, "seconds": seconds}


def main():
    target = sys.argv[1]
    spec = json.load(sys.stdin)
    out = {}
    if "encode" in spec:
        out["encode"] = [
            everything(check_request(check)).SerializeToString().hex() for check in spec["encode"]
        ]
    if "decode" in spec:
        out["decode"] = []
        for text in spec["decode"]:
            response = external_auth_pb2.CheckResponse.FromString(bytes.fromhex(text))
            out["decode"].append(
                {"fields": response_fields(response), "hex": response.SerializeToString().hex()}
            )
    if not any(key in spec for key in ("checks", "health", "calls", "load")):
        json.dump(out, sys.stdout)
        return
    with grpc.insecure_channel(target) as channel:
        if "checks" in spec:
            out["checks"] = checks(channel, spec["checks"])
        if "health" in spec:
            out["health"] = health(channel, spec["health"])
        if "calls" in spec:
            out["calls"] = calls(channel, spec["calls"])
    if "load" in spec:
        out["load"] = load(target, spec["load"])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
