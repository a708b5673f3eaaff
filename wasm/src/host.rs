//! The two things the filter asks the host for that the proxy-wasm crate reads in a way that can
//! panic or that a wasm32-unknown-unknown build lacks: the request's header pairs as bytes, and
//! one variable of the VM's environment. Both are raw calls into the host, the only `unsafe` of
//! the crate; what they return is parsed by safe code that refuses a malformed answer.
//!
//! - Headers: the crate's `get_http_request_headers_bytes` turns every header name into a
//!   `String` with `unwrap`, so a name that is not UTF-8 would trap the VM. Envoy's codecs refuse
//!   such names, but a filter placed before this one could add one; here they stay bytes.
//! - Environment: Envoy passes `vm_config.environment_variables` through WASI's `environ_get`,
//!   which the standard library reads only on `wasm32-wasip1`; the filter imports it itself, so
//!   that a `wasm32-unknown-unknown` build reads the keystore's variable too.

use std::ptr::null_mut;

use zeroize::Zeroizing;

// Imported from Envoy (proxy-wasm ABI 0.2.1): the same function the proxy-wasm crate imports
// under the same name and wasm signature (three i32 in, one out).
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

// WASI preview 1, which Envoy provides to every module that imports it (the errno is an i32 in
// the ABI, as the standard library declares it on wasm32-wasip1).
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn environ_sizes_get(count: *mut usize, buffer_size: *mut usize) -> i32;
    fn environ_get(pointers: *mut *mut u8, buffer: *mut u8) -> i32;
}

/// proxy-wasm's `MapType::HttpRequestHeaders`.
const HTTP_REQUEST_HEADERS: u32 = 0;
/// proxy-wasm's `Status::Ok`.
const OK: u32 = 0;

/// The request's headers as proxy-wasm serializes a map (`crate::request::pairs` reads it);
/// empty when the host has none to give.
pub(crate) fn request_headers() -> Vec<u8> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a length through the two out-pointers, which point
    // at live locals; it has nothing else of ours to touch.
    let status = unsafe { proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) };
    if status != OK || data.is_null() {
        return Vec::new();
    }
    // SAFETY: on `Ok` with a pointer, the host has allocated `size` bytes for us through the
    // module's exported allocator (the proxy-wasm crate's `proxy_on_memory_allocate`/`malloc`:
    // a boxed slice of exactly `size` bytes, alignment 1) and filled them; the buffer is ours to
    // own and free, as the proxy-wasm crate's own `get_map_bytes` does.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// The value of the VM's environment variable `name` (the bytes after `name=`), `None` when it
/// is not set. The copy of the whole environment the host hands over is wiped once read.
pub(crate) fn env_var(name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    let (mut count, mut size) = (0usize, 0usize);
    // SAFETY: the host writes two sizes through pointers to live locals.
    let errno = unsafe { environ_sizes_get(&mut count, &mut size) };
    if errno != 0 {
        return Err(format!("WASI environ_sizes_get failed (errno {errno})"));
    }
    let mut pointers: Vec<*mut u8> = vec![null_mut(); count];
    let mut buffer = Zeroizing::new(vec![0u8; size]);
    // SAFETY: `pointers` has room for `count` pointers and `buffer` for `size` bytes, the sizes
    // the host just gave; it writes the variables as `NAME=value\0` strings into `buffer` and a
    // pointer to each into `pointers`. The pointers are not read: `buffer` is split at its NULs.
    let errno = unsafe { environ_get(pointers.as_mut_ptr(), buffer.as_mut_ptr()) };
    if errno != 0 {
        return Err(format!("WASI environ_get failed (errno {errno})"));
    }
    Ok(buffer.split(|&b| b == 0).find_map(|entry| {
        entry
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            .map(|value| Zeroizing::new(value.to_vec()))
    }))
}
