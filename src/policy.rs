//! Who the module covers: `[policy]` `exempt_networks` (CIDRs matched
//! against PAM_RHOST), `require_groups` and `exempt_groups`.
//!
//! A login the policy does not cover gets PAM_IGNORE, never PAM_SUCCESS:
//! the rest of the stack decides, so an exemption can only skip this
//! factor, never grant a login.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::system::accounts;

/// `[policy]`'s coverage rules, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessPolicy {
    pub exempt_networks: Vec<IpNet>,
    /// When not empty, only members of one of these groups are covered.
    pub require_groups: Vec<String>,
    /// Members of any of these groups are not covered.
    pub exempt_groups: Vec<String>,
}

/// Whether this login is covered, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    Covered,
    /// Not covered: PAM_IGNORE, with the reason for the log.
    Exempt(String),
}

/// A group lookup failed (NSS): the message says which lookup and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError(pub String);

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LookupError {}

impl From<String> for LookupError {
    fn from(message: String) -> LookupError {
        LookupError(message)
    }
}

impl From<&str> for LookupError {
    fn from(message: &str) -> LookupError {
        LookupError(message.to_string())
    }
}

/// Why `[policy]` cannot be applied to a login; each denies it (a system
/// error), since guessing would silently change who is covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// A group lookup failed.
    Lookup(LookupError),
    /// NSS does not know the user, so its groups cannot be checked.
    UnknownUser(String),
    /// `key` (`require_groups`, `exempt_groups`) names a group that does
    /// not exist.
    NoSuchGroup { key: &'static str, group: String },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Lookup(e) => e.fmt(f),
            PolicyError::UnknownUser(user) => write!(
                f,
                "user {user:?} is unknown to NSS, so [policy] groups cannot be checked"
            ),
            PolicyError::NoSuchGroup { key, group } => write!(
                f,
                "[policy] {key} names group {group:?}, which does not exist: fix gateway.toml"
            ),
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::Lookup(e) => Some(e),
            _ => None,
        }
    }
}

impl From<LookupError> for PolicyError {
    fn from(e: LookupError) -> PolicyError {
        PolicyError::Lookup(e)
    }
}

/// Group lookups (NSS in production, a table in tests).
pub trait Groups {
    /// The gids `user` belongs to (primary and supplementary), or `None`
    /// for a user the system does not know.
    fn user_gids(&self, user: &str) -> Result<Option<Vec<u32>>, LookupError>;
    /// The gid of a group name, or `None` if there is no such group.
    fn group_gid(&self, group: &str) -> Result<Option<u32>, LookupError>;
}

/// Parses one `exempt_networks` entry: a CIDR (`10.0.0.0/8`, `2001:db8::/32`)
/// or a single address. Host bits set after the prefix are an error: they
/// usually mean a typo in the prefix length.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = if text.contains('/') {
        text.parse::<IpNet>()
            .map_err(|_| format!("{text:?} is not a CIDR network (e.g. 192.0.2.0/24)"))?
    } else {
        let ip = text
            .parse::<IpAddr>()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR network"))?;
        IpNet::from(ip)
    };
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has bits set after the /{} prefix; did you mean {}?",
            net.prefix_len(),
            net.trunc()
        ));
    }
    Ok(net)
}

/// A remote host from PAM_RHOST as an address: `[::1]`, a `%zone` suffix
/// and IPv4-mapped IPv6 (`::ffff:192.0.2.7`) are understood. A host name
/// is not an address and matches no network.
pub fn rhost_ip(rhost: &str) -> Option<IpAddr> {
    let host = rhost.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.split('%').next().unwrap_or(host);
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn check_group_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control()) {
        return Err(format!("{name:?} is not a valid group name"));
    }
    Ok(name.to_string())
}

impl AccessPolicy {
    /// Validates the three lists; the error names the key.
    pub fn from_lists<E>(
        exempt_networks: Option<&[String]>,
        require_groups: Option<&[String]>,
        exempt_groups: Option<&[String]>,
        err: &dyn Fn(&str, String) -> E,
    ) -> Result<AccessPolicy, E> {
        let exempt_networks = exempt_networks
            .unwrap_or_default()
            .iter()
            .map(|n| parse_network(n).map_err(|m| err("exempt_networks", m)))
            .collect::<Result<Vec<_>, E>>()?;
        let groups = |key: &str, list: Option<&[String]>| {
            list.unwrap_or_default()
                .iter()
                .map(|g| check_group_name(g).map_err(|m| err(key, m)))
                .collect::<Result<Vec<_>, E>>()
        };
        Ok(AccessPolicy {
            exempt_networks,
            require_groups: groups("require_groups", require_groups)?,
            exempt_groups: groups("exempt_groups", exempt_groups)?,
        })
    }

