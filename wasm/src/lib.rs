//! `apim_sas_filter.wasm`: a proxy-wasm HTTP filter (ABI 0.2.1) with which Envoy (and Istio,
//! Envoy Gateway, any proxy-wasm host) verifies Azure API Management shared-access tokens
//! itself, in the request's path: no ext_authz call, no second process.
//!
//! ```yaml
//! - name: envoy.filters.http.wasm
//!   typed_config:
//!     "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
//!     config:
//!       name: apim_sas
//!       failure_policy: FAIL_RELOAD
//!       configuration:
//!         "@type": type.googleapis.com/google.protobuf.StringValue
//!         value: '{"keystore_env": "APIM_SAS_KEYSTORE"}'
//!       vm_config:
//!         runtime: envoy.wasm.runtime.v8
//!         code: { local: { filename: /etc/envoy/apim_sas_filter.wasm } }
//!         environment_variables: { host_env_keys: [APIM_SAS_KEYSTORE] }
//! ```
//!
//! For each request: every header a backend could take for one of the four identity headers
//! (`x-apim-gateway-id`, `x-apim-key-type`, `x-apim-token-expiry`, `x-apim-token-format`, in any
//! case, with `_` for `-`, given any number of times) is removed; the token is read from the
//! configured header (given twice: `MalformedToken`) and verified at the host's clock. A valid
//! token's request goes on with the four headers set, as `apim-sas serve` and the nginx module
//! set them; any other gets Envoy's local reply `401` with `WWW-Authenticate:
//! SharedAccessSignature error="<Code>"`, `content-type: application/json` and Azure's
//! ErrorResponse body, the same bytes.
//!
//! One file per concern: [`config`] (the plugin's JSON configuration, the keystore, the
//! verifier), [`request`] (one request's decision, apart from proxy-wasm, so it is tested on the
//! host), `host` (the two raw host calls) and `plugin` (proxy-wasm's root and HTTP contexts).
//!
//! No panic is meant to reach the host: the library does not panic on any input (its fuzzers
//! look for one), headers are read as bytes, and the configuration's problems are answers, not
//! panics. Were one to happen anyway, the build's `panic = "abort"` makes it a trap, and Envoy
//! 1.40 logs the panic's message (proxy-wasm's panic hook, at `critical`) and `Function:
//! proxy_on_request_headers failed: Uncaught RuntimeError: unreachable`, answers that request
//! `503` with an empty body, and never sends it upstream. What follows is the
//! `failure_policy`'s: `FAIL_RELOAD` starts a new VM (configured again, its cache empty;
//! requests get `503` during the reload's backoff, 1 s by default), `FAIL_CLOSED` answers `503`
//! to every request of that worker until Envoy restarts, and `FAIL_OPEN` lets every later
//! request through unchecked, the client's own `x-apim-*` headers with it.

// The glue runs only inside a proxy-wasm host; the rest builds and is tested anywhere.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(rust_2018_idioms, unreachable_pub)]

mod config;
#[cfg(target_family = "wasm")]
mod host;
#[cfg(target_family = "wasm")]
mod plugin;
mod request;
