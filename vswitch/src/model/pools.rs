//! Default address pools: where a network created without `--subnet` gets its subnet, as
//! Docker's `default-address-pools` (`--default-address-pool base=10.89.0.0/16,size=24`).
//! Pools are tried in order; the first free subnet of the family asked for is taken.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::error::ModelError;

/// One pool: subnets of prefix length `size` carved from `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPool {
    /// The range networks' subnets are taken from.
    pub base: IpNet,
    /// The prefix length of each subnet.
    pub size: u8,
}

impl AddressPool {
    /// Checks that `size` fits `base`'s family and is no wider than `base`.
    pub fn new(base: IpNet, size: u8) -> Result<AddressPool, String> {
        let max = base.max_prefix_len();
        if size < base.prefix_len() || size > max.saturating_sub(2) {
            return Err(format!(
                "address pool {base}: size {size} must be between {} and {}",
                base.prefix_len(),
                max.saturating_sub(2)
            ));
        }
        if base.trunc() != base {
            return Err(format!(
                "address pool {base}: host bits are set (did you mean {}?)",
                base.trunc()
            ));
        }
        Ok(AddressPool { base, size })
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "base={},size={}", self.base, self.size)
    }
}

impl FromStr for AddressPool {
    type Err = String;

    /// `base=10.89.0.0/16,size=24`, as dockerd's flag.
    fn from_str(text: &str) -> Result<AddressPool, String> {
        let mut base = None;
        let mut size = None;
        for pair in text.split(',') {
            match pair.split_once('=') {
                Some(("base", value)) => {
                    base = Some(value.parse::<IpNet>().map_err(|_| {
                        format!("address pool {text:?}: base {value:?} is not a CIDR")
                    })?)
                }
                Some(("size", value)) => {
                    size = Some(value.parse::<u8>().map_err(|_| {
                        format!("address pool {text:?}: size {value:?} is not a prefix length")
                    })?)
                }
                _ => {
                    return Err(format!(
                        "address pool {text:?}: expected base=CIDR,size=PREFIX_LENGTH"
                    ))
                }
            }
        }
        match (base, size) {
            (Some(base), Some(size)) => AddressPool::new(base, size),
            _ => Err(format!(
                "address pool {text:?}: expected base=CIDR,size=PREFIX_LENGTH"
            )),
        }
    }
}

/// The pools used when none are configured: a /24 of 10.89.0.0/16 (as Podman), a /64 of
/// fd00:89::/48.
pub fn default_pools() -> Vec<AddressPool> {
    vec![
        AddressPool {
            base: "10.89.0.0/16".parse().expect("constant CIDR"),
            size: 24,
        },
        AddressPool {
            base: "fd00:89::/48".parse().expect("constant CIDR"),
            size: 64,
        },
    ]
}

/// The first subnet of the pools of `ipv6`'s family that overlaps none of `taken`.
pub fn free_subnet(
    pools: &[AddressPool],
    ipv6: bool,
    taken: &[&IpNet],
) -> Result<IpNet, ModelError> {
    let family: Vec<&AddressPool> = pools
        .iter()
        .filter(|p| p.base.addr().is_ipv6() == ipv6)
        .collect();
    let free = family.iter().find_map(|pool| {
        pool.base.subnets(pool.size).ok()?.find(|candidate| {
            taken
                .iter()
                .all(|other| !super::ipam::overlaps(candidate, other))
        })
    });
    free.ok_or_else(|| {
        let listed: Vec<String> = family.iter().map(|p| p.to_string()).collect();
        ModelError::PoolsExhausted(if listed.is_empty() {
            format!("none is {}", if ipv6 { "IPv6" } else { "IPv4" })
        } else {
            listed.join(" ")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_parse_as_dockerd_takes_them_and_bad_ones_are_named() {
        let pool: AddressPool = "base=172.80.0.0/16,size=24".parse().unwrap();
        assert_eq!(pool.to_string(), "base=172.80.0.0/16,size=24");
        for (bad, said) in [
            ("base=172.80.0.0/16", "expected base=CIDR"),
            (
                "base=172.80.0.0/16,size=8",
                "size 8 must be between 16 and 30",
            ),
            ("base=172.80.1.0/16,size=24", "did you mean 172.80.0.0/16"),
            ("base=nope,size=24", "is not a CIDR"),
        ] {
            let error = bad.parse::<AddressPool>().unwrap_err();
            assert!(error.contains(said), "{bad}: {error}");
        }
    }

    #[test]
    fn subnets_come_from_the_pools_in_order_skipping_taken_ones() {
        let pools = vec![
            "base=10.1.0.0/23,size=24".parse().unwrap(),
            "base=10.2.0.0/16,size=26".parse().unwrap(),
        ];
        let a: IpNet = "10.1.0.0/24".parse().unwrap();
        let b: IpNet = "10.1.1.0/25".parse().unwrap();
        assert_eq!(free_subnet(&pools, false, &[]).unwrap(), a);
        assert_eq!(
            free_subnet(&pools, false, &[&a, &b]).unwrap().to_string(),
            "10.2.0.0/26"
        );
        let error = free_subnet(&pools, true, &[]).unwrap_err().to_string();
        assert!(error.contains("none is IPv6"), "{error}");
    }
}
