//! `$apim_sas_gateway_id`, `$apim_sas_key_type`, `$apim_sas_token_expiry` (RFC 3339 UTC),
//! `$apim_sas_token_format` (who a valid token was), and `$apim_sas_error` (the code of a
//! refusal, readable on an `error_page` too). A variable without a value is "not found": empty
//! in `access_log`, and a `proxy_set_header` of it sends no header at all.
//!
//! The variables are not cached: a `set` or `map` evaluated before the access phase does not
//! freeze them empty.

use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_int_t, ngx_str_t,
    ngx_variable_value_t, NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use ngx::ngx_string;

use crate::guard;
use crate::verdict::{self, Verdict};

const GATEWAY_ID: usize = 0;
const KEY_TYPE: usize = 1;
const TOKEN_EXPIRY: usize = 2;
const TOKEN_FORMAT: usize = 3;
const ERROR: usize = 4;

/// Adds the variables (`preconfiguration`).
///
/// # Safety
/// `cf` is the configuration nginx passes to `preconfiguration`.
// SAFETY: unsafe because it adds variables through `cf`; sound when `cf` is the configuration of
// `preconfiguration`.
pub(crate) unsafe fn register(cf: *mut ngx_conf_t) -> ngx_int_t {
    let names = [
        (ngx_string!("apim_sas_gateway_id"), GATEWAY_ID),
        (ngx_string!("apim_sas_key_type"), KEY_TYPE),
        (ngx_string!("apim_sas_token_expiry"), TOKEN_EXPIRY),
        (ngx_string!("apim_sas_token_format"), TOKEN_FORMAT),
        (ngx_string!("apim_sas_error"), ERROR),
    ];
    for (mut name, which) in names {
        // SAFETY: `ngx_http_add_variable` copies the name into the cycle's pool and returns the
        // variable (or null), whose handler and data are ours to set.
        unsafe {
            let Some(variable) =
                ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as usize).as_mut()
            else {
                return NGX_ERROR as ngx_int_t;
            };
            variable.get_handler = Some(get);
            variable.data = which;
        }
    }
    NGX_OK as ngx_int_t
}

// SAFETY: called only by nginx's variable machinery, as the `get_handler` `register` set, with a
// live request and the value to fill; guarded against panics.
unsafe extern "C" fn get(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    which: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls a variable's handler with a live request and the value to fill in.
    guard(NGX_ERROR as ngx_int_t, || unsafe {
        let verdict = verdict::find(r).map(|decision| decision.verdict);
        let value = match (verdict, which) {
            (Some(Verdict::Valid { id, .. }), GATEWAY_ID) => Some(id),
            (Some(Verdict::Valid { key_type, .. }), KEY_TYPE) => Some(borrowed(key_type)),
            (Some(Verdict::Valid { format, .. }), TOKEN_FORMAT) => Some(borrowed(format)),
            (Some(Verdict::Valid { expiry, .. }), TOKEN_EXPIRY) => {
                let mut text = Vec::with_capacity(28);
                apim_sas::push_rfc3339(&mut text, expiry);
                match verdict::pool_copy(r, &text) {
                    Some(text) => Some(text),
                    None => return NGX_ERROR as ngx_int_t,
                }
            }
            (Some(Verdict::Refused { code, .. }), ERROR) => Some(borrowed(code)),
            _ => None,
        };
        let v = &mut *v;
        match value {
            Some(text) => {
                v.set_len(text.len as u32);
                v.set_valid(1);
                v.set_no_cacheable(0);
                v.set_not_found(0);
                v.data = text.data;
            }
            None => v.set_not_found(1),
        }
        NGX_OK as ngx_int_t
    })
}

/// A static string as an nginx string (nginx only reads a variable's value).
fn borrowed(text: &'static str) -> ngx_str_t {
    ngx_str_t {
        len: text.len(),
        data: text.as_ptr().cast_mut(),
    }
}
