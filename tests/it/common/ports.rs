//! Free loopback ports for the programs the tests start that cannot be given port 0 (nginx,
//! Caddy, HAProxy, Envoy). nginx/tests/ includes this file too.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// A port free on 127.0.0.1 when asked, never given before in this process. The port is free
/// only until the program binds it, and the kernel may hand the same free port to two tests
/// asking at once: two programs were then told the same port, the second failed to bind, and
/// the test that started it, finding the port accepting, sent its requests to the first (seen as
/// another test's answers, about one run in seventy of nginx's tests with six at a time).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}
