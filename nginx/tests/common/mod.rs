//! The real nginx (Debian's `/usr/sbin/nginx`, or `NGINX_BINARY`) with the module `nginx/build.sh`
//! built (or `APIM_SAS_NGINX_MODULE`), started on free loopback ports with a configuration of the
//! test's, and a real upstream: a second server of the same nginx that answers with the headers
//! it received.
#![allow(dead_code)]

#[path = "../../../tests/it/common/http.rs"]
pub mod http;
#[path = "../../../tests/it/common/ports.rs"]
pub mod ports;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::{Format, GatewayKey, Scheme, Signer};

pub use http::{request, Conn, Reply};

/// The sample keys of `examples/gw1.keys.json` (public, never for a real gateway).
pub const PRIMARY: &str =
    "73l/fe8uuZcKdxz0N2XpR3FrU43rGPDy93Hpbw0Q3TMMYhXTP5d4fkwBwklY/oU2M5UcrM5dgmNBrIUutQ0j8Q==";
pub const SECONDARY: &str =
    "bo2EJh5S2ILek9EjPQesFN9CevgkZpFDqMrltpHhGezw/g+kojmMguK1ZhTiscJ1IvGRYMIWM553yGQUOcnuRQ==";
/// A second gateway's key.
pub const GW2: &str = "second-gateway-sample-key";

/// A keystore of two gateways: gw1 with both sample keys, gw2 with a primary key.
pub fn keystore_json() -> String {
    format!(
        r#"{{"gw1": {{"primary": "{PRIMARY}", "secondary": "{SECONDARY}"}}, "gw2": {{"primary": "{GW2}"}}}}"#
    )
}

/// A token of `id` signed with `key`, expiring `ttl` from now, in `format`.
pub fn token(id: &str, key: &str, ttl: TimeDelta, format: Format) -> String {
    token_at(id, key, Utc::now() + ttl, format)
}

pub fn token_at(id: &str, key: &str, expiry: DateTime<Utc>, format: Format) -> String {
    let key = GatewayKey::new(key).unwrap();
    Signer::new(id, &key)
        .unwrap()
        .sign(expiry, format)
        .unwrap()
        .to_string()
}

/// gw1's token for a day, with the gateway's own scheme.
pub fn good() -> String {
    let bare = token("gw1", PRIMARY, TimeDelta::days(1), Format::Compact);
    Scheme::GatewayKey.apply(&bare)
}

pub fn nginx_binary() -> PathBuf {
    std::env::var_os("NGINX_BINARY").map_or_else(|| PathBuf::from("/usr/sbin/nginx"), PathBuf::from)
}

/// The module to load: `APIM_SAS_NGINX_MODULE`, else what `nginx/build.sh` wrote.
pub fn module() -> PathBuf {
    if let Some(path) = std::env::var_os("APIM_SAS_NGINX_MODULE") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let path = target.join("nginx-module/ngx_http_apim_sas_module.so");
    assert!(
        path.exists(),
        "{} is missing: build the module first with nginx/build.sh (or set APIM_SAS_NGINX_MODULE)",
        path.display()
    );
    path
}

pub use ports::free_port;

/// The upstream's answer: every header the module's variables fill in, and what the client
/// sent as `Authorization`.
pub const UPSTREAM: &str = r#"return 200 "gateway=[$http_x_apim_gateway_id] key=[$http_x_apim_key_type] expiry=[$http_x_apim_token_expiry] format=[$http_x_apim_token_format]\n";"#;

/// What a location puts in front of the upstream: the variables as headers (replacing any
/// header of the same name the client sent) and the proxy.
pub const PROXY: &str = "proxy_set_header X-Apim-Gateway-Id $apim_sas_gateway_id;
            proxy_set_header X-Apim-Key-Type $apim_sas_key_type;
            proxy_set_header X-Apim-Token-Expiry $apim_sas_token_expiry;
            proxy_set_header X-Apim-Token-Format $apim_sas_token_format;
            proxy_pass http://127.0.0.1:{upstream};";

