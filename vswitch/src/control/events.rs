//! The daemon's events (`vswitch events`): each change the control plane makes is kept (the
//! last `KEPT`, for readers asking for the past) and sent to every reader subscribed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::broadcast;

use super::Control;
use crate::model::events::{Actor, Event};

/// How many past events are kept for `--since`.
const KEPT: usize = 1024;

/// Where events go: the kept past and the live readers.
pub(super) struct EventBus {
    past: Mutex<VecDeque<Event>>,
    live: broadcast::Sender<Event>,
    /// Set when the daemon stops: readers' streams end, so shutting down does not wait.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// A reader's events: the kept past, those to come, and whether the daemon is stopping.
pub struct EventSubscription {
    pub past: Vec<Event>,
    pub live: broadcast::Receiver<Event>,
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl EventBus {
    pub(super) fn new() -> EventBus {
        EventBus {
            past: Mutex::new(VecDeque::with_capacity(KEPT)),
            live: broadcast::channel(KEPT).0,
            stopping: tokio::sync::watch::channel(false).0,
        }
    }

    fn emit(&self, event: Event) {
        let mut past = self.past.lock().unwrap_or_else(|e| e.into_inner());
        if past.len() == KEPT {
            past.pop_front();
        }
        past.push_back(event.clone());
        // Sent under the lock: a reader subscribing gets each event once, kept or live.
        let _ = self.live.send(event);
    }
}

impl Control {
    /// Records that `kind` `action` happened to `id`, named by `attributes`.
    pub(super) fn emit(&self, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.events.emit(Event {
            kind: kind.into(),
            action: action.into(),
            actor: Actor {
                id: id.into(),
                attributes: attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            },
            time: now.as_secs(),
            time_nano: now.as_nanos() as u64,
        });
    }

    /// The kept events from `since` (seconds since the epoch), and a subscription to those to
    /// come; none is in both.
    pub fn subscribe_events(&self, since: Option<u64>) -> EventSubscription {
        let past = self.events.past.lock().unwrap_or_else(|e| e.into_inner());
        EventSubscription {
            past: match since {
                Some(since) => past.iter().filter(|e| e.time >= since).cloned().collect(),
                None => Vec::new(),
            },
            live: self.events.live.subscribe(),
            stopping: self.events.stopping.subscribe(),
        }
    }

    /// Ends every reader's stream of events (the daemon is stopping).
    pub fn stop_events(&self) {
        self.events.stopping.send_replace(true);
    }
}
