//! What the module decided for a request, kept in the request's pool.
//!
//! nginx empties a request's module contexts on an internal redirect (`error_page`,
//! `try_files`, `rewrite … last`), yet `$apim_sas_error` must still be readable on the error
//! page. So the verdict lives in a pool cleanup entry of the request, found again by its handler
//! (the technique of nginx's own realip module), and `r->ctx` points at it while the request is
//! in the location that decided.

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::Verifier;
use ngx::ffi::{ngx_http_request_t, ngx_pool_cleanup_add, ngx_str_t};
use ngx::http::HttpModule;

use crate::conf::LocConf;
use crate::Module;

/// The outcome of verifying one request's token.
#[derive(Clone, Copy)]
pub(crate) enum Verdict {
    /// The token verified: who it was. `id` is a copy in the request's pool.
    Valid {
        id: ngx_str_t,
        key_type: &'static str,
        format: &'static str,
        expiry: DateTime<Utc>,
    },
    /// The token was refused: the error code, and the JSON body (in the request's pool).
    Refused { code: &'static str, body: ngx_str_t },
}

/// A request's verdict and where it was reached.
#[derive(Clone, Copy)]
pub(crate) struct Decision {
    pub(crate) verdict: Verdict,
    /// The verifier that decided: a later location with other keys or settings decides anew.
    pub(crate) verifier: *const Verifier,
    /// The location whose header the token was read from: a later location that reads another
    /// header decides anew.
    pub(crate) decided_in: *const LocConf,
    /// The location the request is in now: only its own 401 page gets the JSON body, never the
    /// page of an `error_page` location.
    pub(crate) location: *const LocConf,
    /// Set by the header filter once it replaced nginx's 401 page with the JSON body.
    pub(crate) replacing: bool,
    /// Set when the request's pool is destroyed (see [`marker`]).
    pub(crate) ended: bool,
}

impl Decision {
    /// The decision `verifier` reached on the token of `location`'s header, in `location`.
    pub(crate) fn new(verdict: Verdict, verifier: *const Verifier, location: &LocConf) -> Decision {
        Decision {
            verdict,
            verifier,
            decided_in: location,
            location,
            replacing: false,
            ended: false,
        }
    }