/// An nginx configuration around `http`, the inside of the `http` block (with `{port}`,
/// `{upstream}` and `{dir}` filled in).
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub upstream: u16,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keystore.json"), keystore_json()).unwrap();
        Setup {
            dir,
            port: free_port(),
            upstream: free_port(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn fill(&self, text: &str) -> String {
        text.replace("{proxy}", PROXY)
            .replace("{upstream_answer}", UPSTREAM)
            .replace("{port}", &self.port.to_string())
            .replace("{upstream}", &self.upstream.to_string())
            .replace("{dir}", &self.dir.path().display().to_string())
    }

    /// Writes `nginx.conf` with `http` inside the `http` block.
    pub fn write(&self, http: &str) -> PathBuf {
        let dir = self.dir.path().display();
        let conf = format!(
            "load_module {module};
user root;
worker_processes 1;
master_process on;
daemon off;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    log_format apim '$status gw=$apim_sas_gateway_id key=$apim_sas_key_type exp=$apim_sas_token_expiry fmt=$apim_sas_token_format err=$apim_sas_error';
    access_log {dir}/access.log apim;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{upstream};
        access_log off;
        location / {{ {answer} }}
    }}
{http}
}}
",
            module = module().display(),
            upstream = self.upstream,
            answer = UPSTREAM,
            http = self.fill(http),
        );
        let path = self.path("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        path
    }

    fn command(&self) -> Command {
        let mut command = Command::new(nginx_binary());
        command
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(self.path("nginx.conf"));
        command
    }

    /// `nginx -t` on the configuration written last.
    pub fn test(&self) -> Output {
        self.command().arg("-t").output().unwrap()
    }

    /// `nginx -s reload`, as an operator runs it.
    pub fn reload(&self) -> Output {
        self.command().args(["-s", "reload"]).output().unwrap()
    }

    /// Starts nginx on the configuration written last and waits until it accepts.
    pub fn start(self) -> Nginx {
        let stderr = std::fs::File::create(self.path("stderr.log")).unwrap();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut nginx = Nginx { setup: self, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(nginx.addr()).is_err() {
            if let Some(status) = nginx.child.try_wait().unwrap() {
                panic!("nginx exited ({status}): {}", nginx.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                nginx.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        nginx
    }
}

/// A running nginx, stopped (gracefully, workers included) when dropped.
pub struct Nginx {
    pub setup: Setup,
    child: Child,
}

impl Nginx {
    /// Writes the configuration and starts nginx with it.
    pub fn with(http: &str) -> Nginx {
        let setup = Setup::new();
        setup.write(http);
        setup.start()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.setup.port))
    }

    pub fn conn(&self) -> Conn {
        Conn::open(self.addr())
    }

    /// One request on a new connection.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.conn().send(&request("GET", path, headers))
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.setup.path("stderr.log")).unwrap_or_default()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.setup.path("error.log")).unwrap_or_default()
    }

    /// The access log once it holds `lines` lines (nginx writes a line after the response).
    pub fn access_log(&self, lines: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(self.setup.path("access.log")).unwrap_or_default();
            if log.lines().count() >= lines || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pids of the master's worker processes.
    pub fn workers(&self) -> Vec<u32> {
        let master = self.pid().to_string();
        let mut workers = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid …
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            if after.split_whitespace().nth(1) == Some(master.as_str()) {
                workers.push(pid);
            }
        }
        workers
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful shutdown of master and workers.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server block most tests use: `apim_sas on` in front of the upstream, with `extra`
/// directives at server level and an open location for comparison.
pub fn server(extra: &str) -> String {
    format!(
        "    apim_sas_keystore {{dir}}/keystore.json;
    server {{
        listen 127.0.0.1:{{port}};
        {extra}
        location / {{
            apim_sas on;
            {{proxy}}
        }}
        location /open/ {{
            {{proxy}}
        }}
    }}"
    )
}
