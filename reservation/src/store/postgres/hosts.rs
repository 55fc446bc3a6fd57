//! libpq's PostgreSQL URLs taken apart: one single-host URL per host (each
//! keeping every other parameter, for sqlx to parse as it always does),
//! and how to choose among them (`target_session_attrs`,
//! `load_balance_hosts`, `connect_timeout`).

use std::time::Duration;

use abi::{Error, Result};

/// Which server will do (`target_session_attrs`, as libpq reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionAttrs {
    /// Any server that accepts a connection (libpq's default).
    Any,
    /// A server whose sessions may write (`transaction_read_only` off).
    ReadWrite,
    /// A server not in recovery.
    Primary,
}

impl SessionAttrs {
    fn parse(value: &str) -> Result<Self> {
        match value {
            "any" => Ok(SessionAttrs::Any),
            "read-write" => Ok(SessionAttrs::ReadWrite),
            "primary" => Ok(SessionAttrs::Primary),
            "read-only" | "standby" | "prefer-standby" => Err(Error::invalid(
                "database_url",
                "target_session_attrs must be any, read-write or primary: rsvp writes",
            )),
            _ => Err(Error::invalid(
                "database_url",
                "target_session_attrs must be any, read-write or primary",
            )),
        }
    }
}

/// A PostgreSQL URL taken apart: one URL per host, each with every other
/// setting of the original, and how to choose among them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HostList {
    /// One single-host URL per host, in the order given.
    pub urls: Vec<String>,
    pub attrs: SessionAttrs,
    /// `load_balance_hosts=random`: try the hosts in a random order.
    pub random: bool,
    /// `connect_timeout`, in seconds as libpq reads it.
    pub connect_timeout: Option<Duration>,
}

impl HostList {
    /// Splits `url` (`postgres://` or `postgresql://`) into one URL per host:
    /// hosts listed in the authority (`h1:5432,h2:5433,[::1]:5434`) or in
    /// `host=`/`port=` parameters (`host=h1,h2&port=5432,5433`).
    pub fn parse(url: &str) -> Result<HostList> {
        let invalid = |reason: &'static str| Error::invalid("database_url", reason);
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
            .ok_or_else(|| invalid("must start with postgres:// or postgresql://"))?;
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match before_query.find('/') {
            Some(at) => before_query.split_at(at),
            None => (before_query, ""),
        };
        let (userinfo, hostspec) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };

        let mut hosts: Vec<(String, Option<String>)> = Vec::new();
        if !hostspec.is_empty() {
            for entry in hostspec.split(',') {
                hosts.push(split_host_port(entry).ok_or_else(|| {
                    invalid("a host in the host list is empty or has a malformed port")
                })?);
            }
        }

        let mut attrs = SessionAttrs::Any;
        let mut random = false;
        let mut connect_timeout = None;
        let mut query_hosts = None;
        let mut query_ports = None;
        let mut passed = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decode(value)
                .ok_or_else(|| invalid("a query parameter is not valid percent-encoded UTF-8"))?;
            match key {
                "target_session_attrs" => attrs = SessionAttrs::parse(&decoded)?,
                "load_balance_hosts" => {
                    random = match decoded.as_str() {
                        "disable" => false,
                        "random" => true,
                        _ => return Err(invalid("load_balance_hosts must be disable or random")),
                    }
                }
                "connect_timeout" => {
                    let seconds: i64 = decoded
                        .parse()
                        .map_err(|_| invalid("connect_timeout must be whole seconds"))?;
                    // As libpq reads it, 0 or less is no timeout of the URL's
                    // own (the store's default then applies), and less than
                    // 2 s is 2 s.
                    connect_timeout = u64::try_from(seconds)
                        .ok()
                        .filter(|s| *s > 0)
                        .map(|s| Duration::from_secs(s.max(2)));
                }
                "host" if decoded.contains(',') => query_hosts = Some(value.to_string()),
                "port" if decoded.contains(',') => query_ports = Some(decoded),
                "hostaddr" if decoded.contains(',') => {
                    return Err(invalid(
                        "hostaddr lists are not supported: list the hosts in the URL's authority",
                    ));
                }
                _ => passed.push(pair),
            }
        }
        if let Some(list) = query_hosts {
            // As libpq: parameters override what the authority says.
            // An IPv6 address as a URL's host needs its brackets.
            hosts = list
                .split(',')
                .map(|h| match percent_decode(h) {
                    Some(v6) if v6.contains(':') && !v6.starts_with('/') => {
                        (format!("[{v6}]"), None)
                    }
                    _ => (h.to_string(), None),
                })
                .collect();
        }
        if let Some(list) = query_ports {
            let ports: Vec<&str> = list.split(',').collect();
            if ports.iter().any(|p| p.parse::<u16>().is_err()) {
                return Err(invalid("a port in the port list is not a port number"));
            }
            match ports.len() {
                1 => hosts
                    .iter_mut()
                    .for_each(|h| h.1 = Some(ports[0].to_string())),
                n if n == hosts.len() => {
                    for (host, port) in hosts.iter_mut().zip(ports) {
                        host.1 = Some(port.to_string());
                    }
                }
                _ => {
                    return Err(invalid("the port list must have one port, or one per host"));
                }
            }
        }
        if hosts.iter().any(|(host, _)| host.is_empty()) && hosts.len() > 1 {
            return Err(invalid("a host in the host list is empty"));
        }

        let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let passed = passed.join("&");
        let single = |host: &str, port: &Option<String>| {
            let mut url = format!("{scheme}://{userinfo}{host}");
            if let Some(port) = port {
                url.push(':');
                url.push_str(port);
            }
            url.push_str(path);
            if !passed.is_empty() {
                url.push('?');
                url.push_str(&passed);
            }
            url
        };
        let urls = if hosts.is_empty() {
            vec![single("", &None)]
        } else {
            hosts
                .iter()
                .map(|(host, port)| {
                    // A host given as a parameter may be a socket directory.
                    if host.starts_with('/') || host.starts_with("%2F") || host.starts_with("%2f") {
                        single(&percent_encode_path(host), port)
                    } else {
                        single(host, port)
                    }
                })
                .collect()
        };
        Ok(HostList {
            urls,
            attrs,
            random,
            connect_timeout,
        })
    }
}

