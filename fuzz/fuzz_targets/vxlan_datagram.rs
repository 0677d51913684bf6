//! Any datagram a host of the underlay sends to the VXLAN port: the header parser never
//! panics or reads past the datagram, and the inner frame, switched as if from a tunnel port,
//! never goes back out to another host or to this host's gateway (split horizon).
#![no_main]

use std::sync::Mutex;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vswitch_core::ids::PortId;
use vswitch_core::switch::{PortConfig, PortMode, Reach, Switch, SwitchConfig};
use vswitch_core::vxlan;

struct Bed {
    sw: Switch,
    tunnel: PortId,
    /// Ports a tunnel's frames must never reach.
    forbidden: [PortId; 2],
    now: Instant,
}

fn bed() -> Bed {
    let mut sw = Switch::new(SwitchConfig::default());
    let net = sw.add_network();
    let port = |sw: &mut Switch, reach| {
        sw.add_port(PortConfig {
            mode: PortMode::Access(net),
            mtu: 1450,
            security: None,
            rate_limit: None,
            reach,
        })
        .unwrap()
    };
    port(&mut sw, Reach::Any);
    let gateway = port(&mut sw, Reach::HostOnly);
    let tunnel = port(&mut sw, Reach::Tunnel);
    let other_host = port(&mut sw, Reach::Tunnel);
    Bed {
        sw,
        tunnel,
        forbidden: [gateway, other_host],
        now: Instant::now(),
    }
}

static BED: Mutex<Option<Bed>> = Mutex::new(None);

fuzz_target!(|datagram: &[u8]| {
    let Ok((vni, start)) = vxlan::parse(datagram) else {
        return;
    };
    assert!(vni <= vxlan::MAX_VNI && start <= datagram.len());
    let mut guard = BED.lock().unwrap();
    let bed = guard.get_or_insert_with(bed);
    let action = bed.sw.process(bed.now, bed.tunnel, &datagram[start..]);
    for egress in action.targets() {
        assert!(!bed.forbidden.contains(&egress.port), "{egress:?} from a tunnel");
    }
});
