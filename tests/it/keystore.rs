//! Keystores are strict: an unknown field or an id given twice is `InvalidKeyFile` naming the
//! gateway and the field, in JSON and TOML alike, and never quoting a key. The list-keys file
//! (`KeyPair`) stays lenient about extra fields, since Azure returns more than the two keys.

use apim_sas::{Error, KeyPair, KeyType, Keystore};

const KEY: &str = "CANARY-KEY-0a4c77";

#[track_caller]
fn refused(result: Result<Keystore, Error>, message: &str) {
    let err = result.expect_err("refused");
    assert_eq!(
        (err.code(), err.target(), err.http_status(), err.message()),
        ("InvalidKeyFile", "key", 500, message)
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(!shown.contains("0a4c77"), "{shown}");
}

fn json(text: &str) -> Result<Keystore, Error> {
    Keystore::from_json(&text.replace("KEY", KEY))
}

fn toml(text: &str) -> Result<Keystore, Error> {
    Keystore::from_toml(&text.replace("KEY", KEY))
}

#[test]
fn an_unknown_field_is_refused_naming_gateway_and_field() {
    refused(
        json(r#"{"gw1":{"primary":"KEY","secundary":"KEY"}}"#),
        "gateway 'gw1': unknown field 'secundary' at line 1, column 49; \
         a gateway has only \"primary\" and \"secondary\"",
    );
    refused(
        json("{\n  \"gw1\": {\"primary\": \"KEY\"},\n  \"gw2\": {\"Primary\": \"KEY\"}\n}"),
        "gateway 'gw2': unknown field 'Primary' at line 3, column 19; \
         a gateway has only \"primary\" and \"secondary\"",
    );
    refused(
        toml("[gw1]\nprimary = \"KEY\"\nsecundary = \"KEY\"\n"),
        "gateway 'gw1': unknown field 'secundary' at line 3; \
         a gateway has only \"primary\" and \"secondary\"",
    );
    refused(
        toml("[gw0]\nprimary = \"KEY\"\n\n[gw1]\n'Secondary' = \"KEY\"\n"),
        "gateway 'gw1': unknown field 'Secondary' at line 5; \
         a gateway has only \"primary\" and \"secondary\"",
    );
    refused(
        toml("gw1 = { primary = \"KEY\", etag = \"x\" }\n"),
        "gateway 'gw1': unknown field 'etag' at line 1; \
         a gateway has only \"primary\" and \"secondary\"",
    );
}

#[test]
fn a_gateway_given_twice_is_refused() {
    refused(
        json(r#"{"gw1":{"primary":"KEY"},"gw2":{"primary":"KEY"},"gw1":{"secondary":"KEY"}}"#),
        "gateway 'gw1' is given twice, at line 1, column 82",
    );
    refused(
        toml(
            "[gw1]\nprimary = \"KEY\"\n\n[gw2]\nprimary = \"KEY\"\n\n[gw1]\nsecondary = \"KEY\"\n",
        ),
        "gateway 'gw1' is given twice, at line 7",
    );
    refused(
        toml("[\"gw 1\"]\nprimary = \"KEY\"\n['gw 1']\n"),
        "gateway 'gw 1' is given twice, at line 3",
    );
}

#[test]
fn a_field_given_twice_is_refused() {
    refused(
        json(r#"{"gw1":{"primary":"KEY","primary":"KEY"}}"#),
        "gateway 'gw1': field 'primary' is given twice, at line 1, column 47",
    );
    // Given twice even when the first is null.
    refused(
        json(r#"{"gw1":{"secondary":null,"secondary":"KEY"}}"#),
        "gateway 'gw1': field 'secondary' is given twice, at line 1, column 36",
    );
    refused(
        toml("[gw1]\nprimary = \"KEY\"\n\n[gw2]\nprimary = \"KEY\"\nprimary = \"KEY\"\n"),
        "gateway 'gw2': field 'primary' is given twice, at line 6",
    );
    refused(
        toml("gw1 = { primary = \"KEY\", primary = \"KEY\" }\n"),
        "gateway 'gw1': field 'primary' is given twice, at line 1",
    );
    refused(
        toml("[gw1]\n\"primary\" = \"KEY\"\n'primary' = \"KEY\"\n"),
        "gateway 'gw1': field 'primary' is given twice, at line 3",
    );
}

#[test]
fn names_from_the_file_are_shown_escaped() {
    // Ids and field names are the operator's, safe to show, but escaped: a control character in
    // them must not reach a log as is.
    refused(
        json(r#"{"gw\n1":{"primary":"KEY"},"gw\n1":{"primary":"KEY"}}"#),
        "gateway 'gw\\n1' is given twice, at line 1, column 48",
    );
    refused(
        json(r#"{"gw1":{"prim\u001bary":"KEY"}}"#),
        "gateway 'gw1': unknown field 'prim\\u{1b}ary' at line 1, column 23; \
         a gateway has only \"primary\" and \"secondary\"",
    );
}

#[test]
fn a_value_of_the_wrong_shape_names_where_it_is() {
    refused(
        json(r#"{"gw1":{"primary":"KEY"},"gw2":{"primary":5}}"#),
        "gateway 'gw2', field 'primary': JSON of the wrong shape at line 1, column 57; \
         expected {\"<gateway id>\": {\"primary\": \"<key>\", \"secondary\": \"<key>\"}, …}",
    );
    refused(
        json(r#"{"gw1":"KEY"}"#),
        "gateway 'gw1': JSON of the wrong shape at line 1, column 26; \
         expected {\"<gateway id>\": {\"primary\": \"<key>\", \"secondary\": \"<key>\"}, …}",
    );
    // serde's own message here would quote the value ("invalid type: string \"…\""): never shown.
    refused(
        toml("gw1 = \"KEY\"\n"),
        "gateway 'gw1': not a valid TOML keystore at line 1; \
         expected [<gateway id>] tables with primary = \"<key>\", secondary = \"<key>\"",
    );
    refused(
        toml("[gw1]\nprimary = \"KEY\"\n\n[gw2]\nsecondary = 7\n"),
        "gateway 'gw2', field 'secondary': not a valid TOML keystore at line 5; \
         expected [<gateway id>] tables with primary = \"<key>\", secondary = \"<key>\"",
    );
    refused(
        json(r#"["KEY"]"#),
        "JSON of the wrong shape at line 1, column 1; \
         expected {\"<gateway id>\": {\"primary\": \"<key>\", \"secondary\": \"<key>\"}, …}",
    );
}

#[test]
fn good_keystores_still_load() {
    let store = json(
        r#"{"gw1":{"primary":"KEY","secondary":"KEY"},"gw2":{"secondary":"KEY","primary":null}}"#,
    )
    .unwrap();
    assert_eq!(store.len(), 2);
    let gw2 = store.get("gw2").unwrap();
    assert!(gw2.get(KeyType::Secondary).is_ok());
    assert_eq!(gw2.get(KeyType::Primary).unwrap_err().code(), "KeyNotFound");
    let store = toml("[gw1]\nprimary = \"KEY\"\n\n[\"gw-2\"]\nsecondary = 'KEY'\n").unwrap();
    assert_eq!(
        store.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        ["gw-2", "gw1"]
    );
}

#[test]
fn the_list_keys_file_stays_lenient() {
    let text = format!(
        r#"{{"primary": "{KEY}", "secondary": "{KEY}", "etag": "W/\"1\"", "id": "/subscriptions/…"}}"#
    );
    let pair = KeyPair::from_json(&text).unwrap();
    assert_eq!(pair.keys().count(), 2);
}
