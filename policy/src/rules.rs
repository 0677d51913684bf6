//! The rule model: what an operator writes (TOML, CLI, API) and its validation. A rule set is
//! checked as a whole before it replaces anything, and every refusal names the rule and field.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Name under which the network default is counted and reported; no rule may take it.
pub const DEFAULT_RULE: &str = "default";

/// What a matching rule does with a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Let it through (and its replies, by connection tracking).
    Allow,
    /// Drop it silently: the client times out.
    Deny,
    /// Drop it and answer with a TCP reset or ICMP port unreachable: the client fails at once.
    Reject,
}

/// What a network does with traffic no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    /// Docker's default: containers of a network reach each other.
    #[default]
    Allow,
    /// Docker's `icc=false`, Kubernetes' default deny.
    Deny,
}

/// Which side of a packet the rule's selector names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Traffic to the selected endpoints, from the peer.
    To,
    /// Traffic from the selected endpoints, to the peer.
    From,
}

/// Transport protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Any IP packet.
    #[default]
    Any,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (IPv4).
    Icmp,
    /// ICMPv6.
    Icmpv6,
}

/// The names rules are written with (as in TOML and on the command line).
macro_rules! keywords {
    ($($ty:ident $noun:literal { $($variant:ident => $name:literal),* })*) => {$(
        impl $ty {
            /// The keyword this value is written as.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($name => Ok($ty::$variant),)*
                    _ => Err(format!(
                        "unknown {} {text:?}: use {}",
                        $noun,
                        [$($name),*].join(", ")
                    )),
                }
            }
        }
    )*};
}

keywords! {
    RuleAction "action" { Allow => "allow", Deny => "deny", Reject => "reject" }
    DefaultAction "default action" { Allow => "allow", Deny => "deny" }
    Direction "direction" { To => "to", From => "from" }
    Protocol "protocol" { Any => "any", Tcp => "tcp", Udp => "udp", Icmp => "icmp", Icmpv6 => "icmpv6" }
}

impl Protocol {
    /// The IP protocol number, `None` for `Any`.
    pub fn number(self) -> Option<u8> {
        match self {
            Protocol::Any => None,
            Protocol::Tcp => Some(6),
            Protocol::Udp => Some(17),
            Protocol::Icmp => Some(1),
            Protocol::Icmpv6 => Some(58),
        }
    }

    fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }

    fn is_icmp(self) -> bool {
        matches!(self, Protocol::Icmp | Protocol::Icmpv6)
    }
}

/// One rule as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the network; names the rule in drops, captures and traces.
    pub name: String,
    /// allow, deny or reject.
    pub action: RuleAction,
    /// Whether `select` names the receivers (`to`) or the senders (`from`).
    pub direction: Direction,
    /// The endpoints the rule is about: `*`, or `key=value` labels joined by commas, where the
    /// key `name` is the endpoint's name.
    pub select: String,
    /// The other side: `any`, a CIDR (or one address), or a selector as in `select`.
    #[serde(default = "any")]
    pub peer: String,
    /// Transport protocol.
    #[serde(default)]
    pub proto: Protocol,
    /// Destination port or range (`5432`, `8000-8100`), TCP and UDP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    /// ICMP or ICMPv6 type, ICMP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// Count and report what the rule would do, never act on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staged: bool,
}

fn any() -> String {
    "any".to_string()
}

/// A network's policy: ordered rules (first match wins) and a default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    /// What happens to traffic no rule matches.
    #[serde(default)]
    pub default: DefaultAction,
    /// Ordered rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl NetworkPolicy {
    /// Whether this policy lets everything through (nothing to compile or track).
    pub fn is_open(&self) -> bool {
        self.default == DefaultAction::Allow && self.rules.is_empty()
    }

    /// Checks every rule; the first problem is named by rule and field.
    pub fn validate(&self) -> Result<(), RuleError> {
        self.parse_rules().map(|_| ())
    }

    /// Every rule parsed, in order, once their names are known to be unique.
    pub fn parse_rules(&self) -> Result<Vec<ParsedRule>, RuleError> {
        let mut names = std::collections::HashSet::new();
        let mut parsed = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            parsed.push(rule.parse()?);
            if !names.insert(rule.name.as_str()) {
                return Err(RuleError::new(
                    &rule.name,
                    "name",
                    "is used by another rule",
                ));
            }
        }
        Ok(parsed)
    }
}

