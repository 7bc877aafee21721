//! `/healthz` and `/readyz` of `cdc-verifier run` against the real broker, through a schema
//! registry that first hangs (the verification loop waits in a call: unhealthy), then refuses
//! (partitions paused: healthy, not ready), then answers again (ready).

mod live;
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use live::Verifier;

/// A proxy in front of the registry: from the first schema look-up by id, such look-ups
/// hang for `hang` (the connection held open, unanswered), then are refused for `refuse`
/// (the connection closed), then pass again. Everything else passes.
fn start_proxy(target: String, hang: Duration, refuse: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut first: Option<Instant> = None;
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            let Some(request) = read_request(&mut client) else {
                continue;
            };
            let head = String::from_utf8_lossy(&request[..request.len().min(200)]).to_string();
            if head.starts_with("GET ") && head.contains("/schemas/ids/") {
                let since = first.get_or_insert_with(Instant::now).elapsed();
                if since < hang {
                    std::thread::spawn(move || {
                        std::thread::sleep(hang);
                        drop(client);
                    });
                    continue;
                }
                if since < hang + refuse {
                    continue; // closed unanswered
                }
            }
            let target = target.clone();
            std::thread::spawn(move || forward(client, &target, &request));
        }
    });
    port
}

fn forward(mut client: TcpStream, target: &str, request: &[u8]) {
    let Ok(mut server) = TcpStream::connect(target) else {
        return;
    };
    // One request per connection: the upstream closes after its answer.
    let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&request[..end]);
    let mut lines: Vec<String> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_string)
        .collect();
    lines.push("Connection: close".into());
    let mut bytes = lines.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(&request[end + 4..]);
    if server.write_all(&bytes).is_err() {
        return;
    }
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    let _ = client.write_all(&response);
}

fn read_request(c: &mut TcpStream) -> Option<Vec<u8>> {
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = c.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
    }
}

#[test]
fn a_stuck_loop_is_unhealthy_and_paused_partitions_are_not_ready() {
    support::require_services();
    let name = support::unique_name("health");
    let prefix = format!("{name}-");
    live::simulate(&prefix, "clean", 10_000, &[]);
    let registry = support::registry_url();
    let hostport = registry.split('/').nth(2).unwrap().to_string();
    let path = registry.splitn(4, '/').nth(3).unwrap_or_default();
    let port = start_proxy(hostport, Duration::from_secs(8), Duration::from_secs(8));
    let mut v = Verifier::start(
        &name,
        &[
            "--topic-prefix".into(),
            prefix,
            "--group-id".into(),
            format!("{name}-group"),
            "--registry-url".into(),
            format!("http://127.0.0.1:{port}/{path}"),
            "--set".into(),
            "registry.timeout-ms=5000".into(),
            "--set".into(),
            "service.stall-timeout-s=2".into(),
        ],
    );
    // Each schema look-up waits 5 s for an answer that does not come: the loop is stuck.
    let (_, body) = v.wait_for("/healthz", Duration::from_secs(60), |s, _| s == 503);
    assert!(body.contains("no progress for"), "{body}");
    let (_, body) = v.get("/readyz").unwrap();
    assert!(body.contains("\"stalled\""), "{body}");
    // Then look-ups are refused at once: the loop goes on, the partitions wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = v.get("/healthz").map(|(s, _)| s);
        let ready = v.get("/readyz");
        if health == Some(200)
            && let Some((503, body)) = &ready
            && body.contains("\"registry_unavailable\"")
        {
            assert!(body.contains(".shop."), "names the topics: {body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never healthy with partitions paused: {ready:?}\n{}",
            v.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The registry answers again: every stream is read.
    v.wait_for("/readyz", Duration::from_secs(60), |s, _| s == 200);
    assert_eq!(v.get("/healthz").map(|(s, _)| s), Some(200));
    let (status, log) = v.stop();
    assert!(status.success(), "{log}");
}
