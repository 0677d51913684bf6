//! Names: those of networks and endpoints (Docker's rule), and the ones an endpoint may take on
//! its network: its own name and aliases (DNS names the gateway answers), none taken by the
//! gateway or another endpoint; and a runtime's names for an endpoint it attached (Docker's
//! container name, learnt after the fact).

use super::error::{invalid, ModelError};
use super::limits::{check_count, MAX_ALIASES};
use super::records::{EndpointRecord, NetworkRecord, GATEWAY_NAME};

/// Checks a name of a network or endpoint: Docker's rule, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn check_name(kind: &str, name: &str) -> Result<(), ModelError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && name.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid {kind} name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit (at most 64)"
        )))
    }
}

/// The endpoint `current` of `network` under a new name and aliases (a runtime's, learnt after
/// it attached): checked as `connect` checks them, the endpoint's own old names not in the way.
pub fn plan_endpoint_names(
    network: &NetworkRecord,
    current: &str,
    name: &str,
    aliases: &[String],
) -> Result<EndpointRecord, ModelError> {
    let mut others = network.clone();
    let mut endpoint =
        others
            .endpoints
            .remove(current)
            .ok_or_else(|| ModelError::UnknownEndpoint {
                target: current.to_string(),
                network: network.name.clone(),
            })?;
    check_name("endpoint", name)?;
    check_count("aliases", aliases.len(), MAX_ALIASES)?;
    for alias in aliases {
        check_dns_name(alias)?;
    }
    check_names_free(&others, name, aliases)?;
    endpoint.name = name.to_string();
    endpoint.aliases = aliases.to_vec();
    Ok(endpoint)
}

/// The gateway's name, and every endpoint's name, are the network's: a new endpoint may not
/// take them as its name or an alias, nor take another's alias as its name. (Aliases may be
/// shared on purpose, as Docker's network aliases are.)
pub(super) fn check_names_free(
    network: &NetworkRecord,
    name: &str,
    aliases: &[String],
) -> Result<(), ModelError> {
    // Who holds `wanted` already: the gateway, an endpoint by name, or (when it is to be a
    // name) an endpoint by alias.
    let holder = |wanted: &str, as_name: bool| -> Option<String> {
        if wanted == GATEWAY_NAME {
            return Some("the gateway".into());
        }
        network.endpoints.values().find_map(|e| {
            if e.name == wanted {
                Some(format!("endpoint {}", e.name))
            } else if as_name && e.aliases.iter().any(|a| a == wanted) {
                Some(format!("an alias of endpoint {}", e.name))
            } else {
                None
            }
        })
    };
    let wanted = std::iter::once((name, true)).chain(aliases.iter().map(|a| (a.as_str(), false)));
    for (wanted, as_name) in wanted {
        if let Some(holder) = holder(wanted, as_name) {
            return Err(invalid(format!(
                "name {wanted:?} is taken by {holder} on network {}",
                network.name
            )));
        }
    }
    Ok(())
}

/// Checks a DNS alias: dot-separated labels of letters, digits and '-', at most 253 bytes.
pub(super) fn check_dns_name(name: &str) -> Result<(), ModelError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid alias {name:?}: use dot-separated labels of letters, digits, '-' and '_'"
        )))
    }
}
