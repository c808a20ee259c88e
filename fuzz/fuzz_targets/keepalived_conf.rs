//! The keepalived.conf reader on arbitrary text: an error names the file and line; an accepted
//! configuration is valid and renders to a keepalived.conf that reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match ipf_agent::config::keepalived_conf::parse(&text, "fuzz.conf") {
        Ok(cfg) => ipf_fuzz::check_accepted(&cfg),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz.conf:"), "error without file and line: {msg}");
        }
    }
});
