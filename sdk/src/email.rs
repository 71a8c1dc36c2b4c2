//! Email address checks shared by plugins that take addresses as params.

/// A mailbox: an optional display name and an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name, such as `Ada Lovelace`.
    pub name: Option<String>,
    /// The address, such as `ada@example.com`.
    pub address: String,
}

/// Parses `ada@example.com` or `Ada Lovelace <ada@example.com>`.
///
/// The check is deliberately practical rather than the whole of RFC 5322:
/// one `@`, a non-empty local part, a dotted domain, no spaces, control
/// characters or angle brackets in the address. Returns `None` otherwise.
pub fn parse_mailbox(input: &str) -> Option<Mailbox> {
    let input = input.trim();
    if input.chars().any(char::is_control) {
        return None;
    }
    let (name, address) = match input.strip_suffix('>') {
        Some(rest) => {
            let (name, address) = rest.rsplit_once('<')?;
            let name = name.trim().trim_matches('"').trim();
            (
                if name.is_empty() {
                    None
                } else {
                    Some(name.to_owned())
                },
                address.trim(),
            )
        }
        None => (None, input),
    };
    is_address(address).then(|| Mailbox {
        name,
        address: address.to_owned(),
    })
}

/// Whether `address` is a plain address such as `ada@example.com`.
pub fn is_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>()[],;:\"@\\".contains(c);
    !local.is_empty()
        && local.len() <= 64
        && !local.chars().any(|c| bad(c) && c != '"')
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && domain.split('.').all(|label| !label.is_empty())
        && !domain.chars().any(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_named_mailboxes_parse() {
        assert_eq!(
            parse_mailbox("Ada Lovelace <ada@example.com>"),
            Some(Mailbox {
                name: Some("Ada Lovelace".into()),
                address: "ada@example.com".into()
            })
        );
        assert_eq!(
            parse_mailbox(" ada@example.com ").map(|m| m.address),
            Some("ada@example.com".into())
        );
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@example.com\r\nBcc: x@y.z",
            "ada@@example.com",
            "ada@.example.com",
        ] {
            assert!(parse_mailbox(bad).is_none(), "{bad:?} accepted");
        }
    }
}
