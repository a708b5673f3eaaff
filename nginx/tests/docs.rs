//! `examples/nginx-module.conf`, the guide's complete configuration, run as is: only its paths
//! and ports are moved to the test's own, and an upstream is added in its `http` block.

mod common;

use apim_sas::chrono::TimeDelta;
use apim_sas::{Format, Scheme};
use common::*;

fn example(setup: &Setup) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/nginx-module.conf"),
    )
    .unwrap();
    let dir = setup.dir.path().display().to_string();
    let replace = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "the example no longer holds {from:?}");
        text.replace(from, to)
    };
    let mut text = replace(
        text,
        "load_module modules/ngx_http_apim_sas_module.so;",
        &format!(
            "load_module {};\nuser root;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log info;",
            module().display()
        ),
    );
    text = replace(
        text,
        "/etc/apim-sas/gateways.json",
        &format!("{dir}/keystore.json"),
    );
    text = replace(
        text,
        "/var/log/nginx/access.log",
        &format!("{dir}/access.log"),
    );
    text = replace(
        text,
        "listen 80;",
        &format!("listen 127.0.0.1:{};", setup.port),
    );
    text = replace(
        text,
        "server 127.0.0.1:8080;",
        &format!("server 127.0.0.1:{};", setup.upstream),
    );
    replace(
        text,
        "http {\n",
        &setup.fill(&format!(
            "http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{ listen 127.0.0.1:{{upstream}}; access_log off; location / {{ {{upstream_answer}} }} }}
"
        )),
    )
}

#[test]
fn the_guides_configuration_runs_as_written() {
    let setup = Setup::new();
    std::fs::write(setup.path("nginx.conf"), example(&setup)).unwrap();
    let test = setup.test();
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let nginx = setup.start();

    let gw2 = Scheme::GatewayKey.apply(&token("gw2", GW2, TimeDelta::hours(2), Format::Uid));
    let reply = nginx.get(
        "/orders",
        &[("Authorization", &gw2), ("X-Apim-Gateway-Id", "admin")],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .text()
            .starts_with("gateway=[gw2] key=[primary] expiry=[20"),
        "{}",
        reply.text()
    );
    assert!(
        reply.text().ends_with(" format=[uid]\n"),
        "{}",
        reply.text()
    );

    // /admin/: primary keys only, tokens of at most a day.
    let secondary = token("gw1", SECONDARY, TimeDelta::hours(2), Format::Compact);
    let reply = nginx.get("/admin/x", &[("Authorization", &secondary)]);
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("SharedAccessSignature error=\"SignatureMismatch\"")
    );
    let long = token("gw1", PRIMARY, TimeDelta::days(3), Format::Compact);
    let reply = nginx.get("/admin/x", &[("Authorization", &long)]);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("SharedAccessSignature error=\"ExpiryTooFar\"")
    );
    assert_eq!(nginx.get("/", &[("Authorization", &long)]).status, 200);

    let reply = nginx.get("/healthz", &[]);
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));

    // `worker_processes auto`: the workers write their lines in any order.
    let log = nginx.access_log(4);
    let line = |request: &str| {
        let found: Vec<&str> = log.lines().filter(|l| l.contains(request)).collect();
        assert_eq!(found.len(), 1, "{request}: {log}");
        found[0]
    };
    let orders = line("\"GET /orders HTTP/1.1\" 200 ");
    assert!(
        orders.contains(" 200 gateway=gw2 key=primary expiry=20"),
        "{orders}"
    );
    assert!(orders.ends_with(" error=-"), "{orders}");
    let admin = log
        .lines()
        .filter(|l| l.contains("GET /admin/x"))
        .collect::<Vec<_>>();
    assert_eq!(admin.len(), 2, "{log}");
    assert!(admin
        .iter()
        .any(|l| l.ends_with("401 gateway=- key=- expiry=- error=SignatureMismatch")));
    assert!(admin
        .iter()
        .any(|l| l.ends_with("401 gateway=- key=- expiry=- error=ExpiryTooFar")));
    assert!(!log.contains(&gw2[20..60]), "{log}");
}