/// `host[:port]`, where host may be `[v6 address]`; `None` when the port
/// is not a number or the host is empty in a list.
fn split_host_port(entry: &str) -> Option<(String, Option<String>)> {
    let (host, port) = if let Some(v6) = entry.strip_prefix('[') {
        let end = v6.find(']')?;
        let after = &v6[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return None,
        };
        (&entry[..end + 2], port)
    } else {
        match entry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        }
    };
    // As libpq: an empty port is the default one.
    let port = port.filter(|p| !p.is_empty());
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return None;
    }
    Some((host.to_string(), port.map(str::to_string)))
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A socket directory as a URL's host: every `/` percent-encoded.
fn percent_encode_path(host: &str) -> String {
    host.replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::postgres::PgConnectOptions;

    use super::*;

    fn urls(url: &str) -> Vec<String> {
        HostList::parse(url).unwrap().urls
    }

    #[test]
    fn one_url_per_host_with_every_other_setting() {
        let list = HostList::parse(
            "postgres://u:p%40ss@h1:5432,h2:5433,[::1]:5434,h4/rsvp?sslmode=disable&target_session_attrs=read-write&application_name=x",
        )
        .unwrap();
        assert_eq!(list.attrs, SessionAttrs::ReadWrite);
        assert!(!list.random);
        assert_eq!(
            list.urls,
            [
                "postgres://u:p%40ss@h1:5432/rsvp?sslmode=disable&application_name=x",
                "postgres://u:p%40ss@h2:5433/rsvp?sslmode=disable&application_name=x",
                "postgres://u:p%40ss@[::1]:5434/rsvp?sslmode=disable&application_name=x",
                "postgres://u:p%40ss@h4/rsvp?sslmode=disable&application_name=x",
            ]
        );
        for url in &list.urls {
            PgConnectOptions::from_str(url).unwrap();
        }
    }

    #[test]
    fn a_single_host_url_is_kept_as_it_is() {
        assert_eq!(urls("postgresql://db/rsvp"), ["postgresql://db/rsvp"]);
        assert_eq!(urls("postgres://u@db:6000"), ["postgres://u@db:6000"]);
        assert_eq!(
            urls("postgres:///rsvp?host=/tmp"),
            ["postgres:///rsvp?host=/tmp"]
        );
        let list = HostList::parse("postgres://db/rsvp").unwrap();
        assert_eq!(list.attrs, SessionAttrs::Any);
    }

    #[test]
    fn hosts_and_ports_as_parameters() {
        assert_eq!(
            urls("postgres:///rsvp?host=a,b&port=1,2&user=me"),
            ["postgres://a:1/rsvp?user=me", "postgres://b:2/rsvp?user=me"]
        );
        assert_eq!(
            urls("postgres://a,b/rsvp?port=7"),
            ["postgres://a/rsvp?port=7", "postgres://b/rsvp?port=7"]
        );
        assert_eq!(
            urls("postgres:///rsvp?host=%2Ftmp%2Fa,%2Ftmp%2Fb"),
            ["postgres://%2Ftmp%2Fa/rsvp", "postgres://%2Ftmp%2Fb/rsvp"]
        );
        let socket = PgConnectOptions::from_str("postgres://%2Ftmp%2Fa/rsvp").unwrap();
        assert_eq!(socket.get_socket().unwrap().to_str(), Some("/tmp/a"));
    }

    #[test]
    fn libpq_leniencies() {
        assert_eq!(
            urls("postgres://a:,b:5433/db"),
            ["postgres://a/db", "postgres://b:5433/db"]
        );
        assert_eq!(
            urls("postgres:///db?host=::1,%3A%3A2&port=1,2"),
            ["postgres://[::1]:1/db", "postgres://[::2]:2/db"]
        );
        let list = HostList::parse("postgres://a,b/db?connect_timeout=-1").unwrap();
        assert_eq!(list.connect_timeout, None);
    }

    #[test]
    fn choice_parameters_are_read() {
        let list = HostList::parse(
            "postgres://a,b/db?load_balance_hosts=random&connect_timeout=1&target_session_attrs=primary",
        )
        .unwrap();
        assert!(list.random);
        assert_eq!(list.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(list.attrs, SessionAttrs::Primary);
        let list =
            HostList::parse("postgres://a/db?connect_timeout=0&target_session_attrs=any").unwrap();
        assert_eq!(list.connect_timeout, None);
        assert_eq!(list.attrs, SessionAttrs::Any);
    }

    #[test]
    fn malformed_lists_are_refused_naming_the_url() {
        for url in [
            "postgres://a:5432,:5433/db",
            "postgres://a:x,b/db",
            "postgres://a,b/db?port=1,2,3",
            "postgres://a,b/db?target_session_attrs=standby",
            "postgres://a,b/db?target_session_attrs=whatever",
            "postgres://a,b/db?load_balance_hosts=sometimes",
            "postgres://a,b/db?connect_timeout=soon",
            "postgres://a/db?hostaddr=127.0.0.1,127.0.0.2",
            "postgres://[::1/db",
            "mysql://a/db",
        ] {
            match HostList::parse(url) {
                Err(Error::InvalidArgument { field, .. }) => {
                    assert_eq!(field, "database_url", "{url}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
