//! proxy-wasm's contexts: one root context per plugin configuration in each VM (Envoy runs a VM
//! per worker thread), holding the plugin's verifier and its verdict cache, shared with the HTTP
//! context of each request through an `Rc` (a VM is single-threaded).

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use zeroize::Zeroizing;

use crate::config::{self, Plugin};
use crate::host;
use crate::request::{self, Refusal};

proxy_wasm::main! {{
    // Also installs proxy-wasm's panic hook, which logs a panic's message before the trap.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { plugin: None }) });
}}

/// A line in Envoy's log (its `wasm` logger, at the level Envoy runs it), never with a token or
/// a key. A log call that fails has nowhere better to go.
fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

struct Root {
    /// `None` until a configuration has loaded.
    plugin: Option<Rc<Plugin>>,
}

impl Context for Root {}

impl RootContext for Root {
    /// Loads the plugin's configuration; `false` (Envoy then refuses the filter, and with it the
    /// listener or the whole configuration) when it does not load. A root context configured
    /// again keeps its plugin when the new configuration fails.
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let text = Zeroizing::new(self.get_plugin_configuration().unwrap_or_default());
        match config::load(&text, &host::env_var) {
            Ok(plugin) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "apim-sas: {} gateway(s), token header {}, verdict cache {} token(s)",
                        plugin.verifier.len(),
                        plugin.header,
                        plugin.verifier.cache_capacity()
                    ),
                );
                self.plugin = Some(Rc::new(plugin));
                true
            }
            Err(problem) => {
                log(
                    LogLevel::Error,
                    &format!("apim-sas: the plugin's configuration is refused: {problem}"),
                );
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            plugin: self.plugin.clone(),
        }))
    }
}

struct Filter {
    plugin: Option<Rc<Plugin>>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(plugin) = self.plugin.as_deref() else {
            // Envoy creates no request context for a plugin that failed to configure; should
            // one come anyway, nothing passes.
            self.send_http_response(503, Vec::new(), None);
            return Action::Pause;
        };
        let Some(now) = request::instant(self.get_current_time()) else {
            log(
                LogLevel::Error,
                "apim-sas: the host's clock is not a date: request refused",
            );
            self.send_http_response(500, Vec::new(), None);
            return Action::Pause;
        };
        let map = host::request_headers();
        let headers = request::pairs(&map).unwrap_or_default();
        let decision = request::decide(plugin, &headers, now);
        for name in &decision.spoofed {
            self.remove_http_request_header(name);
        }
        match decision.verdict {
            Ok(identity) => {
                // Every spelling the client sent is gone (above): adding is setting, and costs
                // Envoy one header-map operation instead of a look-up and a replacement.
                for (name, value) in identity.headers() {
                    self.add_http_request_header_bytes(name.as_str(), value.as_bytes());
                }
                Action::Continue
            }
            Err(error) => {
                log(
                    LogLevel::Debug,
                    &format!(
                        "apim-sas: token refused: {} (target {})",
                        error.code(),
                        error.target()
                    ),
                );
                let refusal = Refusal::of(&error);
                let headers = refusal
                    .headers
                    .iter()
                    .map(|(name, value)| (*name, value.as_str()))
                    .collect();
                self.send_http_response(refusal.status, headers, Some(&refusal.body));
                Action::Pause
            }
        }
    }
}
