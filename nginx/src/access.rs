//! The access-phase handler: read the token from the configured header, verify it, and let the
//! request go on (`NGX_OK`) or answer `401` (`NGX_HTTP_UNAUTHORIZED`), exactly as `auth_basic`
//! does, so `satisfy any`, `error_page 401` and keep-alive behave as with it.

use std::cell::Cell;
use std::sync::Arc;

use apim_sas::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use apim_sas::layer::error_body;
use ngx::ffi::{
    ngx_array_push, ngx_conf_t, ngx_http_handler_pt, ngx_http_phases_NGX_HTTP_ACCESS_PHASE,
    ngx_http_request_t, ngx_int_t, ngx_list_part_t, ngx_list_push, ngx_table_elt_t, ngx_timeofday,
    NGX_DECLINED, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_UNAUTHORIZED, NGX_LOG_INFO, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::{ngx_log_error, ngx_string};

use crate::verdict::{self, Decision, Verdict};
use crate::{guard, Module};

/// Adds the handler to nginx's access phase.
///
/// # Safety
/// `cf` is the configuration nginx passes to `postconfiguration`.
// SAFETY: unsafe because it writes into nginx's core configuration through `cf`; sound when
// `cf` is the live configuration of `postconfiguration`, where the phase arrays exist.
pub(crate) unsafe fn install(cf: *mut ngx_conf_t) -> Result<(), ()> {
    // SAFETY: in `postconfiguration` the core module's main configuration exists, and its
    // phase arrays are `ngx_array_t`s of `ngx_http_handler_pt`, pushed to by every module.
    unsafe {
        let cmcf = NgxHttpCoreModule::main_conf_mut(&*cf).ok_or(())?;
        let phase = &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize];
        let slot = ngx_array_push(&mut phase.handlers).cast::<ngx_http_handler_pt>();
        if slot.is_null() {
            return Err(());
        }
        slot.write(Some(handler));
    }
    Ok(())
}

// SAFETY: called only by nginx's phase engine through the pointer `install` pushed, with a live
// request; the body is guarded, so no panic unwinds into nginx.
unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls a phase handler with a live request.
    guard(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || unsafe {
        decide(r)
    })
}

/// # Safety
/// `r` is a live request.
// SAFETY: unsafe because it dereferences `r`; sound when `r` is the live request nginx passed to
// `handler`.
unsafe fn decide(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: `r` is live; its location configuration of this module was merged by
    // `merge_loc_conf`, and lives (with its verifier) as long as the cycle, longer than the
    // request.
    unsafe {
        let Some(lcf) = Module::location_conf(&*r) else {
            return NGX_DECLINED as ngx_int_t;
        };
        let Some(verifier) = &lcf.verifier else {
            return NGX_DECLINED as ngx_int_t;
        };
        let decided_by = Arc::as_ptr(verifier);
        // Back in the access phase after an internal redirect: the same keys decide the same.
        let mut earlier = verdict::find(r);
        if let Some(decision) = earlier.as_deref_mut() {
            if decision.verifier == decided_by {
                decision.location = lcf;
                let verdict = decision.verdict;
                verdict::restore(r, decision);
                return answer(r, verdict);
            }
        }
        let token = header(r, &lcf.header_lowercase).unwrap_or_default();
        let verdict = match verifier.verify_bytes(token, now()) {
            Ok(verified) => {
                let Some(id) = verdict::pool_copy(r, verified.id().as_bytes()) else {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
                };
                Verdict::Valid {
                    id,
                    key_type: verified.key_type().as_str(),
                    format: verified.format().as_str(),
                    expiry: verified.expiry(),
                }
            }
            Err(err) => {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    (*(*r).connection).log,
                    "apim_sas: token refused: {} (target {})",
                    err.code(),
                    err.target()
                );
                let Some(body) = verdict::pool_copy(r, &error_body(&err)) else {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
                };
                Verdict::Refused {
                    code: err.code(),
                    body,
                }
            }
        };
        let decision = Decision {
            verdict,
            verifier: decided_by,
            location: lcf,
            replacing: false,
        };
        if verdict::record(r, earlier, decision).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        answer(r, verdict)
    }
}

