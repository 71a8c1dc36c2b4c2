//! The site tracker in a real browser: Debian's Chromium, driven by
//! Playwright for Python (`tests/browser/tracker.py`), on a loopback test
//! site served by Python's `http.server`, against the real server.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actionhost_tests::server::{Options, Server};
use serde_json::json;

/// A static site on a free loopback port: `index.html` and `pricing.html`,
/// each carrying the tracker snippet. Stopped on drop.
struct Site {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Site {
    /// Serves the two pages with `snippet` on `port`.
    fn start(port: u16, snippet: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for (file, title) in [("index.html", "Home"), ("pricing.html", "Pricing")] {
            std::fs::write(
                dir.path().join(file),
                format!("<!doctype html><html><head><title>{title}</title>{snippet}</head><body><h1>{title}</h1><a id=\"pricing\" href=\"/pricing.html\">Pricing</a></body></html>"),
            )
            .expect("write page");
        }
        let child = Command::new(actionhost_tests::python())
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start http.server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the test site did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_tracker_records_pageviews_and_identify_in_chromium_and_refuses_other_origins() {
    let server = Server::start_with(Options::default());
    // The key lists the site's origin, so its port is chosen first.
    let port = free_port();
    let listed_site = format!("http://127.0.0.1:{port}");
    let minted = server.post(
        "/v1/publishable-keys",
        &json!({ "name": "test site", "allowed_origins": [listed_site] }),
    );
    assert_eq!(minted.status, 201, "{}", minted.text);
    let snippet = minted.json["publishable_key"]["snippet"]
        .as_str()
        .expect("snippet")
        .to_owned();
    assert!(
        snippet.contains("/t.js") && snippet.contains("data-key=\"pk_"),
        "{snippet}"
    );

    let script = server.call("GET", "/t.js", None, None);
    assert_eq!(script.status, 200);
    assert!(
        script
            .header("content-type")
            .is_some_and(|t| t.contains("javascript"))
    );

    let site = Site::start(port, &snippet);
    let stranger_site = Site::start(free_port(), &snippet);

    let report = actionhost_tests::browser_script(
        "tracker.py",
        &[
            &server.url,
            &server.admin_key,
            &site.url,
            &stranger_site.url,
        ],
    );
    let contact_id = report["contact_id"].as_str().expect("contact").to_owned();

    // The contact's events: the three pageviews, with their urls, in order.
    let listed = server.get(&format!("/v1/events?contact_id={contact_id}&sort_dir=asc"));
    assert_eq!(listed.status, 200, "{}", listed.text);
    let events = listed.json["events"].as_array().expect("events").clone();
    let urls: Vec<&str> = events.iter().filter_map(|e| e["url"].as_str()).collect();
    assert_eq!(
        urls,
        [
            format!("{}/index.html", site.url),
            format!("{}/pricing.html", site.url),
            format!("{}/features", site.url),
        ],
        "{}",
        listed.text
    );
    assert!(
        events
            .iter()
            .all(|e| e["event"] == "pageview" && e["source"] == "tracker")
    );
    assert_eq!(events[1]["properties"]["title"], "Pricing");
    assert_eq!(
        events[1]["properties"]["referrer"],
        format!("{}/index.html", site.url)
    );
    let contact = server.get(&format!("/v1/contacts/{contact_id}"));
    assert_eq!(contact.json["contact"]["email"], "ada@example.com");

    // The page of an origin that is not on the key's list stored nothing.
    let stranger = report["stranger"].as_str().expect("stranger id");
    let theirs = server.get(&format!("/v1/events?anonymous_id={stranger}"));
    assert_eq!(theirs.json["events"], json!([]), "{}", theirs.text);
    let all = server.get("/v1/events?limit=100");
    assert_eq!(
        all.json["events"].as_array().map(Vec::len),
        Some(3),
        "{}",
        all.text
    );
    assert!(
        server.log().contains("may not send events with this key"),
        "the refusal is logged"
    );
    // The browser saw each beacon's answer: the three pageviews and the
    // identify accepted, the stranger's pageview refused.
    let statuses: Vec<u64> = report["statuses"]
        .as_array()
        .map(|s| s.iter().filter_map(|pair| pair[1].as_u64()).collect())
        .unwrap_or_default();
    let count = |status: u64| statuses.iter().filter(|s| **s == status).count();
    assert_eq!(
        (count(200), count(403)),
        (4, 1),
        "beacon answers: {statuses:?}"
    );
}

/// The rate limit of a key: past its burst, 429 with Retry-After, and
/// nothing stored for the refused beacons.
#[test]
fn a_publishable_key_is_rate_limited_and_checks_origin_without_a_browser() {
    let server = Server::start_with(Options {
        env: vec![
            ("ACTIONHOST_TRACKER__RATE_PER_SECOND".into(), "1".into()),
            ("ACTIONHOST_TRACKER__BURST".into(), "3".into()),
        ],
        ..Options::default()
    });
    let minted = server.post(
        "/v1/publishable-keys",
        &json!({ "allowed_origins": ["https://shop.example.com"] }),
    );
    let key = minted.json["publishable_key"]["id"]
        .as_str()
        .expect("pk")
        .to_owned();
    let beacon = |origin: Option<&str>, visitor: &str| {
        let body = json!({ "key": key, "anonymous_id": visitor, "events": [{ "event": "pageview", "url": "https://shop.example.com/" }] });
        let mut request = server
            .request("POST", "/v1/track")
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body.to_string());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        server.send(request)
    };
    let refused = beacon(Some("https://evil.example.com"), "v-evil");
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.header("access-control-allow-origin").is_none());
    assert_eq!(beacon(None, "v-none").status, 403, "no origin, no events");
    let first = beacon(Some("https://shop.example.com"), "v-ok");
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(
        first.header("access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    let mut limited = None;
    for _ in 0..10 {
        let answer = beacon(Some("https://shop.example.com"), "v-ok");
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the key was rate-limited");
    assert!(
        limited.header("retry-after").is_some(),
        "{:?}",
        limited.headers
    );
    let stored = server.get("/v1/events?anonymous_id=v-ok&limit=100");
    let count = stored.json["events"].as_array().map_or(0, Vec::len);
    assert!(
        (1..=3).contains(&count),
        "only the admitted beacons stored: {count}"
    );
    for visitor in ["v-evil", "v-none"] {
        let none = server.get(&format!("/v1/events?anonymous_id={visitor}"));
        assert_eq!(none.json["events"], json!([]));
    }
    // A bad beacon from an allowed origin is named, and readable by the page.
    let bad = server.send(
        server
            .request("POST", "/v1/track")
            .header("origin", "https://shop.example.com")
            .body(json!({ "key": key, "anonymous_id": "bad id!", "events": [] }).to_string()),
    );
    assert!(bad.status == 422 || bad.status == 429, "{}", bad.text);
    let unknown = server.send(
        server
            .request("POST", "/v1/track")
            .header("origin", "https://shop.example.com")
            .body(json!({ "key": "pk_unknown", "anonymous_id": "v", "events": [] }).to_string()),
    );
    assert_eq!(unknown.status, 401, "{}", unknown.text);
}
