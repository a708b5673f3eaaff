//! The gateway adapters: how a server or a gateway asks this library whether a request may
//! pass, each one mapping its own protocol onto the same verdict. They share one configuration
//! (the layer's: the hot-swappable verifier with its verdict cache, the header list, the clock,
//! the observer), take every refusal's code, message, target and body from one place, and know
//! nothing of sockets.
//!
//! | file | public as | who asks | feature |
//! | --- | --- | --- | --- |
//! | `layer.rs` | [`crate::layer`] | tower servers (axum, hyper, tonic), `serve`'s `/verify` | `tower` |
//! | `ext_authz.rs` | [`crate::ext_authz`] | Envoy, Istio, Contour: gRPC `ext_authz` (Envoy's messages in `ext_authz/pb.rs`) | `ext-authz` |
//! | `spoe.rs` | [`crate::spoe`] | HAProxy: SPOE (SPOP frames in `spoe/frame.rs`) | `spoe` |
//!
//! The folder groups them for a reader of the source; each stays public at the crate's root,
//! where it always was (`apim_sas::layer`, `apim_sas::ext_authz`), so that every item has one
//! path and the rendered documentation one page.

#[cfg(feature = "ext-authz")]
pub mod ext_authz;
#[cfg(feature = "tower")]
pub mod layer;
#[cfg(feature = "spoe")]
pub mod spoe;
