//! Any frame a container sends into a network with a policy (default deny, allow, reject and
//! staged rules): `Switch::process` never panics, the packet reader never reads past the
//! frame, and every reject answer is a frame policy can read, addressed back to the sender.
#![no_main]

use std::sync::Mutex;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vswitch_core::frame::MacAddr;
use vswitch_core::ids::PortId;
use vswitch_core::switch::{Action, PortConfig, PortMode, Switch, SwitchConfig};

const POLICY: &str = r#"
default = "deny"
[[rules]]
name = "web-db"
action = "allow"
direction = "to"
select = "app=db"
peer = "app=web"
proto = "tcp"
ports = "5432"
[[rules]]
name = "no-udp"
action = "reject"
direction = "to"
select = "*"
proto = "udp"
[[rules]]
name = "try"
action = "deny"
direction = "from"
select = "app=db"
staged = true
[[rules]]
name = "pings"
action = "reject"
direction = "to"
select = "*"
proto = "icmp"
"#;

fn switch() -> (Switch, PortId) {
    let mut sw = Switch::new(SwitchConfig::default());
    let net = sw.add_network();
    let config = PortConfig {
        mode: PortMode::Access(net),
        mtu: 9000,
        security: None,
        rate_limit: None,
        reach: Default::default(),
    };
    let web = sw.add_port(config.clone()).unwrap();
    let db = sw.add_port(config).unwrap();
    sw.add_static(net, MacAddr([2, 0, 0, 0, 0, 3]), db).unwrap();
    let endpoints: Vec<policy::Endpoint> = [("web", 2u8), ("db", 3)]
        .into_iter()
        .map(|(app, last)| policy::Endpoint {
            name: app.into(),
            labels: [("app".to_string(), app.to_string())].into(),
            addrs: vec![[10, 0, 0, last].into()],
        })
        .collect();
    let policy = toml::from_str(POLICY).unwrap();
    let engine = policy::Engine::new(&policy, &endpoints, vec![], 4096).unwrap();
    sw.set_policy(net, Some(engine)).unwrap();
    (sw, web)
}

static SWITCH: Mutex<Option<(Switch, PortId, Instant)>> = Mutex::new(None);

fuzz_target!(|frame: &[u8]| {
    let _ = policy::Packet::parse(frame);
    let mut guard = SWITCH.lock().unwrap();
    let (sw, web, now) = guard.get_or_insert_with(|| {
        let (sw, web) = switch();
        (sw, web, Instant::now())
    });
    if let Action::Reject { reply, .. } = sw.process(*now, *web, frame) {
        let answer = policy::Packet::parse(reply).expect("a reject answer is readable");
        let asked = policy::Packet::parse(frame).expect("only IP is rejected");
        assert_eq!((answer.src, answer.dst), (asked.dst, asked.src));
        assert_eq!(&reply[0..6], &frame[6..12]);
    }
});
