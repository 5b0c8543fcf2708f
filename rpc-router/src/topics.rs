//! Topic patterns for event subscriptions: `*` (everything), `prefix.*`
//! (the topic `prefix` and everything below it), or an exact topic.

/// True if `topic` matches `pattern`.
pub fn matches(pattern: &str, topic: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => {
            topic == prefix
                || (topic.len() > prefix.len()
                    && topic.starts_with(prefix)
                    && topic.as_bytes()[prefix.len()] == b'.')
        }
        None => pattern == topic,
    }
}

/// A valid topic or pattern: dotted lowercase words, optionally ending `.*`, or `*`.
pub fn valid_pattern(p: &str) -> bool {
    if p == "*" {
        return true;
    }
    let body = p.strip_suffix(".*").unwrap_or(p);
    !body.is_empty()
        && body.len() <= 128
        && body.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("*", "alert"));
        assert!(matches("pool.*", "pool.created"));
        assert!(matches("pool.*", "pool"));
        assert!(!matches("pool.*", "pools.created"));
        assert!(matches("cluster.state", "cluster.state"));
        assert!(!matches("cluster.state", "cluster.states"));
        assert!(
            valid_pattern("pool.*")
                && valid_pattern("alert")
                && !valid_pattern("a..b")
                && !valid_pattern("Pool")
        );
    }
}
