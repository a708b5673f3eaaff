//! `nginx -t` on configurations the module refuses: the library's code and message for a bad
//! keystore, nginx's own words for a bad value, and the line of the directive.

mod common;

use common::*;

/// `nginx -t` on `http`; its exit success and its stderr.
fn check(setup: &Setup, http: &str) -> (bool, String) {
    setup.write(http);
    let out = setup.test();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn keystore_at(path: &str) -> String {
    format!(
        "    server {{
        listen 127.0.0.1:{{port}};
        location / {{ apim_sas on; apim_sas_keystore {path}; }}
    }}"
    )
}

#[test]
fn a_good_configuration_passes() {
    let setup = Setup::new();
    let (ok, stderr) = check(&setup, &server(""));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
}

#[test]
fn a_missing_keystore_fails_with_its_code_path_and_line() {
    let setup = Setup::new();
    let missing = setup.path("missing.json");
    let (ok, stderr) = check(&setup, &keystore_at(&missing.display().to_string()));
    assert!(!ok);
    assert!(stderr.contains("[emerg]"), "{stderr}");
    let conf = setup.path("nginx.conf");
    assert!(
        stderr.contains(&format!(
            ": apim_sas_keystore: InvalidKeyFile: key file {}: No such file or directory (os error 2) in {}:",
            missing.display(),
            conf.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("test failed"), "{stderr}");
}

#[test]
fn unparsable_keystores_fail_with_the_librarys_message_never_a_key() {
    let setup = Setup::new();
    let cases = [
        ("bad.json", "{\"gw1\": {\"primary\": ", "InvalidKeyFile"),
        ("bad.toml", "[gw1\nprimary = 1", "InvalidKeyFile"),
        (
            "badkey.json",
            "{\"gw1\": {\"primary\": \"zero\u{200b}width-secret\"}}",
            "InvalidKey",
        ),
        (
            "badid.json",
            "{\"uid=gw1\": {\"primary\": \"sample-secret-key\"}}",
            "InvalidGatewayId",
        ),
    ];
    for (name, text, code) in cases {
        let path = setup.path(name);
        std::fs::write(&path, text).unwrap();
        let (ok, stderr) = check(&setup, &keystore_at(&path.display().to_string()));
        assert!(!ok, "{name}: {stderr}");
        assert!(
            stderr.contains("[emerg]")
                && stderr.contains(&format!(
                    ": apim_sas_keystore: {code}: key file {}: ",
                    path.display()
                )),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("secret"), "{name}: {stderr}");
    }
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let setup = Setup::new();
    let fifo = setup.path("fifo.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    let (ok, stderr) = check(&setup, &keystore_at(&fifo.display().to_string()));
    assert!(!ok);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        stderr.contains("not a regular file (a FIFO, a socket or a device)"),
        "{stderr}"
    );
    let (ok, stderr) = check(
        &setup,
        &keystore_at(&setup.dir.path().display().to_string()),
    );
    assert!(!ok);
    assert!(stderr.contains("a directory, not a file"), "{stderr}");
}

#[test]
fn a_relative_keystore_is_read_from_the_configuration_directory() {
    let setup = Setup::new();
    let (ok, stderr) = check(&setup, &keystore_at("keystore.json"));
    assert!(ok, "{stderr}");
}

#[test]
fn on_without_a_keystore_fails() {
    let setup = Setup::new();
    let (ok, stderr) = check(
        &setup,
        "    server { listen 127.0.0.1:{port}; location / { apim_sas on; } }",
    );
    assert!(!ok);
    assert!(
        stderr.contains(": \"apim_sas on\" needs \"apim_sas_keystore\" at this level or above in "),
        "{stderr}"
    );
    // A keystore without `on` anywhere is read (and checked) but needs nothing else.
    let (ok, stderr) = check(
        &setup,
        "    apim_sas_keystore {dir}/keystore.json;
    server { listen 127.0.0.1:{port}; }",
    );
    assert!(ok, "{stderr}");
}

#[test]
fn bad_values_fail_in_nginxs_own_words() {
    let setup = Setup::new();
    let cases = [
        (
            "apim_sas maybe;",
            "invalid value \"maybe\" in \"apim_sas\" directive, it must be \"on\" or \"off\"",
        ),
        (
            "apim_sas_leeway soon;",
            "\"apim_sas_leeway\" directive invalid value",
        ),
        (
            "apim_sas_max_lifetime forever;",
            "\"apim_sas_max_lifetime\" directive invalid value",
        ),
        ("apim_sas_key_type tertiary;", "invalid value \"tertiary\""),
        (
            "apim_sas_cache lots;",
            "\"apim_sas_cache\" directive invalid value",
        ),
        (
            "apim_sas_cache 2000000;",
            "\"apim_sas_cache\" directive is over 1048576 tokens",
        ),
        (
            "apim_sas_cache 10; apim_sas_cache 20;",
            "\"apim_sas_cache\" directive is duplicate",
        ),
        (
            "apim_sas_leeway 1s; apim_sas_leeway 2s;",
            "\"apim_sas_leeway\" directive is duplicate",
        ),
        (
            "apim_sas_max_lifetime 1h; apim_sas_max_lifetime off;",
            "\"apim_sas_max_lifetime\" directive is duplicate",
        ),
        (
            "apim_sas_keystore keystore.json; apim_sas_keystore keystore.json;",
            "\"apim_sas_keystore\" directive is duplicate",
        ),
        (
            "apim_sas_header;",
            "invalid number of arguments in \"apim_sas_header\" directive",
        ),
    ];
    for (directives, expected) in cases {
        let (ok, stderr) = check(&setup, &server(directives));
        assert!(!ok, "{directives}: {stderr}");
        assert!(stderr.contains(expected), "{directives}: {stderr}");
    }
    // nginx's time syntax: units and sums.
    let (ok, stderr) = check(
        &setup,
        &server("apim_sas_leeway 1m30s; apim_sas_max_lifetime 2d12h; apim_sas_cache off;"),
    );
    assert!(ok, "{stderr}");
}
