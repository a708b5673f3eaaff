# The image of `apim-sas serve` as a sidecar (docs/serve.md, "Kubernetes sidecar"), and of any other
# apim-sas command that needs no shell (renew without --deploy-hook, which runs its hook with
# /bin/sh; inspect; verify). The final stage holds the binary alone, on distroless's cc image (glibc,
# libgcc, CA certificates, no shell, no package manager), and runs as its non-root user 65532. The
# entrypoint is apim-sas itself: a container's args are the subcommand and its flags.
#
# Build from the repository root, with the tag the sidecar names:
#   docker build -f examples/serve.Dockerfile -t registry.example.com/apim-sas:0.1.0 .
#   docker run --rm registry.example.com/apim-sas:0.1.0 --version

FROM rust:1-bookworm AS build
WORKDIR /src
# What the workspace's manifests name: the package (its build script, and the directories of the
# targets Cargo.toml lists: benches, examples, tests) and the manifests and sources of the nginx
# module and the Envoy filter, workspace members Cargo loads but `cargo install --path .` does not
# build. tests/it/images.rs builds exactly these files, offline.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
COPY nginx/Cargo.toml ./nginx/
COPY nginx/src ./nginx/src
COPY wasm/Cargo.toml ./wasm/
COPY wasm/src ./wasm/src
RUN cargo install --locked --path . --root /out

# Debian 12, as the build stage: the binary links the glibc it was built against.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bin/apim-sas /usr/local/bin/apim-sas
USER 65532:65532
ENTRYPOINT ["apim-sas"]
CMD ["--help"]
