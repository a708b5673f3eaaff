//! `ngx_http_apim_sas_module`: nginx verifies Azure API Management shared-access tokens itself,
//! in its access phase, with the `apim-sas` library: no subrequest, no second process.
//!
//! ```nginx
//! load_module modules/ngx_http_apim_sas_module.so;
//! http {
//!     apim_sas_keystore /etc/apim-sas/gateways.json;
//!     server {
//!         location / {
//!             apim_sas on;
//!             proxy_set_header X-Apim-Gateway-Id $apim_sas_gateway_id;
//!             proxy_pass http://backend;
//!         }
//!     }
//! }
//! ```
//!
//! The directives, variables and answers are documented in `docs/nginx.md` of the repository.
//!
//! This crate is the one place of the project where `unsafe` lives: nginx calls into it through
//! C function pointers with raw pointers to its own structures. Each `unsafe` block says which
//! of nginx's guarantees makes it sound. No panic crosses into nginx: every entry point runs its
//! body under [`guard`], which turns a panic into the entry point's failure value (a panic
//! unwinding into C would be undefined behaviour and would kill the worker).
//!
//! One file per concern: [`conf`] (directives, inheritance, the verifiers of a configuration
//! cycle), [`keys`] (reading a keystore), [`access`] (the access-phase handler), [`verdict`]
//! (what was decided for a request), [`refusal`] (the 401's JSON body), [`variables`].
#![deny(unsafe_op_in_unsafe_fn)]

mod access;
mod conf;
mod keys;
mod refusal;
mod variables;
mod verdict;

use core::ffi::c_void;
use core::ptr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ngx::ffi::{
    ngx_conf_t, ngx_http_module_t, ngx_int_t, ngx_module_t, NGX_ERROR, NGX_HTTP_MODULE,
};
use ngx::http::HttpModule;

/// The module's type for ngx's configuration helpers.
pub(crate) struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the static is written only by nginx while it loads the module and sets its
        // indexes (before any handler can run); afterwards it is only read.
        unsafe { &*ptr::addr_of!(ngx_http_apim_sas_module) }
    }
}

/// Runs `body`, turning a panic into `failed`: no unwinding ever reaches nginx's C frames.
pub(crate) fn guard<T>(failed: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(failed)
}

/// Registers the variables before the configuration is read, so directives can name them.
// SAFETY: called only by nginx (the module context) before the `http` block is parsed.
unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: nginx calls this with the configuration being parsed.
    guard(NGX_ERROR as ngx_int_t, || unsafe {
        variables::register(cf)
    })
}

/// Installs the access-phase handler and the filters that write a refusal's JSON body.
// SAFETY: called only by nginx (the module context) after the `http` block is parsed.
unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: nginx calls this once per cycle with the parsed configuration.
    guard(NGX_ERROR as ngx_int_t, || unsafe {
        match access::install(cf) {
            Ok(()) => refusal::install(),
            Err(()) => NGX_ERROR as ngx_int_t,
        }
    })
}

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(conf::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(conf::create_loc_conf),
    merge_loc_conf: Some(conf::merge_loc_conf),
};

// The tables nginx's `load_module` reads from a dynamic module: `ngx_modules`,
// `ngx_module_names` and `ngx_module_order`.
ngx::ngx_modules!(ngx_http_apim_sas_module);

/// The module nginx loads. Its signature (from `ngx_module_t::default()`) is the one of the
/// nginx build this crate was compiled against, which `load_module` checks.
#[used]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_apim_sas_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(MODULE_CTX) as *mut c_void,
    // Only the address of the command table is taken; nginx reads it while parsing.
    commands: ptr::addr_of_mut!(conf::COMMANDS) as *mut _,
    type_: NGX_HTTP_MODULE as usize,
    ..ngx_module_t::default()
};
