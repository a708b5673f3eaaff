//! The directives, their inheritance (http → server → location, as nginx's own), and the
//! verifiers of one configuration cycle.
//!
//! | directive | default |
//! | --- | --- |
//! | `apim_sas on \| off;` | `off` |
//! | `apim_sas_keystore PATH;` | — (needed where `on`) |
//! | `apim_sas_header NAME;` | `Authorization` |
//! | `apim_sas_leeway TIME;` | `60s` |
//! | `apim_sas_max_lifetime TIME \| off;` | `30d` |
//! | `apim_sas_key_type any \| primary \| secondary;` | `any` |
//! | `apim_sas_cache NUMBER \| off;` | on, 1024 tokens |
//!
//! `on`/`off`, times and names are read by nginx's own slot functions, so their syntax, their
//! errors and the "is duplicate" check are nginx's. A keystore is read when its directive is
//! parsed (by the master, as root), each path once per cycle; the verifiers are built when the
//! levels are merged, one per distinct setting, so locations that agree share one verifier and
//! its verdict cache.

use core::ffi::{c_char, c_void};
use core::mem::{offset_of, size_of};
use core::ptr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use apim_sas::chrono::TimeDelta;
use apim_sas::{KeyType, Keystore, Policy, Verifier};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_atoi, ngx_command_t, ngx_conf_enum_t, ngx_conf_full_name, ngx_conf_set_enum_slot,
    ngx_conf_set_flag_slot, ngx_conf_set_sec_slot, ngx_conf_set_str_slot, ngx_conf_t, ngx_flag_t,
    ngx_parse_time, ngx_pool_cleanup_add, ngx_str_t, ngx_uint_t, time_t, NGX_CONF_FLAG,
    NGX_CONF_TAKE1, NGX_ERROR, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
use ngx::{ngx_conf_log_error, ngx_string};

use crate::{guard, keys, Module};

/// nginx's "not set" for flags, times and numbers (`NGX_CONF_UNSET`).
const UNSET: isize = -1;
const UNSET_UINT: ngx_uint_t = ngx_uint_t::MAX;

/// The verdict cache of a verifier that `apim_sas_cache` does not size.
pub(crate) const DEFAULT_CACHE: usize = Verifier::DEFAULT_CACHE_CAPACITY;
/// The largest `apim_sas_cache`: 320 bytes a token, so at most 320 MiB per worker.
const MAX_CACHE: usize = 1 << 20;

/// `apim_sas_key_type`'s values as nginx's enum slot reads them.
const KEY_ANY: ngx_uint_t = 0;
const KEY_PRIMARY: ngx_uint_t = 1;
const KEY_SECONDARY: ngx_uint_t = 2;

static mut KEY_TYPES: [ngx_conf_enum_t; 4] = [
    ngx_conf_enum_t {
        name: ngx_string!("any"),
        value: KEY_ANY,
    },
    ngx_conf_enum_t {
        name: ngx_string!("primary"),
        value: KEY_PRIMARY,
    },
    ngx_conf_enum_t {
        name: ngx_string!("secondary"),
        value: KEY_SECONDARY,
    },
    ngx_conf_enum_t {
        name: ngx_str_t {
            len: 0,
            data: ptr::null_mut(),
        },
        value: 0,
    },
];

/// Every level where the directives are allowed: http, server, location.
const ALL_LEVELS: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

const fn command(
    name: ngx_str_t,
    args: u32,
    // SAFETY: a type, not a call: nginx's handler signature, called by nginx alone.
    set: unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char,
    offset: usize,
    post: *mut c_void,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: (ALL_LEVELS | args) as ngx_uint_t,
        set: Some(set),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset,
        post,
    }
}

pub(crate) static mut COMMANDS: [ngx_command_t; 8] = [
    command(
        ngx_string!("apim_sas"),
        NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        offset_of!(LocConf, enable),
        ptr::null_mut(),
    ),
    command(
        ngx_string!("apim_sas_keystore"),
        NGX_CONF_TAKE1,
        set_keystore,
        0,
        ptr::null_mut(),
    ),
    command(
        ngx_string!("apim_sas_header"),
        NGX_CONF_TAKE1,
        ngx_conf_set_str_slot,
        offset_of!(LocConf, header),
        ptr::null_mut(),
    ),
    command(
        ngx_string!("apim_sas_leeway"),
        NGX_CONF_TAKE1,
        ngx_conf_set_sec_slot,
        offset_of!(LocConf, leeway),
        ptr::null_mut(),
    ),
    command(
        ngx_string!("apim_sas_max_lifetime"),
        NGX_CONF_TAKE1,
        set_max_lifetime,
        0,
        ptr::null_mut(),
    ),
    command(
        ngx_string!("apim_sas_key_type"),
        NGX_CONF_TAKE1,
        ngx_conf_set_enum_slot,
        offset_of!(LocConf, key_type),
        // Only the address is taken; nginx's enum slot reads the table.
        ptr::addr_of_mut!(KEY_TYPES) as *mut c_void,
    ),
    command(
        ngx_string!("apim_sas_cache"),
        NGX_CONF_TAKE1,
        set_cache,
        0,
        ptr::null_mut(),
    ),
    ngx_command_t::empty(),
];

