//! Any frame a container sends to the gateway: `parse_request` never panics, and every request
//! it accepts can be answered with each kind of reply.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vswitch::gateway::dhcp::{build_reply, parse_request, Reply, ServerConfig};

fuzz_target!(|frame: &[u8]| {
    let Ok(request) = parse_request(frame) else {
        return;
    };
    let config = ServerConfig {
        server_mac: [2, 0, 0, 0, 0, 1],
        server_ip: [10, 0, 0, 1].into(),
        prefix_len: 24,
        router: Some([10, 0, 0, 1].into()),
        dns: vec![[10, 0, 0, 1].into()],
        mtu: Some(1500),
        lease_time: Duration::from_secs(3600),
        domain_name: None,
    };
    for reply in [
        Reply::Offer([10, 0, 0, 2].into()),
        Reply::Ack([10, 0, 0, 2].into()),
        Reply::Nak,
        Reply::InformAck,
    ] {
        let frame = build_reply(&request, reply, &config).expect("a parsed request is answerable");
        assert!(
            parse_request(&frame).is_err(),
            "a reply parsed as a request"
        );
    }
});