/// A rule that cannot be used, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule:?}: field `{field}` {problem}")]
pub struct RuleError {
    /// The rule's name.
    pub rule: String,
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl RuleError {
    fn new(rule: &str, field: &'static str, problem: impl Into<String>) -> RuleError {
        RuleError {
            rule: rule.to_string(),
            field,
            problem: problem.into(),
        }
    }
}

/// Endpoints chosen by name or labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every endpoint of the network.
    All,
    /// Endpoints carrying every one of these labels (`name` is the endpoint name).
    Labels(BTreeMap<String, String>),
}

/// The label key that names an endpoint itself.
pub const NAME_KEY: &str = "name";

impl Selector {
    /// Whether an endpoint with this name and these labels is selected.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::All => true,
            Selector::Labels(wanted) => wanted.iter().all(|(k, v)| {
                if k == NAME_KEY {
                    v == name
                } else {
                    labels.get(k) == Some(v)
                }
            }),
        }
    }
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> Result<Selector, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(Selector::All);
        }
        let mut labels = BTreeMap::new();
        for part in s.split(',') {
            let (k, v) = parse_label(part)?;
            labels.insert(k, v);
        }
        Ok(Selector::Labels(labels))
    }
}

/// Parses `key=value`, as `--label` takes it.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .trim()
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not key=value"))?;
    let valid = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    if !valid(k) || !valid(v) {
        return Err(format!(
            "{s:?}: keys and values are letters, digits, '-', '_', '.', '/'"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// The other side of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Anyone.
    Any,
    /// Addresses in this network prefix.
    Cidr(IpNet),
    /// Endpoints of the network.
    Endpoints(Selector),
}

impl Peer {
    /// Whether address `ip` (held by the endpoint `who`, if any) is this peer.
    pub fn matches(&self, ip: IpAddr, who: Option<(&str, &BTreeMap<String, String>)>) -> bool {
        match self {
            Peer::Any => true,
            Peer::Cidr(net) => net.contains(&ip),
            Peer::Endpoints(sel) => who.is_some_and(|(name, labels)| sel.matches(name, labels)),
        }
    }
}

impl FromStr for Peer {
    type Err = String;

    fn from_str(s: &str) -> Result<Peer, String> {
        let s = s.trim();
        if s == "any" {
            return Ok(Peer::Any);
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Peer::Cidr(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Peer::Cidr(IpNet::from(ip)));
        }
        if s.contains('/') || s.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(format!("{s:?} is not a CIDR"));
        }
        Ok(Peer::Endpoints(s.parse()?))
    }
}

/// An inclusive destination port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port (0-65535)"))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(format!("{s:?}: range ends before it starts"));
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A rule with its text fields parsed: what the matcher works from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRule {
    /// As written.
    pub action: RuleAction,
    /// As written.
    pub direction: Direction,
    /// Parsed `select`.
    pub select: Selector,
    /// Parsed `peer`.
    pub peer: Peer,
    /// As written.
    pub proto: Protocol,
    /// Parsed `ports`.
    pub ports: Option<PortRange>,
    /// As written.
    pub icmp_type: Option<u8>,
    /// As written.
    pub staged: bool,
}

impl Rule {
    /// Parses and checks the rule's fields.
    pub fn parse(&self) -> Result<ParsedRule, RuleError> {
        let err = |field, problem: String| RuleError::new(&self.name, field, problem);
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(
                "name",
                "must be letters, digits, '-', '_' or '.'".into(),
            ));
        }
        if self.name == DEFAULT_RULE {
            return Err(err(
                "name",
                "is reserved: it counts what the network default decides".into(),
            ));
        }
        let select = self.select.parse().map_err(|e| err("select", e))?;
        let peer = self.peer.parse().map_err(|e| err("peer", e))?;
        let ports = match &self.ports {
            None => None,
            Some(_) if !self.proto.has_ports() => {
                return Err(err("ports", "needs proto tcp or udp".into()))
            }
            Some(p) => Some(p.parse().map_err(|e| err("ports", e))?),
        };
        if self.icmp_type.is_some() && !self.proto.is_icmp() {
            return Err(err("icmp_type", "needs proto icmp or icmpv6".into()));
        }
        Ok(ParsedRule {
            action: self.action,
            direction: self.direction,
            select,
            peer,
            proto: self.proto,
            ports,
            icmp_type: self.icmp_type,
            staged: self.staged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule {
            name: "web-db".into(),
            action: RuleAction::Allow,
            direction: Direction::To,
            select: "app=db".into(),
            peer: "app=web".into(),
            proto: Protocol::Tcp,
            ports: Some("5432".into()),
            icmp_type: None,
            staged: false,
        }
    }

    #[test]
    fn parses_selectors_peers_and_ports() {
        let parsed = rule().parse().unwrap();
        assert_eq!(
            parsed.ports,
            Some(PortRange {
                first: 5432,
                last: 5432
            })
        );
        assert_eq!("*".parse::<Selector>(), Ok(Selector::All));
        assert!(matches!("10.0.0.0/8".parse::<Peer>(), Ok(Peer::Cidr(_))));
        assert!(matches!("10.1.2.3".parse::<Peer>(), Ok(Peer::Cidr(_))));
        assert!(matches!("fd00::/64".parse::<Peer>(), Ok(Peer::Cidr(_))));
        assert!(matches!("name=web".parse::<Peer>(), Ok(Peer::Endpoints(_))));
        assert_eq!(
            "8000-8100".parse::<PortRange>(),
            Ok(PortRange {
                first: 8000,
                last: 8100
            })
        );
    }

    #[test]
    fn errors_name_the_field() {
        type Spoil = fn(&mut Rule);
        let cases: [(Spoil, &str); 7] = [
            (|r| r.select = "app".into(), "select"),
            (|r| r.peer = "10.0.0.0/33".into(), "peer"),
            (|r| r.ports = Some("70000".into()), "ports"),
            (|r| r.ports = Some("9-1".into()), "ports"),
            (|r| r.icmp_type = Some(8), "icmp_type"),
            (|r| r.name = "no spaces".into(), "name"),
            (|r| r.name = "default".into(), "name"),
        ];
        for (spoil, field) in cases {
            let mut r = rule();
            spoil(&mut r);
            assert_eq!(r.parse().unwrap_err().field, field, "{r:?}");
        }
        let mut udp = rule();
        udp.proto = Protocol::Icmp;
        assert_eq!(udp.parse().unwrap_err().field, "ports");
        let twice = NetworkPolicy {
            default: DefaultAction::Deny,
            rules: vec![rule(), rule()],
        };
        let e = twice.validate().unwrap_err();
        assert_eq!(e.field, "name");
        assert!(e.to_string().contains("web-db"), "{e}");
    }

    #[test]
    fn name_key_selects_the_endpoint_name() {
        let sel: Selector = "name=web".parse().unwrap();
        assert!(sel.matches("web", &BTreeMap::new()));
        assert!(!sel.matches("db", &BTreeMap::new()));
        let sel: Selector = "app=web,tier=front".parse().unwrap();
        let labels: BTreeMap<_, _> = [("app", "web"), ("tier", "front")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        assert!(sel.matches("x", &labels));
        assert!(!sel.matches("x", &BTreeMap::from([("app".into(), "web".into())])));
    }

    #[test]
    fn toml_round_trip() {
        let text = r#"
            default = "deny"
            [[rules]]
            name = "web-db"
            action = "allow"
            direction = "to"
            select = "app=db"
            peer = "app=web"
            proto = "tcp"
            ports = "5432"
        "#;
        let policy: NetworkPolicy = toml::from_str(text).unwrap();
        assert_eq!(policy.rules, vec![rule()]);
        assert_eq!(policy.default, DefaultAction::Deny);
        let bad = text.replace("proto", "protocol");
        assert!(toml::from_str::<NetworkPolicy>(&bad).is_err());
    }
}
