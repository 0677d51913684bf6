use super::*;

fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
    let vars: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Env::read(|name| vars.get(name).cloned())
}

fn add_env() -> Env {
    env(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "0123456789abcdef0123"),
        ("CNI_NETNS", "/run/netns/cni-1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=web;IP=10.88.0.9;MAC=02:00:00:00:00:09"),
    ])
    .unwrap()
}

#[test]
fn missing_or_unknown_environment_is_refused_with_code_4() {
    let err = env(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "x"),
        ("CNI_IFNAME", "eth0"),
    ])
    .unwrap_err();
    assert_eq!(err.code, code::INVALID_ENVIRONMENT);
    assert!(err.msg.contains("CNI_NETNS"), "{}", err.msg);
    assert_eq!(env(&[]).unwrap_err().code, code::INVALID_ENVIRONMENT);
    assert_eq!(
        env(&[("CNI_COMMAND", "FROB")]).unwrap_err().code,
        code::INVALID_ENVIRONMENT
    );
    // DEL may come without a namespace (the container is gone).
    let del = env(&[
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "x"),
        ("CNI_IFNAME", "eth0"),
    ]);
    assert!(del.is_ok());
    let bad = env(&[("CNI_COMMAND", "VERSION"), ("CNI_ARGS", "novalue")]).unwrap_err();
    assert_eq!(bad.code, code::INVALID_ENVIRONMENT);
}

#[test]
fn add_asks_for_the_runtimes_name_address_mac_aliases_and_ports() {
    let conf: NetConf = serde_json::from_str(
        r#"{"cniVersion":"1.0.0","name":"app","type":"vswitch-cni",
            "runtimeConfig":{"aliases":{"app":["web","www"]},
              "portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":""}]}}"#,
    )
    .unwrap();
    let req = connect_request(&conf, &add_env()).unwrap();
    assert_eq!(req.name.as_deref(), Some("web"));
    assert_eq!(req.ips, ["10.88.0.9"]);
    assert_eq!(req.mac.as_deref(), Some("02:00:00:00:00:09"));
    assert_eq!(req.aliases, ["www"]);
    assert_eq!(req.publish, ["8080:80/tcp"]);
    assert_eq!(req.ifname.as_deref(), Some("eth0"));
    assert_eq!(req.cni_container.as_deref(), Some("0123456789abcdef0123"));
    assert_eq!(conf.network(), "app");
}

#[test]
fn a_container_without_a_usable_name_goes_by_its_id() {
    let mut env = add_env();
    env.args.insert("K8S_POD_NAME".into(), "not a name!".into());
    assert_eq!(endpoint_name(&env), "0123456789ab");
}

fn endpoint_and_network() -> (EndpointRecord, NetworkRecord) {
    let network = crate::model::plan_network(
        &crate::model::NetworkCreate {
            name: "app".into(),
            subnets: vec!["10.88.0.0/24".into()],
            ..Default::default()
        },
        &Default::default(),
    )
    .unwrap();
    let req = connect_request(&NetConf::default(), &add_env()).unwrap();
    let netns: tap::NetnsRef = req.netns.parse().unwrap();
    let endpoint =
        crate::model::plan_endpoint(&req, &netns, &network, &Default::default()).unwrap();
    (endpoint, network)
}

#[test]
fn results_carry_interface_address_gateway_route_and_dns_in_the_asked_version() {
    let (endpoint, network) = endpoint_and_network();
    let conf = NetConf {
        cni_version: "1.0.0".into(),
        ..Default::default()
    };
    let result = result(&conf, &endpoint, &network);
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:00:00:09");
    assert_eq!(result["interfaces"][0]["sandbox"], "/run/netns/cni-1");
    assert_eq!(result["ips"][0]["address"], "10.88.0.9/24");
    assert_eq!(result["ips"][0]["gateway"], "10.88.0.1");
    assert!(result["ips"][0].get("version").is_none());
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(result["dns"]["nameservers"][0], "10.88.0.1");
    // 0.4.0 results name each address's version.
    let old = NetConf {
        cni_version: "0.4.0".into(),
        ..Default::default()
    };
    assert_eq!(
        super::result(&old, &endpoint, &network)["ips"][0]["version"],
        "4"
    );
}

#[test]
fn check_finds_drift_from_what_add_gave() {
    let (endpoint, network) = endpoint_and_network();
    let conf = NetConf {
        cni_version: "1.0.0".into(),
        ..Default::default()
    };
    let prev = result(&conf, &endpoint, &network);
    assert_eq!(drift(&prev, &endpoint), None);
    let mut moved = endpoint.clone();
    moved.addresses = vec!["10.88.0.10/24".parse().unwrap()];
    assert!(drift(&prev, &moved).unwrap().contains("10.88.0.10/24"));
    let mut remade = endpoint;
    remade.mac = vswitch_core::frame::MacAddr([2, 0, 0, 0, 0, 10]);
    assert!(drift(&prev, &remade).unwrap().contains("MAC"));
}