    /// Whether this decision holds for a request now in `location`, verified by `verifier`: the
    /// same keys and settings (one verifier per distinct setting) reading the same header.
    ///
    /// # Safety
    /// `decided_in` and `location` are location configurations of the request's cycle.
    // SAFETY: unsafe because it reads `decided_in`; sound when it is a location configuration of
    // the request's cycle (so it outlives the request), which `Decision::new` (its one
    // constructor, given the request's own location) keeps true.
    pub(crate) unsafe fn holds_for(&self, verifier: *const Verifier, location: &LocConf) -> bool {
        // SAFETY: as the function's contract.
        self.verifier == verifier
            && unsafe { self.decided_in.as_ref() }
                .is_some_and(|decided_in| decided_in.header_lowercase == location.header_lowercase)
    }
}

// Pool memory is aligned to nginx's `NGX_ALIGNMENT` (a word): a `Decision` must need no more.
const _: () = assert!(core::mem::align_of::<Decision>() <= core::mem::align_of::<usize>());

// SAFETY: a type, not a call: the signature of nginx's pool cleanup handlers.
type Handler = unsafe extern "C" fn(*mut c_void);

/// The cleanup handler that marks a request's [`Decision`]: it holds no resource to free
/// (everything it points at is in the same pool), so it only records that the request ended.
/// Its body is its own (no other function of the module writes `ended`), so the compiler cannot
/// merge it with another function: its address identifies the module's entries. It never wipes
/// the decision: `r->ctx` may still point at it while the pool is destroyed.
#[inline(never)]
// SAFETY: called only by nginx when the request's pool is destroyed, with the data of the cleanup
// entry `record` made: one `Decision`.
unsafe extern "C" fn marker(data: *mut c_void) {
    // SAFETY: nginx calls this with the entry's data: a valid `Decision` written by `record`,
    // once, while the pool is destroyed; writing a `bool` field keeps it valid.
    unsafe { (*data.cast::<Decision>()).ended = true };
}

/// The request's decision while it is in the location that reached it (`r->ctx`).
///
/// # Safety
/// `r` is a live request.
// SAFETY: unsafe because it reads `r->ctx`; sound when `r` is live. The answer lives in the
// request's pool, so it must not outlive the request.
pub(crate) unsafe fn current<'r>(r: *mut ngx_http_request_t) -> Option<&'r mut Decision> {
    // SAFETY: `r->ctx` has a slot per HTTP module, this module's at its `ctx_index`; it is null
    // or was set by `record`/`restore` to a `Decision` in the request's pool.
    unsafe {
        let slot = (*r).ctx.add(Module::module().ctx_index);
        (*slot).cast::<Decision>().as_mut()
    }
}

/// The request's decision, also after an internal redirect emptied `r->ctx`.
///
/// # Safety
/// `r` is a live request.
// SAFETY: unsafe because it reads `r->ctx` and the pool's cleanup list; sound when `r` is live.
pub(crate) unsafe fn find<'r>(r: *mut ngx_http_request_t) -> Option<&'r mut Decision> {
    // SAFETY: as `current`; the request pool's cleanup list is a null-terminated list of
    // entries whose data is what their handler expects: ours is a `Decision`.
    unsafe {
        if let Some(decision) = current(r) {
            return Some(decision);
        }
        let mut entry = (*(*r).pool).cleanup;
        while let Some(cleanup) = entry.as_ref() {
            let ours = cleanup
                .handler
                .is_some_and(|handler| ptr::fn_addr_eq(handler, marker as Handler));
            if ours {
                return cleanup.data.cast::<Decision>().as_mut();
            }
            entry = cleanup.next;
        }
        None
    }
}

/// Makes `decision` the request's current one again (`r->ctx`).
///
/// # Safety
/// `r` is a live request and `decision` lives in its pool.
// SAFETY: unsafe because it writes `r->ctx`; sound when `r` is live and `decision` is in its pool
// (it came from `find` or `record`).
pub(crate) unsafe fn restore(r: *mut ngx_http_request_t, decision: &mut Decision) {
    // SAFETY: as `current`.
    unsafe { *(*r).ctx.add(Module::module().ctx_index) = ptr::from_mut(decision).cast() };
}

/// Stores `decision` as the request's, replacing `earlier` (what [`find`] gave) in place.
///
/// # Safety
/// `r` is a live request, and `earlier` what `find(r)` answered.
// SAFETY: unsafe because it allocates from and writes into `r`'s pool; sound when `r` is live and
// `earlier` is what `find(r)` answered.
pub(crate) unsafe fn record(
    r: *mut ngx_http_request_t,
    earlier: Option<&mut Decision>,
    decision: Decision,
) -> Option<&mut Decision> {
    // SAFETY: `earlier` is the request's own entry; `ngx_pool_cleanup_add` returns an entry
    // with `size_of::<Decision>()` bytes of pool memory (aligned for pointers) as its data, or
    // null.
    unsafe {
        if let Some(earlier) = earlier {
            *earlier = decision;
            restore(r, earlier);
            return Some(earlier);
        }
        let cleanup = ngx_pool_cleanup_add((*r).pool, size_of::<Decision>()).as_mut()?;
        let data = cleanup.data.cast::<Decision>();
        data.write(decision);
        cleanup.handler = Some(marker);
        restore(r, &mut *data);
        data.as_mut()
    }
}

/// Stores a subrequest's `decision` in its own context only. A subrequest shares its parent's
/// pool, so a cleanup entry would be found by the parent as its own decision; the subrequest's
/// context is enough (its variables are read while it runs).
///
/// # Safety
/// `r` is a live subrequest.
// SAFETY: unsafe because it allocates from and writes into `r`'s pool and context; sound when `r`
// is live.
pub(crate) unsafe fn record_subrequest(
    r: *mut ngx_http_request_t,
    decision: Decision,
) -> Option<()> {
    // SAFETY: `ngx_palloc` returns `size_of::<Decision>()` bytes of the request's pool, aligned
    // for pointers (nginx's `NGX_ALIGNMENT`, the alignment of `Decision`), or null; the value is
    // written whole before `r->ctx` points at it.
    unsafe {
        let data = ngx::ffi::ngx_palloc((*r).pool, size_of::<Decision>()).cast::<Decision>();
        if data.is_null() {
            return None;
        }
        data.write(decision);
        restore(r, &mut *data);
        Some(())
    }
}

/// Copies `bytes` into the request's pool, as an nginx string.
///
/// # Safety
/// `r` is a live request.
// SAFETY: unsafe because it allocates from `r`'s pool; sound when `r` is live. The copy lives as
// long as the request.
pub(crate) unsafe fn pool_copy(r: *mut ngx_http_request_t, bytes: &[u8]) -> Option<ngx_str_t> {
    // SAFETY: `ngx_pnalloc` returns `len` writable bytes of the request's pool or null.
    unsafe {
        let data = ngx::ffi::ngx_pnalloc((*r).pool, bytes.len().max(1)).cast::<u8>();
        if data.is_null() {
            return None;
        }
        ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
        Some(ngx_str_t {
            len: bytes.len(),
            data,
        })
    }
}
