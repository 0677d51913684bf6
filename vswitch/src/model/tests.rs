//! Every bad input is refused with a message naming the problem.

use std::collections::BTreeMap;

use vswitch_core::frame::MacAddr;

use super::*;

fn create(name: &str, subnets: &[&str]) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        subnets: subnets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn state(networks: &BTreeMap<String, NetworkRecord>) -> State {
    State {
        networks: networks.clone(),
        ..Default::default()
    }
}

fn with(networks: &[NetworkRecord]) -> BTreeMap<String, NetworkRecord> {
    networks
        .iter()
        .map(|n| (n.name.clone(), n.clone()))
        .collect()
}

fn err(result: Result<impl std::fmt::Debug, ModelError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn network_defaults_like_docker() {
    let net = plan_network(
        &create("app", &["10.90.0.0/24", "fd00:90::/64"]),
        &BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(net.mtu, 1500);
    assert_eq!(net.subnets[0].gateway.to_string(), "10.90.0.1");
    assert_eq!(net.subnets[1].gateway.to_string(), "fd00:90::1");
    let auto = plan_network(&create("b", &[]), &with(&[net])).unwrap();
    assert_eq!(auto.subnets[0].subnet.to_string(), "10.89.0.0/24");
}

#[test]
fn bad_networks_are_refused_by_name() {
    let app = plan_network(&create("app", &["10.90.0.0/24"]), &BTreeMap::new()).unwrap();
    let nets = with(&[app]);
    assert_eq!(
        err(plan_network(&create("app", &["10.91.0.0/24"]), &nets)),
        "network app already exists"
    );
    assert_eq!(
        err(plan_network(&create("b", &["10.90.0.128/25"]), &nets)),
        "subnet 10.90.0.128/25 overlaps subnet 10.90.0.0/24 of network app"
    );
    assert!(err(plan_network(&create("b", &["10.300.0.0/24"]), &nets))
        .starts_with("invalid subnet \"10.300.0.0/24\""));
    assert!(err(plan_network(&create("b", &["10.92.0.5/24"]), &nets))
        .contains("did you mean 10.92.0.0/24"));
    assert!(err(plan_network(&create("b", &["10.92.0.0/31"]), &nets)).contains("too small"));
    assert!(err(plan_network(&create("-x", &["10.92.0.0/24"]), &nets))
        .starts_with("invalid network name"));
    let mut req = create("b", &["10.92.0.0/24"]);
    req.gateways = vec!["10.93.0.1".into()];
    assert!(err(plan_network(&req, &nets)).starts_with("gateway 10.93.0.1 is not a host address"));
    req.gateways.clear();
    req.mtu = Some(10);
    assert!(err(plan_network(&req, &nets)).starts_with("invalid MTU 10"));
    req.mtu = None;
    req.vlan = Some(4095);
    assert!(err(plan_network(&req, &nets)).starts_with("invalid VLAN ID 4095"));
}

fn app_with_endpoint() -> BTreeMap<String, NetworkRecord> {
    let mut app = plan_network(&create("app", &["10.90.0.0/24"]), &BTreeMap::new()).unwrap();
    let nets = with(&[app.clone()]);
    let req = ConnectRequest {
        netns: "web".into(),
        ..Default::default()
    };
    let web = plan_endpoint(&req, &"web".parse().unwrap(), &app, &state(&nets)).unwrap();
    app.endpoints.insert(web.name.clone(), web);
    with(&[app])
}

#[test]
fn endpoints_get_the_next_free_address_and_a_stable_mac() {
    let nets = app_with_endpoint();
    let app = &nets["app"];
    let web = &app.endpoints["web"];
    assert_eq!(web.addresses[0].to_string(), "10.90.0.2/24");
    assert_eq!(web.ifname, "eth0");
    assert_eq!(web.mac, MacAddr::local_from_seed(b"app/web"));
    let req = ConnectRequest {
        netns: "db".into(),
        ..Default::default()
    };
    let db = plan_endpoint(&req, &"db".parse().unwrap(), app, &state(&nets)).unwrap();
    assert_eq!(db.addresses[0].to_string(), "10.90.0.3/24");
}

#[test]
fn bad_endpoints_are_refused_by_name() {
    let nets = app_with_endpoint();
    let app = &nets["app"];
    let try_connect = |netns: &str, f: &dyn Fn(&mut ConnectRequest)| {
        let mut req = ConnectRequest {
            netns: netns.into(),
            ..Default::default()
        };
        f(&mut req);
        err(plan_endpoint(
            &req,
            &netns.parse().unwrap(),
            app,
            &state(&nets),
        ))
    };
    assert_eq!(
        try_connect("db", &|r| r.ips = vec!["10.90.0.2".into()]),
        "address 10.90.0.2 is already in use by endpoint web on network app"
    );
    assert_eq!(
        try_connect("db", &|r| r.ips = vec!["10.90.0.1".into()]),
        "address 10.90.0.1 is already in use by endpoint gateway on network app"
    );
    assert_eq!(
        try_connect("db", &|r| r.ips = vec!["10.1.2.3".into()]),
        "address 10.1.2.3 is outside the subnets of network app (10.90.0.0/24)"
    );
    assert!(
        try_connect("db", &|r| r.mac = Some("02:00:00:00:00".into()))
            .starts_with("invalid MAC address")
    );
    assert!(try_connect("db", &|r| r.mac = Some("01:00:5e:00:00:01".into())).contains("unicast"));
    assert_eq!(
        try_connect("db", &|r| r.name = Some("web".into())),
        "endpoint web already exists on network app"
    );
    assert_eq!(
        try_connect("web", &|_| {}),
        "network namespace web is already connected to network app as web"
    );
    assert!(
        try_connect("db", &|r| r.ifname = Some("a/b".into())).starts_with("invalid interface name")
    );
}

#[test]
fn default_names_follow_the_namespace() {
    let name = |s: &str| default_endpoint_name(&s.parse().unwrap());
    assert_eq!(name("web"), "web");
    assert_eq!(name("pid:42"), "pid-42");
    assert_eq!(name("/proc/42/ns/net"), "pid-42");
    assert_eq!(name("/run/netns/db"), "db");
}

#[test]
fn trunks_need_tagged_networks_and_unique_names() {
    let mut nets = app_with_endpoint();
    let red = plan_network(
        &NetworkCreate {
            vlan: Some(10),
            ..create("red", &["10.91.0.0/24"])
        },
        &nets,
    )
    .unwrap();
    nets.insert("red".into(), red);
    let mut st = state(&nets);
    let ns: tap::NetnsRef = "t".parse().unwrap();
    let req = |networks: &[&str], native: Option<&str>| TrunkCreate {
        netns: "t".into(),
        networks: networks.iter().map(|s| s.to_string()).collect(),
        native: native.map(String::from),
        ..Default::default()
    };
    let trunk = plan_trunk(&req(&["red"], Some("app")), &ns, &st).unwrap();
    assert_eq!(
        (trunk.name.as_str(), trunk.ifname.as_str()),
        ("t", "trunk0")
    );
    assert_eq!(
        err(plan_trunk(&req(&["app"], None), &ns, &st)),
        "network app has no VLAN ID: create it with --vlan to carry it tagged on a trunk"
    );
    assert_eq!(
        err(plan_trunk(&req(&["nope"], None), &ns, &st)),
        "network nope not found"
    );
    assert!(err(plan_trunk(&req(&[], None), &ns, &st))
        .starts_with("a trunk needs at least one network"));
    assert!(err(plan_trunk(&req(&["red"], Some("red")), &ns, &st)).contains("named twice"));
    st.trunks.insert(trunk.name.clone(), trunk);
    assert_eq!(
        err(plan_trunk(&req(&["red"], None), &ns, &st)),
        "trunk t already exists"
    );
}

#[test]
fn the_gateways_identity_and_other_endpoints_names_are_reserved() {
    let mut nets = app_with_endpoint();
    nets.get_mut("app")
        .unwrap()
        .endpoints
        .get_mut("web")
        .unwrap()
        .aliases = vec!["www".into()];
    let app = &nets["app"];
    let plan = |netns: &str, f: &dyn Fn(&mut ConnectRequest)| {
        let mut req = ConnectRequest {
            netns: netns.into(),
            ..Default::default()
        };
        f(&mut req);
        plan_endpoint(&req, &netns.parse().unwrap(), app, &state(&nets))
    };
    let gateway = gateway_mac("app").to_string();
    assert_eq!(
        err(plan("db", &|r| r.mac = Some(gateway.clone()))),
        format!("MAC address {gateway} is the gateway's of network app")
    );
    let by_name: &dyn Fn(&mut ConnectRequest) = &|r| r.name = Some("gateway".into());
    let by_alias: &dyn Fn(&mut ConnectRequest) = &|r| r.aliases = vec!["gateway".into()];
    for taken in [by_name, by_alias] {
        assert_eq!(
            err(plan("db", taken)),
            "name \"gateway\" is taken by the gateway on network app"
        );
    }
    assert_eq!(
        err(plan("db", &|r| r.aliases = vec!["web".into()])),
        "name \"web\" is taken by endpoint web on network app"
    );
    assert_eq!(
        err(plan("db", &|r| r.name = Some("www".into()))),
        "name \"www\" is taken by an alias of endpoint web on network app"
    );
    // Aliases may be shared on purpose, as Docker's are.
    let db = plan("db", &|r| r.aliases = vec!["www".into()]).unwrap();
    assert_eq!(db.aliases, vec!["www".to_string()]);
}

#[test]
fn every_list_and_number_has_an_upper_bound() {
    let nets = BTreeMap::new();
    let many = |n: usize, f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<Vec<_>>();
    let refused = |f: &dyn Fn(&mut NetworkCreate)| {
        let mut req = create("big", &["10.95.0.0/24"]);
        f(&mut req);
        err(plan_network(&req, &nets))
    };
    assert_eq!(
        refused(&|r| r.dns = many(120_000, &|i| format!("10.0.{}.{}", i / 250 % 250, i % 250))),
        "too many DNS servers: 120000 given, at most 8"
    );
    assert_eq!(
        refused(&|r| r.storm_pps = Some(u64::MAX)),
        format!(
            "invalid storm control rate (packets/s) {}: at most 10000000",
            u64::MAX
        )
    );
    assert!(refused(&|r| r.max_flows = Some(usize::MAX)).starts_with("invalid flow table size"));
    assert!(
        refused(&|r| r.ip_ranges = many(65, &|_| "10.95.0.0/25".into()))
            .starts_with("too many IP ranges: 65 given")
    );
    let rules = |n: usize| policy::NetworkPolicy {
        default: policy::DefaultAction::Deny,
        rules: (0..n)
            .map(|i| {
                toml::from_str(&format!(
                    "name = \"r{i}\"\naction = \"allow\"\ndirection = \"to\"\nselect = \"*\""
                ))
                .unwrap()
            })
            .collect(),
    };
    assert!(refused(&|r| r.policy = Some(rules(65_537)))
        .starts_with("too many policy rules: 65537 given, at most 65536"));
    let limit = policy::RateLimit {
        bits_per_sec: Some(u64::MAX),
        ..Default::default()
    };
    assert!(err(check_rate_limit(Some(limit))).starts_with("invalid rate limit bits_per_sec"));
    // At the bounds, all is well.
    let mut req = create("big", &["10.95.0.0/24"]);
    req.dns = many(8, &|i| format!("10.0.0.{}", i + 1));
    req.storm_pps = Some(10_000_000);
    assert!(plan_network(&req, &nets).is_ok());

    let nets = app_with_endpoint();
    let app = &nets["app"];
    let connect = |f: &dyn Fn(&mut ConnectRequest)| {
        let mut req = ConnectRequest {
            netns: "db".into(),
            ..Default::default()
        };
        f(&mut req);
        err(plan_endpoint(
            &req,
            &"db".parse().unwrap(),
            app,
            &state(&nets),
        ))
    };
    assert!(connect(&|r| r.aliases = many(33, &|i| format!("a{i}")))
        .starts_with("too many aliases: 33 given, at most 32"));
    assert!(connect(&|r| r.labels = many(65, &|i| format!("k{i}=v")))
        .starts_with("too many labels: 65 given, at most 64"));
}

#[test]
fn ip6_names_the_ipv6_address_as_docker_does() {
    let dual = plan_network(
        &create("dual", &["10.90.0.0/24", "fd00:90::/64"]),
        &BTreeMap::new(),
    )
    .unwrap();
    let nets = with(&[dual]);
    let req = ConnectRequest {
        netns: "web".into(),
        ips: vec!["10.90.0.7".into()],
        ip6: Some("fd00:90::7".into()),
        ..Default::default()
    };
    let web = plan_endpoint(&req, &"web".parse().unwrap(), &nets["dual"], &state(&nets)).unwrap();
    let addresses: Vec<String> = web.addresses.iter().map(|a| a.addr().to_string()).collect();
    assert_eq!(addresses, ["10.90.0.7", "fd00:90::7"]);
    let req = ConnectRequest {
        netns: "db".into(),
        ip6: Some("10.90.0.8".into()),
        ..Default::default()
    };
    let refused = err(plan_endpoint(
        &req,
        &"db".parse().unwrap(),
        &nets["dual"],
        &state(&nets),
    ));
    assert_eq!(refused, "--ip6 \"10.90.0.8\": not an IPv6 address");
}

#[test]
fn network_filters_match_as_dockers_do() {
    let create = |name: &str, labels: &[&str]| {
        plan_network(
            &NetworkCreate {
                name: name.into(),
                subnets: vec!["10.9.0.0/24".into()],
                labels: labels.iter().map(|l| l.to_string()).collect(),
                ..Default::default()
            },
            &Default::default(),
        )
        .unwrap()
    };
    let front = create("shop-front", &["tier=web", "team=a"]);
    let back = create("shop-back", &["tier=db"]);
    let filters = |texts: &[&str]| -> Vec<NetworkFilter> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    };
    assert!(front.passes(&[]));
    assert!(front.passes(&filters(&["name=front"])) && !back.passes(&filters(&["name=front"])));
    // The same key twice: either; different keys: all.
    let either = filters(&["label=tier=web", "label=tier=db"]);
    assert!(front.passes(&either) && back.passes(&either));
    let both = filters(&["name=shop", "label=team"]);
    assert!(front.passes(&both) && !back.passes(&both));
    assert!("colour=red".parse::<NetworkFilter>().is_err());
    assert!(
        front.passes(&filters(&["driver=bridge"])) && !front.passes(&filters(&["driver=overlay"]))
    );
    // Network labels are checked as endpoint labels are.
    let bad = plan_network(
        &NetworkCreate {
            name: "x".into(),
            labels: vec!["novalue".into()],
            ..Default::default()
        },
        &Default::default(),
    );
    assert!(bad.is_err());
}

#[test]
fn drivers_other_than_bridge_and_overlay_are_refused_by_name() {
    let with = |driver: &str| {
        plan_network(
            &NetworkCreate {
                name: "x".into(),
                driver: Some(driver.into()),
                ..Default::default()
            },
            &Default::default(),
        )
    };
    assert!(with("bridge").is_ok());
    let overlay = with("overlay").unwrap();
    assert_eq!((overlay.driver(), overlay.mtu), ("overlay", 1450));
    assert!(with("macvlan").unwrap_err().to_string().contains("macvlan"));
}
