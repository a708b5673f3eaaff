//! The access-phase handler: read the token from the configured header, verify it, and let the
//! request go on (`NGX_OK`) or answer `401` (`NGX_HTTP_UNAUTHORIZED`), exactly as `auth_basic`
//! does, so `satisfy any`, `error_page 401` and keep-alive behave as with it.
//!
//! nginx skips the access phase for subrequests (the target of `auth_request`, an SSI
//! `include virtual`, `mirror`, njs's `r.subrequest`), so a second handler decides for them in
//! the location's rewrite phase, which runs for every request: a subrequest into a location with
//! `apim_sas on` is verified against the headers it carries (its parent's) and refused with
//! `401`, never waved through. `satisfy` does not apply there (nginx checks no access for a
//! subrequest, so nothing else could let it in). A dynamic module's rewrite handler runs before
//! the rewrite module's own (nginx runs a phase's handlers last-registered first, and a dynamic
//! module registers after the built-in ones), so a subrequest is decided before a `return` in
//! its location answers: `location = /_check { internal; apim_sas on; return 204; }` checks. A
//! main request is still decided in the access phase, after any `return` (as `auth_basic` is).

use std::cell::Cell;
use std::sync::Arc;

use apim_sas::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use apim_sas::layer::error_body;
use apim_sas::Verifier;
use ngx::ffi::{
    ngx_array_push, ngx_conf_t, ngx_http_handler_pt, ngx_http_phases,
    ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_phases_NGX_HTTP_REWRITE_PHASE,
    ngx_http_request_t, ngx_int_t, ngx_list_part_t, ngx_list_push, ngx_table_elt_t, ngx_timeofday,
    NGX_DECLINED, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_UNAUTHORIZED, NGX_LOG_INFO, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::{ngx_log_error, ngx_string};

use crate::conf::LocConf;
use crate::verdict::{self, Decision, Verdict};
use crate::{guard, Module};

/// Adds the handlers: the main request's to the access phase, subrequests' to the rewrite phase.
///
/// # Safety
/// `cf` is the configuration nginx passes to `postconfiguration`.
// SAFETY: unsafe because it writes into nginx's core configuration through `cf`; sound when
// `cf` is the live configuration of `postconfiguration`, where the phase arrays exist.
pub(crate) unsafe fn install(cf: *mut ngx_conf_t) -> Result<(), ()> {
    // SAFETY: as the function's contract.
    unsafe {
        push(cf, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, handler)?;
        push(
            cf,
            ngx_http_phases_NGX_HTTP_REWRITE_PHASE,
            subrequest_handler,
        )
    }
}

/// Appends `handler` to `phase`'s handlers.
///
/// # Safety
/// As [`install`].
// SAFETY: unsafe because it writes into nginx's core configuration; sound as `install`.
unsafe fn push(
    cf: *mut ngx_conf_t,
    phase: ngx_http_phases,
    handler: unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t,
) -> Result<(), ()> {
    // SAFETY: in `postconfiguration` the core module's main configuration exists, and its
    // phase arrays are `ngx_array_t`s of `ngx_http_handler_pt`, pushed to by every module.
    unsafe {
        let cmcf = NgxHttpCoreModule::main_conf_mut(&*cf).ok_or(())?;
        let phase = &mut cmcf.phases[phase as usize];
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

// SAFETY: called only by nginx's phase engine through the pointer `install` pushed, with a live
// request; the body is guarded, so no panic unwinds into nginx.
unsafe extern "C" fn subrequest_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls a phase handler with a live request.
    guard(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || unsafe {
        if core::ptr::eq(r, (*r).main) {
            return NGX_DECLINED as ngx_int_t;
        }
        decide_subrequest(r)
    })
}

/// The request's location configuration and its verifier, where `apim_sas on`.
///
/// # Safety
/// `r` is a live request.
// SAFETY: unsafe because it dereferences `r`; sound when `r` is live. Its location configuration
// of this module was merged by `merge_loc_conf` and lives (with its verifier) as long as the
// cycle, longer than the request.
unsafe fn guarded<'r>(r: *mut ngx_http_request_t) -> Option<(&'r LocConf, *const Verifier)> {
    // SAFETY: as the function's contract.
    let lcf: &'r LocConf = unsafe { Module::location_conf(&*r) }?;
    let verifier = lcf.verifier.as_ref()?;
    Some((lcf, Arc::as_ptr(verifier)))
}

/// The main request's decision (in the access phase).
///
/// # Safety
/// `r` is a live request.
// SAFETY: unsafe because it dereferences `r`; sound when `r` is the live request nginx passed to
// `handler`.
unsafe fn decide(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: `r` is live; its location configuration of this module was merged by
    // `merge_loc_conf`, and lives (with its verifier) as long as the cycle, longer than the
    // request.
    unsafe {
        let Some((lcf, decided_by)) = guarded(r) else {
            return NGX_DECLINED as ngx_int_t;
        };
        // Back in the access phase after an internal redirect: the same keys, settings and
        // header decide the same.
        let mut earlier = verdict::find(r);
        if let Some(decision) = earlier.as_deref_mut() {
            if decision.holds_for(decided_by, lcf) {
                decision.location = lcf;
                let verdict = decision.verdict;
                verdict::restore(r, decision);
                return answer(r, verdict);
            }
        }
        let Some(verdict) = verify(r, lcf) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        if verdict::record(r, earlier, Decision::new(verdict, decided_by, lcf)).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        answer(r, verdict)
    }
}

/// A subrequest's decision (in the rewrite phase): verified every time, kept in the
/// subrequest's context only; a valid token lets the rewrite module's handler (`set`,
/// `rewrite`, `return`) run next.
///
/// # Safety
/// `r` is a live subrequest.
// SAFETY: unsafe because it dereferences `r`; sound when `r` is the live request nginx passed to
// `subrequest_handler`.
unsafe fn decide_subrequest(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: as `decide`.
    unsafe {
        let Some((lcf, decided_by)) = guarded(r) else {
            return NGX_DECLINED as ngx_int_t;
        };
        let Some(verdict) = verify(r, lcf) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        if verdict::record_subrequest(r, Decision::new(verdict, decided_by, lcf)).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        match answer(r, verdict) {
            ok if ok == NGX_OK as ngx_int_t => NGX_DECLINED as ngx_int_t,
            refused => refused,
        }
    }
}

/// Verifies the token of `lcf`'s header with `lcf`'s verifier; `None` when the request's pool
/// is out of memory.
///
/// # Safety
/// `r` is a live request and `lcf` its location configuration, with a verifier.
// SAFETY: unsafe because it reads `r`'s headers and allocates from its pool; sound when `r` is
// live (from `decide` or `decide_subrequest`).
unsafe fn verify(r: *mut ngx_http_request_t, lcf: &LocConf) -> Option<Verdict> {
    let verifier = lcf.verifier.as_ref()?;
    // SAFETY: `r` is live and past header reading; the header values live in its pool.
    let token = unsafe { apim_sas::header::select(header_values(r, &lcf.header_lowercase)) };
    let verified = token
        .and_then(|token| token.ok_or_else(apim_sas::header::missing))
        .and_then(|token| verifier.verify_bytes(token, now()));
    // SAFETY: `r` is live; the copies live in its pool.
    unsafe {
        match verified {
            Ok(verified) => Some(Verdict::Valid {
                id: verdict::pool_copy(r, verified.id().as_bytes())?,
                key_type: verified.key_type().as_str(),
                format: verified.format().as_str(),
                expiry: verified.expiry(),
            }),
            Err(err) => {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    (*(*r).connection).log,
                    "apim_sas: token refused: {} (target {})",
                    err.code(),
                    err.target()
                );
                Some(Verdict::Refused {
                    code: err.code(),
                    body: verdict::pool_copy(r, &error_body(&err))?,
                })
            }
        }
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

/// The start of the module's challenge: `SharedAccessSignature error="<Code>"`.
const CHALLENGE: &str = "SharedAccessSignature error=\"";

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
        let challenge = format!("{CHALLENGE}{code}\"");
        // A challenge already set by another module (`auth_basic` under `satisfy any`) stays;
        // one of this module's, from a refusal in an earlier location (an `error_page` into one
        // that reads another header), is replaced by this refusal's.
        if let Some(earlier) = (*r).headers_out.www_authenticate.as_mut() {
            if earlier.value.as_bytes().starts_with(CHALLENGE.as_bytes()) {
                let Some(value) = verdict::pool_copy(r, challenge.as_bytes()) else {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
                };
                earlier.value = value;
            }
            return NGX_HTTP_UNAUTHORIZED as ngx_int_t;
        }
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

/// Every value of the request headers named `name` (lower case), any spelling, in order.
///
/// # Safety
/// `r` is a live request whose headers have been read (true from the first phase on).
// SAFETY: unsafe because it walks `r`'s header list; sound when `r` is live and past header
// reading, which every phase handler's request is. The slices borrow the request's pool, and the
// iterator must be used up while the request lives (its callers use it at once).
unsafe fn header_values<'r>(
    r: *mut ngx_http_request_t,
    name: &'r [u8],
) -> impl Iterator<Item = &'r [u8]> + 'r {
    // SAFETY: `headers_in.headers` is an `ngx_list_t` of `ngx_table_elt_t`: a chain of parts,
    // each with `nelts` initialised elements; keys, lower-cased keys and values are pool strings
    // of their stated lengths, living as long as the request. A subrequest's `headers_in` is its
    // parent's.
    let first: *const ngx_list_part_t = unsafe { &(*r).headers_in.headers.part };
    let parts = core::iter::successors(unsafe { first.as_ref() }, |p| unsafe { p.next.as_ref() });
    parts
        .flat_map(|p| {
            let elts = p.elts.cast::<ngx_table_elt_t>();
            // SAFETY: the part's first `nelts` elements are initialised.
            (0..p.nelts).map(move |i| unsafe { &*elts.add(i) })
        })
        .filter(move |h: &&'r ngx_table_elt_t| {
            h.key.len == name.len()
                && if h.lowcase_key.is_null() {
                    h.key.as_bytes().eq_ignore_ascii_case(name)
                } else {
                    // SAFETY: the lower-cased key has the key's length.
                    unsafe { core::slice::from_raw_parts(h.lowcase_key, h.key.len) == name }
                }
        })
        .map(|h| h.value.as_bytes())
}
