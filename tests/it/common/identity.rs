//! The four identity headers a verified request carries upstream, the spellings a client may try
//! in their place (every case, underscores for dashes, the name twice), and what of them reached
//! an upstream: one list for every gateway test that proves a client cannot smuggle its own.

use super::upstream::Seen;

/// The four headers a gateway integration sets for the upstream (`serve`, the Envoy filter).
pub const IDENTITY: [&str; 4] = [
    "x-apim-gateway-id",
    "x-apim-key-type",
    "x-apim-token-expiry",
    "x-apim-token-format",
];

/// The headers of a request that CGI-style backends (which read `_` as `-`, in any case) would
/// take for one of the four: every name that starts with `x-apim` once so read.
pub fn apim_headers(seen: &Seen) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = seen
        .headers
        .iter()
        .filter(|(n, _)| {
            n.to_ascii_lowercase()
                .replace('_', "-")
                .starts_with("x-apim")
        })
        .cloned()
        .collect();
    found.sort();
    found
}

/// Every spelling of the four names a client may try, as HTTP/1.1 header lines: the name as
/// the gateway sends it, in title and upper case, with underscores for some or all of its dashes, and
/// given twice. Values say which spelling they came in.
pub fn spoofs_h1() -> Vec<Vec<(String, String)>> {
    let mut spellings = Vec::new();
    for name in IDENTITY {
        let title: String = name
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                let first = chars.next().unwrap().to_ascii_uppercase();
                std::iter::once(first).chain(chars).collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("-");
        let forms = [
            name.to_owned(),
            title.clone(),
            name.to_ascii_uppercase(),
            name.replace('-', "_"),
            title.replace('-', "_"),
            name.to_ascii_uppercase().replace('-', "_"),
            name.replacen("-apim-", "-apim_", 1),
            name.replacen("x-", "x_", 1),
        ];
        for (i, form) in forms.iter().enumerate() {
            spellings.push(vec![(form.clone(), format!("spoofed-{i}"))]);
        }
        spellings.push(vec![
            (name.to_owned(), "spoofed-first".to_owned()),
            (name.to_owned(), "spoofed-second".to_owned()),
        ]);
        spellings.push(vec![
            (name.to_owned(), "spoofed-dash".to_owned()),
            (name.replace('-', "_"), "spoofed-underscore".to_owned()),
        ]);
    }
    spellings
}

/// The spellings HTTP/2 allows (names in lower case): as sent, with underscores, given twice.
pub fn spoofs_h2() -> Vec<(String, String)> {
    IDENTITY
        .iter()
        .flat_map(|name| {
            [
                (name.to_string(), "spoofed-h2".to_owned()),
                (name.to_string(), "spoofed-h2-again".to_owned()),
                (name.replace('-', "_"), "spoofed-h2-underscore".to_owned()),
                (
                    name.replacen("-apim-", "-apim_", 1),
                    "spoofed-h2-mixed".to_owned(),
                ),
            ]
        })
        .collect()
}

/// The pairs as `&str`s, as the request builders take them.
pub fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}
