//! What the CLI asks of the directory besides a login's lookup: the entries
//! that hold recipients (`pam-gateway users`, `pam-gateway status`), and
//! writing a recipient into a user's entry (`pam-gateway enroll
//! --directory-bind-dn`). The same [`Connection`], under the same deadline.
//! A login never calls these.

use std::collections::HashSet;

use ldap3::{Mod, Scope, SearchEntry};

use super::{Connection, DirectoryConfig, DirectoryError, Entry, ldap_error};

/// The auxiliary class of pam_gateway's schema (conf/ldap/pam-gateway.ldif).
pub const USER_CLASS: &str = "pamGatewayUser";

/// Is `attribute` one of the schema's own (`pamGateway...`), i.e. one that
/// needs [`USER_CLASS`] on the entry?
pub fn is_schema_attribute(attribute: &str) -> bool {
    attribute
        .get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case("pamGateway"))
}

/// What [`Connection::enrolled`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// More entries matched than were asked for (or the server's own size
    /// limit stopped the search).
    pub truncated: bool,
}

impl DirectoryConfig {
    /// The attribute `user_filter` compares with the login name: `uid` in
    /// the default `(&(objectClass=posixAccount)(uid={user}))`; `None` when
    /// the filter has no `(NAME={user})` term.
    pub fn name_attribute(&self) -> Option<&str> {
        let end = self.user_filter.find("={user})")?;
        let start = self.user_filter[..end].rfind('(')? + 1;
        let name = &self.user_filter[start..end];
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        plain.then_some(name)
    }

    /// The filter for every entry `user_filter` could find that has at
    /// least one mapped attribute: `{user}` becomes `*`.
    fn enrolled_filter(&self) -> String {
        let any: String = self
            .attributes
            .values()
            .map(|a| format!("({a}=*)"))
            .collect();
        format!("(&{}(|{any}))", self.user_filter.replace("{user}", "*"))
    }
}

impl Connection {
    /// Up to `limit` entries under `base_dn` that `user_filter` could find
    /// for some name and that hold a mapped attribute, with those
    /// attributes and [`DirectoryConfig::name_attribute`].
    pub fn enrolled(
        &mut self,
        dir: &DirectoryConfig,
        limit: i32,
    ) -> Result<Listing, DirectoryError> {
        let filter = dir.enrolled_filter();
        let mut wanted: Vec<&str> = dir.attributes.values().map(String::as_str).collect();
        wanted.extend(dir.name_attribute());
        wanted.sort_unstable();
        wanted.dedup();
        let base = dir.base_dn.as_str();
        let ldap3::SearchResult(entries, result) = self.run(async |ldap| {
            ldap.with_search_options(ldap3::SearchOptions::new().sizelimit(limit))
                .search(base, Scope::Subtree, &filter, wanted)
                .await
        })?;
        // 4: sizeLimitExceeded; the entries before it are good.
        let truncated = result.rc == 4;
        if result.rc != 0 && !truncated {
            return Err(ldap_error(ldap3::LdapError::LdapResult { result }));
        }
        let entries = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(|e| {
                let e = SearchEntry::construct(e);
                Entry {
                    dn: e.dn,
                    attributes: e.attrs.into_iter().collect(),
                }
            })
            .collect();
        Ok(Listing { entries, truncated })
    }

    /// The values of `attribute` in the entry `dn` (empty when it has none).
    pub fn values_of(&mut self, dn: &str, attribute: &str) -> Result<Vec<String>, DirectoryError> {
        let ldap3::SearchResult(entries, result) = self.run(async |ldap| {
            ldap.search(dn, Scope::Base, "(objectClass=*)", vec![attribute])
                .await
        })?;
        if result.rc != 0 {
            return Err(ldap_error(ldap3::LdapError::LdapResult { result }));
        }
        let Some(entry) = entries.into_iter().find(|e| !e.is_ref()) else {
            return Ok(Vec::new());
        };
        Ok(SearchEntry::construct(entry)
            .attrs
            .into_iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(attribute))
            .flat_map(|(_, values)| values)
            .collect())
    }

    /// Sets `attribute` of `dn` to `value` alone, in one modify operation
    /// that also adds [`USER_CLASS`] to the entry's object classes when the
    /// attribute is one of the schema's and the class is missing.
    /// Returns whether the class was added.
    pub fn set_recipient(
        &mut self,
        dn: &str,
        attribute: &str,
        value: &str,
    ) -> Result<bool, DirectoryError> {
        let add_class = is_schema_attribute(attribute)
            && !self
                .values_of(dn, "objectClass")?
                .iter()
                .any(|c| c.eq_ignore_ascii_case(USER_CLASS));
        let mut mods = Vec::new();
        if add_class {
            mods.push(Mod::Add("objectClass", HashSet::from([USER_CLASS])));
        }
        mods.push(Mod::Replace(attribute, HashSet::from([value])));
        self.run(async |ldap| ldap.modify(dn, mods).await?.success().map(|_| ()))?;
        Ok(add_class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_attributes_are_recognised_by_prefix() {
        assert!(is_schema_attribute("pamGatewayTelegram"));
        assert!(is_schema_attribute("PAMGATEWAYSMS"));
        assert!(!is_schema_attribute("mobile"));
        assert!(!is_schema_attribute("pamGate"));
        assert!(!is_schema_attribute("extensionAttribute1"));
    }
}
