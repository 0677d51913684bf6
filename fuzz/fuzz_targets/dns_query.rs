//! Any bytes a container sends to the gateway's DNS port: `handle_query` never panics, and a
//! reply always carries the query's ID and fits the transport.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use vswitch::gateway::dns::{handle_query, Names, Outcome};

struct OneName;

impl Names for OneName {
    fn addresses(&self, name: &str) -> Option<Vec<IpAddr>> {
        (name == "web").then(|| vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()])
    }
    fn name_of(&self, ip: IpAddr) -> Option<String> {
        (ip == "10.0.0.2".parse::<IpAddr>().unwrap()).then(|| "web".to_string())
    }
}

fuzz_target!(|data: &[u8]| {
    for max_len in [512, 65_535] {
        match handle_query(data, &OneName, max_len) {
            Outcome::Reply(reply) => {
                assert_eq!(reply[..2], data[..2], "reply ID differs from the query's");
                assert!(
                    reply.len() <= max_len.max(4096),
                    "reply of {} bytes",
                    reply.len()
                );
            }
            Outcome::Forward(query) => assert_eq!(query, data),
            Outcome::Drop(_) => {}
        }
    }
});
