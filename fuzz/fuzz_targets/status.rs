//! The status client on an arbitrary answer from the socket: the agent's server reads nothing from
//! a client (it writes a snapshot on accept), so the untrusted side of the status socket is the
//! answer `ipf-agent status` decodes and prints. Decoding fails cleanly or every format renders.
#![no_main]

use ipf_agent::status::{Format, decode, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = decode(data) {
        for format in [Format::Table, Format::Json, Format::Brief] {
            let (_, faulty) = render(&status, format).expect("a decoded status renders");
            assert_eq!(
                faulty.len(),
                if format == Format::Brief {
                    status.iter().filter(|s| s.state == "FAULT").count()
                } else {
                    0
                }
            );
        }
    }
});