/// What one cycle has read and built, shared by all its locations.
#[derive(Default)]
pub(crate) struct MainConf {
    /// Each keystore path read in this cycle, read once.
    keystores: Vec<(PathBuf, Rc<Keystore>)>,
    /// The verifiers built, one per distinct setting.
    verifiers: Vec<(Settings, Arc<Verifier>)>,
}

/// What makes two locations' verifiers the same.
#[derive(Clone, PartialEq)]
struct Settings {
    keystore: PathBuf,
    leeway: time_t,
    max_lifetime: Option<time_t>,
    key_type: ngx_uint_t,
    cache: usize,
}

/// One level's settings: the fields nginx's slots write keep nginx's types and "unset" values.
pub(crate) struct LocConf {
    enable: ngx_flag_t,
    leeway: time_t,
    header: ngx_str_t,
    key_type: ngx_uint_t,
    /// `None`: not set here; `Some(None)`: `off`.
    max_lifetime: Option<Option<time_t>>,
    cache: Option<usize>,
    keystore: Option<(PathBuf, Rc<Keystore>)>,
    /// After merging: the lower-cased header name, and the verifier where `apim_sas on`.
    pub(crate) header_lowercase: Vec<u8>,
    pub(crate) verifier: Option<Arc<Verifier>>,
}

impl Default for LocConf {
    fn default() -> LocConf {
        LocConf {
            enable: UNSET,
            leeway: UNSET as time_t,
            header: ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            },
            key_type: UNSET_UINT,
            max_lifetime: None,
            cache: None,
            keystore: None,
            header_lowercase: Vec::new(),
            verifier: None,
        }
    }
}

// SAFETY: `create_main_conf` and `create_loc_conf` below store exactly these types at the
// module's index.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}
// SAFETY: `create_loc_conf` stores a `LocConf` at the module's location index.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

/// Allocates `value` in the configuration's pool, dropped (keys wiped) when the cycle ends; null
/// when the pool is out of memory (nginx's answer for a failed create callback), with `value`
/// dropped. (`ngx::core::Pool::allocate` writes before it checks the allocation.)
// SAFETY: unsafe because it dereferences `cf`; sound when `cf` is the configuration nginx passes
// to a create callback, whose pool lives as long as the cycle.
unsafe fn allocate<T>(cf: *mut ngx_conf_t, value: T) -> *mut c_void {
    /// Drops the value of a cleanup entry made by `allocate`.
    // SAFETY: called only by nginx when the cycle's pool is destroyed, once, with the entry's
    // data: a `T` that `allocate` wrote.
    unsafe extern "C" fn drop_value<T>(data: *mut c_void) {
        // SAFETY: as the function's contract.
        unsafe { ptr::drop_in_place(data.cast::<T>()) };
    }
    const { assert!(core::mem::align_of::<T>() <= core::mem::align_of::<usize>()) };
    // SAFETY: nginx passes a configuration with a live pool, the cycle's; `ngx_pool_cleanup_add`
    // returns null or an entry whose data is `size_of::<T>()` bytes of that pool, aligned to
    // nginx's `NGX_ALIGNMENT` (a word: enough for `T`, checked above), and whose handler is null
    // until set here, after the value is written whole.
    unsafe {
        let Some(entry) = ngx_pool_cleanup_add((*cf).pool, size_of::<T>()).as_mut() else {
            return ptr::null_mut();
        };
        let data = entry.data.cast::<T>();
        data.write(value);
        entry.handler = Some(drop_value::<T>);
        data.cast()
    }
}

// SAFETY: called only by nginx (the module context's `create_main_conf`) with the configuration
// being parsed; guarded against panics.
pub(crate) unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: as `allocate`; a null answer tells nginx the allocation failed.
    guard(ptr::null_mut(), || unsafe {
        allocate(cf, MainConf::default())
    })
}

