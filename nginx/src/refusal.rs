//! The body of a refusal: Azure's ErrorResponse as JSON instead of nginx's HTML 401 page.
//!
//! The access handler answers `NGX_HTTP_UNAUTHORIZED` as `auth_basic` does, so nginx itself
//! finalizes the request: an `error_page 401` takes over, and `satisfy any` can still let the
//! request through. When no error page does, nginx sends its built-in 401 page; these two
//! filters replace that page, and only that page, with the JSON body and `Content-Type:
//! application/json`: nginx's own 401 (`r->err_status`, set by nginx's special-response handler
//! alone) in the location that refused, for a request refused there. An upstream's 401 (reached
//! when `satisfy any` let a refused request in through `allow`) is passed on untouched.

use core::mem::size_of;
use core::ptr;

use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_http_output_body_filter_pt, ngx_http_output_header_filter_pt,
    ngx_http_request_t, ngx_http_top_body_filter, ngx_http_top_header_filter, ngx_int_t,
    ngx_pcalloc, NGX_ERROR, NGX_HTTP_UNAUTHORIZED, NGX_OK,
};
use ngx::http::HttpModuleLocationConf;
use ngx::ngx_string;

use crate::verdict::{self, Verdict};
use crate::{guard, Module};

static mut NEXT_HEADER: ngx_http_output_header_filter_pt = None;
static mut NEXT_BODY: ngx_http_output_body_filter_pt = None;

/// Puts both filters at the top of nginx's chains (`postconfiguration`, once per cycle).
///
/// # Safety
/// Called from `postconfiguration`, in the single thread that reads the configuration.
// SAFETY: unsafe because it rewrites nginx's global filter chains; sound only while the
// configuration is read (single-threaded, no request in flight), i.e. from `postconfiguration`.
pub(crate) unsafe fn install() -> ngx_int_t {
    // SAFETY: nginx's filter chains are plain globals that every filter module rewrites this
    // way while the configuration is read, before any request is served.
    unsafe {
        NEXT_HEADER = ngx_http_top_header_filter;
        ngx_http_top_header_filter = Some(header_filter);
        NEXT_BODY = ngx_http_top_body_filter;
        ngx_http_top_body_filter = Some(body_filter);
    }
    NGX_OK as ngx_int_t
}

/// # Safety
/// `r` is a live request.
// SAFETY: unsafe because it calls the next filter with `r`; sound when `r` is live, as in a filter.
unsafe fn next_header(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: set by `install` to the filter that was on top before this one (never null:
    // nginx's own header filter ends the chain).
    unsafe {
        match NEXT_HEADER {
            Some(next) => next(r),
            None => NGX_ERROR as ngx_int_t,
        }
    }
}

/// # Safety
/// `r` is a live request and `chain` null or a chain of its buffers.
// SAFETY: unsafe because it calls the next filter; sound when `r` is live and `chain` null or its
// buffers, as in a filter.
unsafe fn next_body(r: *mut ngx_http_request_t, chain: *mut ngx_chain_t) -> ngx_int_t {
    // SAFETY: as `next_header`.
    unsafe {
        match NEXT_BODY {
            Some(next) => next(r, chain),
            None => NGX_ERROR as ngx_int_t,
        }
    }
}

// SAFETY: called only by nginx's header filter chain (installed by `install`) with a live request;
// guarded against panics.
unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls a header filter with a live request whose `headers_out` is complete.
    guard(NGX_ERROR as ngx_int_t, || unsafe {
        if let Some(decision) = verdict::current(r) {
            let here = Module::location_conf(&*r).map_or(ptr::null(), ptr::from_ref);
            if let Verdict::Refused { body, .. } = decision.verdict {
                let out = &mut (*r).headers_out;
                if out.status == NGX_HTTP_UNAUTHORIZED as usize
                    && (*r).err_status == NGX_HTTP_UNAUTHORIZED as usize
                    && decision.location == here
                    && ptr::eq(r, (*r).main)
                {
                    decision.replacing = true;
                    out.content_type = ngx_string!("application/json");
                    out.content_type_len = out.content_type.len;
                    out.content_type_lowcase = ptr::null_mut();
                    out.content_type_hash = 0;
                    out.charset.len = 0;
                    out.content_length_n = body.len as i64;
                    if let Some(header) = out.content_length.as_mut() {
                        header.hash = 0;
                        out.content_length = ptr::null_mut();
                    }
                }
            }
        }
        next_header(r)
    })
}

// SAFETY: called only by nginx's body filter chain (installed by `install`) with a live request and
// its buffers; guarded against panics.
unsafe extern "C" fn body_filter(r: *mut ngx_http_request_t, chain: *mut ngx_chain_t) -> ngx_int_t {
    // SAFETY: nginx calls a body filter with a live request and a chain of its buffers; the
    // JSON body lives in the request's pool, and so do the buffer and link made here.
    guard(NGX_ERROR as ngx_int_t, || unsafe {
        let Some(decision) = verdict::current(r).filter(|d| d.replacing) else {
            return next_body(r, chain);
        };
        let Verdict::Refused { body, .. } = decision.verdict else {
            return next_body(r, chain);
        };
        if chain.is_null() {
            return next_body(r, chain);
        }
        // nginx's page is dropped: its buffers are marked sent.
        let mut last = false;
        let mut link = chain;
        while let Some(l) = link.as_ref() {
            if let Some(b) = l.buf.as_mut() {
                last |= b.last_buf() != 0 || b.last_in_chain() != 0;
                b.pos = b.last;
                b.file_pos = b.file_last;
            }
            link = l.next;
        }
        if !last {
            return NGX_OK as ngx_int_t;
        }
        decision.replacing = false;
        let pool = (*r).pool;
        let b = ngx_pcalloc(pool, size_of::<ngx_buf_t>()).cast::<ngx_buf_t>();
        let out = ngx_pcalloc(pool, size_of::<ngx_chain_t>()).cast::<ngx_chain_t>();
        let (Some(b), Some(out)) = (b.as_mut(), out.as_mut()) else {
            return NGX_ERROR as ngx_int_t;
        };
        b.start = body.data;
        b.pos = body.data;
        b.last = body.data.add(body.len);
        b.end = b.last;
        b.set_memory(1);
        b.set_last_buf(1);
        b.set_last_in_chain(1);
        out.buf = b;
        out.next = ptr::null_mut();
        next_body(r, out)
    })
}
