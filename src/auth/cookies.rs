//! Finding the session token in a request: `Authorization: Bearer`, else the Auth.js v5 or
//! NextAuth v4 cookie (plain or `__Secure-`), reassembling chunked cookies (`name.0`,
//! `name.1`, …) in index order.

use axum::http::{HeaderMap, header};

use super::token::{V4_COOKIES, V5_COOKIES};

/// A token and the cookie it came from (the v5 key salt); `cookie` is None for bearer tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub token: String,
    pub cookie: Option<&'static str>,
}

/// The session token a request presents, if any.
pub fn find_token(headers: &HeaderMap) -> Option<Presented> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut parts = auth.trim().splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
            && !token.trim().is_empty()
        {
            return Some(Presented {
                token: token.trim().to_owned(),
                cookie: None,
            });
        }
    }
    let jar = parse_cookies(headers);
    for name in V5_COOKIES.iter().chain(V4_COOKIES) {
        if let Some(token) = cookie_value(&jar, name) {
            return Some(Presented {
                token,
                cookie: Some(name),
            });
        }
    }
    None
}

fn parse_cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            Some((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        })
        .collect()
}

/// The whole value of cookie `name`, or of its chunks `name.0 name.1 …` concatenated in
/// index order (stopping at the first missing index).
fn cookie_value(jar: &[(String, String)], name: &str) -> Option<String> {
    if let Some((_, v)) = jar.iter().find(|(k, v)| k == name && !v.is_empty()) {
        return Some(v.clone());
    }
    let mut out = String::new();
    for i in 0.. {
        let chunk = format!("{name}.{i}");
        match jar.iter().find(|(k, _)| *k == chunk) {
            Some((_, v)) => out.push_str(v),
            None => break,
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn chunks_are_joined_in_index_order() {
        let h = headers(&[
            ("cookie", "a=1; next-auth.session-token.1=BBB"),
            (
                "cookie",
                "next-auth.session-token.0=AAA; next-auth.session-token.3=ZZZ",
            ),
        ]);
        let got = find_token(&h).unwrap();
        assert_eq!(got.token, "AAABBB");
        assert_eq!(got.cookie, Some("next-auth.session-token"));
    }

    #[test]
    fn bearer_wins_and_secure_v5_is_found() {
        let h = headers(&[
            ("authorization", "Bearer tok"),
            ("cookie", "authjs.session-token=c"),
        ]);
        assert_eq!(find_token(&h).unwrap().cookie, None);
        let h = headers(&[("cookie", "__Secure-authjs.session-token=c")]);
        assert_eq!(
            find_token(&h).unwrap().cookie,
            Some("__Secure-authjs.session-token")
        );
        assert_eq!(find_token(&headers(&[("cookie", "x=y")])), None);
    }
}