    /// Decides whether a login of `user` from `rhost` is covered. A group
    /// the config names that does not exist is an error (it would silently
    /// change who is covered), and so is a failed lookup: both deny.
    pub fn coverage(
        &self,
        user: &str,
        rhost: Option<&str>,
        groups: &dyn Groups,
    ) -> Result<Coverage, PolicyError> {
        if let Some(ip) = rhost.and_then(rhost_ip) {
            if let Some(net) = self.exempt_networks.iter().find(|n| n.contains(&ip)) {
                return Ok(Coverage::Exempt(format!(
                    "remote host {ip} is in exempt network {net}"
                )));
            }
        }
        if self.require_groups.is_empty() && self.exempt_groups.is_empty() {
            return Ok(Coverage::Covered);
        }
        // A user NSS does not know is in no group we can see: that is no
        // reason to skip the code. Deny.
        let user_gids = groups
            .user_gids(user)?
            .ok_or_else(|| PolicyError::UnknownUser(user.to_string()))?;
        let gid_of = |name: &str, key: &'static str| -> Result<u32, PolicyError> {
            groups
                .group_gid(name)?
                .ok_or_else(|| PolicyError::NoSuchGroup {
                    key,
                    group: name.to_string(),
                })
        };
        for name in &self.exempt_groups {
            if user_gids.contains(&gid_of(name, "exempt_groups")?) {
                return Ok(Coverage::Exempt(format!("member of exempt group {name}")));
            }
        }
        if !self.require_groups.is_empty() {
            let mut member = false;
            for name in &self.require_groups {
                member |= user_gids.contains(&gid_of(name, "require_groups")?);
            }
            if !member {
                return Ok(Coverage::Exempt(format!(
                    "not a member of any required group ({})",
                    self.require_groups.join(", ")
                )));
            }
        }
        Ok(Coverage::Covered)
    }
}

/// NSS lookups through libc (see [`crate::system::accounts`]).
pub struct SystemGroups;

impl Groups for SystemGroups {
    fn user_gids(&self, user: &str) -> Result<Option<Vec<u32>>, LookupError> {
        accounts::user_groups(user).map_err(|e| LookupError(e.to_string()))
    }