// SAFETY: called only by nginx (the module context's `create_loc_conf`) with the configuration
// being parsed; guarded against panics.
pub(crate) unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: as `allocate`.
    guard(ptr::null_mut(), || unsafe {
        allocate(cf, LocConf::default())
    })
}

/// The directive's argument (`args[1]`) of a one-argument directive.
// SAFETY: unsafe because it reads `cf->args`; sound only in a `NGX_CONF_TAKE1` handler, where
// nginx has checked there are exactly two arguments.
unsafe fn argument(cf: *mut ngx_conf_t) -> ngx_str_t {
    // SAFETY: nginx calls a `NGX_CONF_TAKE1` handler with exactly two arguments in `cf->args`,
    // an array of `ngx_str_t`.
    unsafe { (*(*cf).args).as_slice::<ngx_str_t>()[1] }
}

/// A static C string as a directive handler's error answer ("is duplicate").
fn answer(message: &'static core::ffi::CStr) -> *mut c_char {
    message.as_ptr().cast_mut()
}

// SAFETY: called only by nginx for `apim_sas_keystore` (TAKE1, `NGX_HTTP_LOC_CONF_OFFSET`), with
// this module's `LocConf` as `conf`; guarded against panics.
unsafe extern "C" fn set_keystore(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes this module's location configuration (created above) as `conf`,
        // and the configuration being parsed, whose context holds the module's main conf.
        let (lcf, main) = unsafe {
            let Some(main) = Module::main_conf_mut(&*cf) else {
                return NGX_CONF_ERROR;
            };
            (&mut *conf.cast::<LocConf>(), main)
        };
        if lcf.keystore.is_some() {
            return answer(c"is duplicate");
        }
        // SAFETY: a TAKE1 directive; `ngx_conf_full_name` rewrites the string in the cycle's
        // pool, relative paths from nginx's configuration prefix.
        let path = unsafe {
            let mut name = argument(cf);
            if ngx_conf_full_name((*cf).cycle, &mut name, 1) != 0 {
                return NGX_CONF_ERROR;
            }
            PathBuf::from(String::from_utf8_lossy(name.as_bytes()).into_owned())
        };
        let found = main.keystores.iter().find(|(p, _)| *p == path);
        let keystore = match found {
            Some((_, keystore)) => Rc::clone(keystore),
            None => match keys::load(&path) {
                Ok(keystore) => {
                    let keystore = Rc::new(keystore);
                    main.keystores.push((path.clone(), Rc::clone(&keystore)));
                    keystore
                }
                Err(problem) => {
                    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "apim_sas_keystore: {problem}");
                    return NGX_CONF_ERROR;
                }
            },
        };
        lcf.keystore = Some((path, keystore));
        NGX_CONF_OK
    })
}

// SAFETY: called only by nginx for `apim_sas_max_lifetime` (TAKE1), with this module's `LocConf`
// as `conf`; guarded against panics.
unsafe extern "C" fn set_max_lifetime(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes this module's location configuration as `conf`.
        let lcf = unsafe { &mut *conf.cast::<LocConf>() };
        if lcf.max_lifetime.is_some() {
            return answer(c"is duplicate");
        }
        // SAFETY: a TAKE1 directive.
        let mut value = unsafe { argument(cf) };
        if value.as_bytes() == b"off" {
            lcf.max_lifetime = Some(None);
            return NGX_CONF_OK;
        }
        // SAFETY: `ngx_parse_time` reads `value.len` bytes of `value.data`.
        let seconds = unsafe { ngx_parse_time(&mut value, 1) };
        if seconds == NGX_ERROR as isize {
            return answer(c"invalid value");
        }
        lcf.max_lifetime = Some(Some(seconds as time_t));
        NGX_CONF_OK
    })
}

// SAFETY: called only by nginx for `apim_sas_cache` (TAKE1), with this module's `LocConf` as
// `conf`; guarded against panics.
unsafe extern "C" fn set_cache(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes this module's location configuration as `conf`.
        let lcf = unsafe { &mut *conf.cast::<LocConf>() };
        if lcf.cache.is_some() {
            return answer(c"is duplicate");
        }
        // SAFETY: a TAKE1 directive.
        let value = unsafe { argument(cf) };
        if value.as_bytes() == b"off" {
            lcf.cache = Some(0);
            return NGX_CONF_OK;
        }
        // SAFETY: `ngx_atoi` reads `value.len` bytes of `value.data`.
        let n = unsafe { ngx_atoi(value.data, value.len) };
        match usize::try_from(n) {
            Ok(n) if n <= MAX_CACHE => {
                lcf.cache = Some(n);
                NGX_CONF_OK
            }
            Ok(_) => answer(c"is over 1048576 tokens"),
            Err(_) => answer(c"invalid value"),
        }
    })
}

