//! Parse arbitrary bytes: never a panic; every refusal has a code, a target and status 401; an
//! accepted token's fields are what its text says, and converting it keeps its signature.
#![no_main]

use apim_sas::{Format, Scheme, UntrustedToken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match UntrustedToken::parse_bytes(data) {
        Err(e) => {
            assert!(!e.code().is_empty() && !e.target().is_empty() && !e.message().is_empty());
            assert_eq!(e.http_status(), 401);
        }
        Ok(t) => {
            let text = std::str::from_utf8(data).expect("accepted tokens are UTF-8");
            if t.scheme() == Some(Scheme::Portal) {
                // SharedAccessSignature token="…",refresh="…": the signature closes the quotes.
                assert!(text.contains(&format!("{}\"", t.signature())));
            } else {
                assert!(text.ends_with(t.signature()));
            }
            assert!(text.contains(t.id()));
            assert!(data.len() <= apim_sas::MAX_TOKEN_LEN);
            for to in [Format::Compact, Format::Uid] {
                if let Ok(converted) = t.convert(to) {
                    let again =
                        UntrustedToken::parse(converted.as_str()).expect("a converted token parses");
                    assert_eq!(
                        (
                            again.id(),
                            again.expiry(),
                            again.signature(),
                            again.format()
                        ),
                        (t.id(), t.expiry(), t.signature(), to)
                    );
                }
            }
        }
    }
});