    fn group_gid(&self, group: &str) -> Result<Option<u32>, LookupError> {
        accounts::group_gid(group).map_err(|e| LookupError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Table {
        users: BTreeMap<&'static str, Vec<u32>>,
        groups: BTreeMap<&'static str, u32>,
        fail: bool,
    }

    impl Groups for Table {
        fn user_gids(&self, user: &str) -> Result<Option<Vec<u32>>, LookupError> {
            if self.fail {
                return Err("NSS is down".into());
            }
            Ok(self.users.get(user).cloned())
        }
        fn group_gid(&self, group: &str) -> Result<Option<u32>, LookupError> {
            Ok(self.groups.get(group).copied())
        }
    }

    fn table() -> Table {
        Table {
            users: [
                ("alice", vec![100, 27]),
                ("bob", vec![100]),
                ("svc", vec![900]),
            ]
            .into_iter()
            .collect(),
            groups: [("users", 100), ("sudo", 27), ("robots", 900)]
                .into_iter()
                .collect(),
            fail: false,
        }
    }

    fn policy(nets: &[&str], require: &[&str], exempt: &[&str]) -> AccessPolicy {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let err = |k: &str, m: String| format!("{k}: {m}");
        AccessPolicy::from_lists(Some(&v(nets)), Some(&v(require)), Some(&v(exempt)), &err)
            .expect("policy")
    }

    #[test]
    fn networks_parse_strictly() {
        assert_eq!(
            parse_network("10.0.0.0/8").expect("net").to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_network("192.0.2.7").expect("net").to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(parse_network("::1").expect("net").to_string(), "::1/128");
        assert_eq!(
            parse_network(" 2001:db8::/32 ").expect("net").to_string(),
            "2001:db8::/32"
        );
        let e = parse_network("10.0.0.1/8").unwrap_err();
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "example.org",
            "",
            "10.0.0.0/",
            "::/129",
            "1.2.3.4/-1",
        ] {
            assert!(parse_network(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rhost_forms() {
        let ip = |s: &str| rhost_ip(s).map(|i| i.to_string());
        assert_eq!(ip("192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_eq!(ip("::ffff:192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_eq!(ip("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip("fe80::1%eth0").as_deref(), Some("fe80::1"));
        assert_eq!(ip("host.example.org"), None);
        assert_eq!(ip(""), None);
    }

    #[test]
    fn exempt_networks_match_by_prefix() {
        let p = policy(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"], &[], &[]);
        let t = table();
        let cov = |rhost: Option<&str>| p.coverage("alice", rhost, &t).expect("coverage");
        assert!(matches!(cov(Some("10.255.1.2")), Coverage::Exempt(_)));
        assert!(matches!(cov(Some("::ffff:10.1.1.1")), Coverage::Exempt(_)));
        assert!(matches!(cov(Some("2001:db8:ffff::9")), Coverage::Exempt(_)));
        assert!(matches!(cov(Some("192.0.2.7")), Coverage::Exempt(_)));
        assert_eq!(cov(Some("192.0.2.8")), Coverage::Covered);
        assert_eq!(cov(Some("11.0.0.1")), Coverage::Covered);
        assert_eq!(cov(Some("2001:db9::1")), Coverage::Covered);
        assert_eq!(cov(Some("10.example.org")), Coverage::Covered);
        assert_eq!(cov(None), Coverage::Covered);
        assert_eq!(cov(Some("")), Coverage::Covered);
    }

    #[test]
    fn groups_require_and_exempt() {
        let t = table();
        let p = policy(&[], &["users"], &["robots"]);
        assert_eq!(p.coverage("alice", None, &t), Ok(Coverage::Covered));
        assert!(
            matches!(p.coverage("svc", None, &t), Ok(Coverage::Exempt(r)) if r.contains("robots"))
        );
        // A user NSS does not know is not waved through (issue 12, item 7).
        let e = p.coverage("nobody", None, &t).unwrap_err();
        assert_eq!(e, PolicyError::UnknownUser("nobody".into()));
        assert_eq!(
            e.to_string(),
            "user \"nobody\" is unknown to NSS, so [policy] groups cannot be checked"
        );
        let p = policy(&[], &["sudo"], &[]);
        assert_eq!(p.coverage("alice", None, &t), Ok(Coverage::Covered));
        assert!(matches!(
            p.coverage("bob", None, &t),
            Ok(Coverage::Exempt(_))
        ));
        // Exempt wins over required.
        let p = policy(&[], &["users"], &["sudo"]);
        assert!(matches!(
            p.coverage("alice", None, &t),
            Ok(Coverage::Exempt(_))
        ));
        assert_eq!(p.coverage("bob", None, &t), Ok(Coverage::Covered));
    }

    #[test]
    fn unknown_group_or_failed_lookup_is_an_error() {
        let t = table();
        let e = policy(&[], &["userz"], &[])
            .coverage("alice", None, &t)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "[policy] require_groups names group \"userz\", which does not exist: fix gateway.toml"
        );
        let e = policy(&[], &[], &["robotz"])
            .coverage("alice", None, &t)
            .unwrap_err();
        assert!(
            matches!(&e, PolicyError::NoSuchGroup { key: "exempt_groups", group } if group == "robotz"),
            "{e}"
        );
        let broken = Table {
            fail: true,
            ..table()
        };
        assert_eq!(
            policy(&[], &["users"], &[]).coverage("alice", None, &broken),
            Err(PolicyError::Lookup("NSS is down".into()))
        );
        // No group rules: no lookup at all.
        assert_eq!(
            policy(&[], &[], &[]).coverage("alice", None, &broken),
            Ok(Coverage::Covered)
        );
    }

    #[test]
    fn bad_lists_name_the_key() {
        let err = |k: &str, m: String| format!("{k}: {m}");
        let e =
            AccessPolicy::from_lists(Some(&["nope".to_string()]), None, None, &err).unwrap_err();
        assert!(e.starts_with("exempt_networks:"), "{e}");
        let e = AccessPolicy::from_lists(None, Some(&[String::new()]), None, &err).unwrap_err();
        assert!(e.starts_with("require_groups:"), "{e}");
    }

    #[test]
    fn system_lookups_know_root() {
        let g = SystemGroups;
        let root_gids = g.user_gids("root").expect("lookup").expect("root exists");
        assert!(root_gids.contains(&0), "{root_gids:?}");
        assert_eq!(g.group_gid("root").expect("lookup"), Some(0));
        assert_eq!(g.user_gids("no-such-user-pgw").expect("lookup"), None);
        assert_eq!(g.group_gid("no-such-group-pgw").expect("lookup"), None);
        assert!(g.user_gids("a\0b").is_err());
        let p = policy(&[], &["root"], &[]);
        assert_eq!(p.coverage("root", None, &g), Ok(Coverage::Covered));
        assert!(matches!(
            p.coverage("no-such-user-pgw", None, &g),
            Err(PolicyError::UnknownUser(_))
        ));
    }
}