// SAFETY: called only by nginx (the module context's `merge_loc_conf`) with two `LocConf`s of this
// module, the enclosing level's and this one's; guarded against panics.
pub(crate) unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes the enclosing level's and this level's location configurations
        // of this module (distinct objects), and the configuration being merged.
        let (prev, lcf, main) = unsafe {
            let Some(main) = Module::main_conf_mut(&*cf) else {
                return NGX_CONF_ERROR;
            };
            (&*prev.cast::<LocConf>(), &mut *conf.cast::<LocConf>(), main)
        };
        match lcf.merge(prev, main) {
            Ok(()) => NGX_CONF_OK,
            Err(problem) => {
                ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{problem}");
                NGX_CONF_ERROR
            }
        }
    })
}

impl LocConf {
    /// nginx's `ngx_conf_merge_*_value` for each setting, then the verifier where `on`.
    fn merge(&mut self, prev: &LocConf, main: &mut MainConf) -> Result<(), String> {
        fn inherit<T: Copy + PartialEq>(value: &mut T, unset: T, prev: T, default: T) {
            if *value == unset {
                *value = if prev == unset { default } else { prev };
            }
        }
        inherit(&mut self.enable, UNSET, prev.enable, 0);
        inherit(&mut self.leeway, UNSET as time_t, prev.leeway, 60);
        inherit(&mut self.key_type, UNSET_UINT, prev.key_type, KEY_ANY);
        if self.header.data.is_null() {
            self.header = if prev.header.data.is_null() {
                ngx_string!("Authorization")
            } else {
                prev.header
            };
        }
        self.max_lifetime = Some(
            self.max_lifetime
                .or(prev.max_lifetime)
                .unwrap_or(Some(30 * 24 * 3600)),
        );
        self.cache = Some(self.cache.or(prev.cache).unwrap_or(DEFAULT_CACHE));
        if self.keystore.is_none() {
            self.keystore.clone_from(&prev.keystore);
        }
        self.header_lowercase = self.header.as_bytes().to_ascii_lowercase();
        if self.enable == 0 {
            self.verifier = None;
            return Ok(());
        }
        let Some((path, keystore)) = &self.keystore else {
            return Err(
                "\"apim_sas on\" needs \"apim_sas_keystore\" at this level or above".into(),
            );
        };
        let settings = Settings {
            keystore: path.clone(),
            leeway: self.leeway,
            max_lifetime: self.max_lifetime.flatten(),
            key_type: self.key_type,
            cache: self.cache.unwrap_or(DEFAULT_CACHE),
        };
        if let Some((_, verifier)) = main.verifiers.iter().find(|(s, _)| *s == settings) {
            self.verifier = Some(Arc::clone(verifier));
            return Ok(());
        }
        let verifier = Arc::new(build(keystore, &settings)?);
        main.verifiers.push((settings, Arc::clone(&verifier)));
        self.verifier = Some(verifier);
        Ok(())
    }
}

/// A verifier of the keystore's keys of the chosen type, with the chosen policy and cache.
fn build(keystore: &Keystore, settings: &Settings) -> Result<Verifier, String> {
    let seconds = |s: time_t, what: &str| {
        TimeDelta::try_seconds(s).ok_or_else(|| format!("\"{what}\" is too large"))
    };
    let leeway = seconds(settings.leeway, "apim_sas_leeway")?;
    let max_lifetime = match settings.max_lifetime {
        Some(s) => Some(seconds(s, "apim_sas_max_lifetime")?),
        None => None,
    };
    let policy = Policy::new()
        .with_leeway(leeway)
        .with_max_lifetime(max_lifetime);
    let wanted = match settings.key_type {
        KEY_PRIMARY => Some(KeyType::Primary),
        KEY_SECONDARY => Some(KeyType::Secondary),
        _ => None,
    };
    let mut verifier = Verifier::new(policy);
    for (id, pair) in keystore.iter() {
        for (key_type, key) in pair.keys() {
            if wanted.is_none_or(|wanted| wanted == key_type) {
                verifier.insert(id, key_type, key).map_err(|err| {
                    format!("apim_sas_keystore: {}: {}", err.code(), err.message())
                })?;
            }
        }
    }
    Ok(verifier.with_cache(settings.cache))
}