/// nginx's cached time of this event-loop turn (millisecond precision, no system call). The
/// calendar date is worked out once a day, not once a request: a time of day is cheap to build.
fn now() -> DateTime<Utc> {
    thread_local! {
        static TODAY: Cell<(i64, NaiveDate)> = const { Cell::new((i64::MIN, NaiveDate::MIN)) };
    }
    let time = ngx_timeofday();
    let (day, second) = (
        time.sec.div_euclid(86_400),
        time.sec.rem_euclid(86_400) as u32,
    );
    let date = TODAY.with(|today| match today.get() {
        (known, date) if known == day => Some(date),
        _ => {
            let date = DateTime::from_timestamp(day * 86_400, 0)?.date_naive();
            today.set((day, date));
            Some(date)
        }
    });
    let nanos = (time.msec as u32 % 1000) * 1_000_000;
    match (
        date,
        NaiveTime::from_num_seconds_from_midnight_opt(second, nanos),
    ) {
        (Some(date), Some(time)) => NaiveDateTime::new(date, time).and_utc(),
        _ => Utc::now(),
    }
}

/// `NGX_OK` for a valid token; for a refusal, the challenge header and `401`.
///
/// # Safety
/// `r` is a live request.
// SAFETY: unsafe because it writes `r`'s `headers_out`; sound when `r` is live (from `decide`).
unsafe fn answer(r: *mut ngx_http_request_t, verdict: Verdict) -> ngx_int_t {
    let Verdict::Refused { code, .. } = verdict else {
        // A challenge left by a refusal in an earlier location (an `error_page` into one with
        // other keys) does not go out with a success: a header with hash 0 is not sent.
        // SAFETY: `r` is live; the element, when set, is in its `headers_out` list.
        unsafe {
            if let Some(challenge) = (*r).headers_out.www_authenticate.as_mut() {
                challenge.hash = 0;
                (*r).headers_out.www_authenticate = core::ptr::null_mut();
            }
        }
        return NGX_OK as ngx_int_t;
    };
    // SAFETY: `r` is live; `headers_out.headers` is an `ngx_list_t` of `ngx_table_elt_t`, whose
    // pushed element is uninitialised until written whole here (zeroed first, so `next`, on
    // nginx 1.23 and later, is null); the value lives in the request's pool.
    unsafe {
        if !(*r).headers_out.www_authenticate.is_null() {
            return NGX_HTTP_UNAUTHORIZED as ngx_int_t;
        }
        let challenge = format!("SharedAccessSignature error=\"{code}\"");
        let Some(value) = verdict::pool_copy(r, challenge.as_bytes()) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        let elt = ngx_list_push(&mut (*r).headers_out.headers).cast::<ngx_table_elt_t>();
        if elt.is_null() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        elt.write(core::mem::zeroed());
        (*elt).hash = 1;
        (*elt).key = ngx_string!("WWW-Authenticate");
        (*elt).value = value;
        (*r).headers_out.www_authenticate = elt;
    }
    NGX_HTTP_UNAUTHORIZED as ngx_int_t
}

/// The value of the first request header named `name` (lower case), any spelling.
///
/// # Safety
/// `r` is a live request whose headers have been read (true from the first phase on).
// SAFETY: unsafe because it walks `r`'s header list; sound when `r` is live and past header
// reading, which every phase handler's request is. The slice borrows the request's pool.
unsafe fn header<'r>(r: *mut ngx_http_request_t, name: &[u8]) -> Option<&'r [u8]> {
    // SAFETY: `headers_in.headers` is an `ngx_list_t` of `ngx_table_elt_t`: a chain of parts,
    // each with `nelts` initialised elements; keys, lower-cased keys and values are pool strings
    // of their stated lengths, living as long as the request.
    unsafe {
        let mut part: *const ngx_list_part_t = &(*r).headers_in.headers.part;
        while let Some(p) = part.as_ref() {
            let elts = p.elts.cast::<ngx_table_elt_t>();
            for i in 0..p.nelts {
                let h: &'r ngx_table_elt_t = &*elts.add(i);
                if h.key.len != name.len() {
                    continue;
                }
                let matches = if h.lowcase_key.is_null() {
                    h.key.as_bytes().eq_ignore_ascii_case(name)
                } else {
                    core::slice::from_raw_parts(h.lowcase_key, h.key.len) == name
                };
                if matches {
                    return Some(h.value.as_bytes());
                }
            }
            part = p.next;
        }
        None
    }
}
