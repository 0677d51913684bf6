//! Events: what changed in the daemon, as `docker events` reports it — a type (`network`,
//! `policy`, `host`), an action (`create`, `remove`, `connect`, `disconnect`, `change`,
//! `join`, `leave`) and an actor (an ID and attributes naming the network, endpoint or host) —
//! and the filters and time bounds a reader asks for.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What it is about: `network`, `policy` or `host`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What happened to it.
    pub action: String,
    /// Who it happened to.
    pub actor: Actor,
    /// When, in seconds since the Unix epoch.
    pub time: u64,
    /// When, in nanoseconds since the Unix epoch (orders events of one second).
    pub time_nano: u64,
}

/// The subject of an event: an ID (the network's, or the host's name) and what names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Its ID.
    pub id: String,
    /// `name` (the network's), `endpoint`, `driver`, `host`...
    pub attributes: BTreeMap<String, String>,
}

/// What a reader of events asks for: the past from `since`, then what comes, until `until`,
/// only what passes `filters`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsRequest {
    /// Replay the kept events from then (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// End the stream then (seconds since the epoch); in the past: the kept events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// Only events passing these (one key: any; different keys: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<EventFilter>,
}

/// One filter: `type=`, `event=` (the action), `network=`, `endpoint=` or `host=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    pub key: String,
    pub value: String,
}

const FILTER_KEYS: [&str; 5] = ["type", "event", "network", "endpoint", "host"];

impl FromStr for EventFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<EventFilter, String> {
        match text.split_once('=') {
            Some((key, value)) if FILTER_KEYS.contains(&key) && !value.is_empty() => {
                Ok(EventFilter {
                    key: key.to_string(),
                    value: value.to_string(),
                })
            }
            _ => Err(format!(
                "invalid filter {text:?}: expected KEY=VALUE with KEY one of {}",
                FILTER_KEYS.join(", ")
            )),
        }
    }
}

impl Event {
    /// Whether the event passes `filters`: for each key given, one of its values matches.
    pub fn passes(&self, filters: &[EventFilter]) -> bool {
        super::records::filters_pass(
            &FILTER_KEYS,
            filters,
            |f| &f.key,
            |f| self.field(&f.key) == Some(f.value.as_str()),
        )
    }

    fn field(&self, key: &str) -> Option<&str> {
        match key {
            "type" => Some(&self.kind),
            "event" => Some(&self.action),
            other => self.actor.attributes.get(other).map(String::as_str),
        }
    }
}

/// A point in time as `--since`/`--until` take it: seconds since the epoch, or a duration
/// before `now` (`90s`, `10m`, `2h`), as Docker takes them.
pub fn parse_time(text: &str, now: u64) -> Result<u64, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    let ago = [("s", 1u64), ("m", 60), ("h", 3600)]
        .iter()
        .find_map(|(unit, scale)| {
            let n: u64 = text.strip_suffix(unit)?.parse().ok()?;
            n.checked_mul(*scale)
        });
    match ago {
        Some(seconds) => Ok(now.saturating_sub(seconds)),
        None => Err(format!(
            "invalid time {text:?}: seconds since the epoch, or a duration ago such as 90s, 10m, 2h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, action: &str, attributes: &[(&str, &str)]) -> Event {
        Event {
            kind: kind.into(),
            action: action.into(),
            actor: Actor {
                id: "x".into(),
                attributes: attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            time: 0,
            time_nano: 0,
        }
    }

    #[test]
    fn filters_of_one_key_match_any_and_of_different_keys_all() {
        let connect = event(
            "network",
            "connect",
            &[("name", "app"), ("network", "app"), ("endpoint", "web")],
        );
        let f = |texts: &[&str]| -> Vec<EventFilter> {
            texts.iter().map(|t| t.parse().unwrap()).collect()
        };
        assert!(connect.passes(&[]));
        assert!(connect.passes(&f(&["event=create", "event=connect"])));
        assert!(connect.passes(&f(&["network=app", "endpoint=web"])));
        assert!(!connect.passes(&f(&["network=app", "endpoint=db"])));
        assert!(!connect.passes(&f(&["type=policy"])));
        let policy = event("policy", "change", &[("network", "app")]);
        assert!(policy.passes(&f(&["network=app"])));
        assert!("colour=red".parse::<EventFilter>().is_err());
        assert!("type=".parse::<EventFilter>().is_err());
    }

    #[test]
    fn times_are_epoch_seconds_or_durations_ago() {
        assert_eq!(parse_time("1700000000", 5), Ok(1_700_000_000));
        assert_eq!(parse_time("10m", 1000), Ok(400));
        assert_eq!(parse_time("2h", 100), Ok(0));
        assert!(parse_time("soon", 0).is_err());
        assert!(parse_time("5d", 0).is_err());
        assert!(parse_time("5µ", 0).is_err());
        assert!(parse_time("99999999999999999999h", 0).is_err());
    }
}
