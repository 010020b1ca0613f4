use super::lua::encode_query;
use super::test_server::{Server, CLOSE};
use super::*;

#[test]
fn urls_and_queries() {
    let t = target("http://127.0.0.1:8080/a/b?x=1").unwrap();
    assert_eq!(
        (&*t.key, t.path.as_str(), t.authority.as_str()),
        ("http://127.0.0.1:8080", "/a/b?x=1", "127.0.0.1:8080")
    );
    assert_eq!(target("http://h").unwrap().path, "/");
    let v6 = target("http://user:pw@[::1]:8080/").unwrap();
    assert_eq!(
        (v6.host.as_str(), v6.port, v6.authority.as_str()),
        ("::1", 8080, "[::1]:8080")
    );
    let s = target("https://example.test/x").unwrap();
    assert_eq!(
        (&*s.key, s.port, s.tls, s.authority.as_str()),
        ("https://example.test:443", 443, true, "example.test")
    );
    assert_eq!(
        target("ftp://h/").err().unwrap(),
        "the URL must start with http:// or https://"
    );
    assert_eq!(
        encode_query(&[("q".into(), "a b&c".into()), ("n".into(), "é".into())]),
        "q=a%20b%26c&n=%C3%A9"
    );
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn get(method: &str) -> Request<'static> {
    Request {
        method: if method == "HEAD" { b"HEAD" } else { b"GET" },
        headers: &[],
        body: b"",
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn bodies_by_length_chunks_and_close_on_one_kept_alive_connection() {
    let big = "x".repeat(100_000);
    let server = Server::start(vec![
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabc".into(),
        format!(
            "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        ),
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
         4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n"
            .into(),
        "HTTP/1.1 204 No Content\r\n\r\n".into(),
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".into(),
        // Close-delimited, over many reads of the connection's 8 KB buffer.
        format!("HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nuntil close{big}") + CLOSE,
    ]);
    let client = Client::default();
    let url = server.url("/p?q=1");
    block_on(async {
        let r = client.send(url.as_bytes(), &get("GET")).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"abc"[..]));
        assert_eq!(r.headers, "Content-Length: 3\r\nX-A: 1\r\n");
        // Buffers go back to the client and must not leak into the next response.
        client.recycle(r);
        let r = client.send(url.as_bytes(), &get("GET")).await.unwrap();
        assert_eq!((r.status, r.body.len()), (201, big.len()));
        let r = client.send(url.as_bytes(), &get("GET")).await.unwrap();
        assert_eq!(
            (r.status, String::from_utf8_lossy(&r.body).as_ref()),
            (200, "Wikipedia in \r\n\r\nchunks.")
        );
        client.recycle(r);
        let r = client.send(url.as_bytes(), &get("GET")).await.unwrap();
        assert_eq!((r.status, r.body.len(), r.headers.as_str()), (204, 0, ""));
        client.recycle(r);
        let r = client.send(url.as_bytes(), &get("HEAD")).await.unwrap();
        assert_eq!((r.status, r.body.len()), (200, 0), "HEAD has no body");
        let r = client.send(url.as_bytes(), &get("GET")).await.unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.body, format!("until close{big}").into_bytes());
    });
    assert_eq!(
        server.accepted(),
        1,
        "one kept-alive connection for all six"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 6);
    assert_eq!(
        requests[0],
        format!(
            "GET /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            server.port
        )
    );
    assert!(requests[4].starts_with("HEAD /p?q=1 HTTP/1.1\r\n"));
    // The server closed the last one: no connection is kept for it.
    assert!(client.0.borrow().idle.is_empty());
}

#[test]
fn a_closed_kept_alive_connection_is_retried_once_on_a_new_one() {
    let server = Server::start(vec![
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na".to_owned() + CLOSE,
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb".into(),
    ]);
    let client = Client::default();
    let url = server.url("/");
    block_on(async {
        let a = client.send(url.as_bytes(), &get("GET")).await.unwrap();
        // The server closed without saying so: the client still holds the connection.
        assert_eq!(client.0.borrow().idle.len(), 1);
        let b = client.send(url.as_bytes(), &get("GET")).await.unwrap();
        assert_eq!((&a.body[..], &b.body[..]), (&b"a"[..], &b"b"[..]));
    });
    assert_eq!(server.accepted(), 2);
}

#[test]
fn cookies_headers_and_bodies_are_sent() {
    let server = Server::start(vec![
        "HTTP/1.1 200 OK\r\nSet-Cookie: sid=abc; Path=/\r\nset-cookie: lang=fr\r\n\
         Content-Length: 0\r\n\r\n"
            .into(),
        "HTTP/1.1 200 OK\r\nSet-Cookie: sid=xyz\r\nContent-Length: 0\r\n\r\n".into(),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".into(),
    ]);
    let client = Client::default();
    let url = server.url("/a");
    let headers = [("X-Token".to_owned(), "t1".to_owned())];
    block_on(async {
        client.send(url.as_bytes(), &get("GET")).await.unwrap();
        let post = Request {
            method: b"POST",
            headers: &headers,
            body: b"{\"k\":1}",
            timeout: Duration::from_secs(5),
        };
        client.send(url.as_bytes(), &post).await.unwrap();
        client.send(url.as_bytes(), &get("GET")).await.unwrap();
    });
    let r = server.requests();
    let host = format!("Host: 127.0.0.1:{}\r\n", server.port);
    assert_eq!(
        r[1],
        format!(
            "POST /a HTTP/1.1\r\n{host}Cookie: sid=abc; lang=fr\r\nX-Token: t1\r\n\
             Content-Length: 7\r\n\r\n{{\"k\":1}}"
        )
    );
    assert_eq!(
        r[2],
        format!("GET /a HTTP/1.1\r\n{host}Cookie: sid=xyz; lang=fr\r\n\r\n")
    );
}

#[test]
fn bad_input_and_broken_servers_are_clear_errors() {
    let client = Client::default();
    let server = Server::start(vec![
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_owned() + CLOSE,
        "garbage\r\n\r\n".into(),
    ]);
    let url = server.url("/");
    block_on(async {
        let bad_header = [("X-A".to_owned(), "a\r\nInjected: 1".to_owned())];
        let req = Request {
            headers: &bad_header,
            ..get("GET")
        };
        assert_eq!(
            client.send(url.as_bytes(), &req).await.unwrap_err(),
            "bad header \"X-A\""
        );
        let req = Request {
            method: b"GE T",
            ..get("GET")
        };
        assert_eq!(
            client.send(url.as_bytes(), &req).await.unwrap_err(),
            "bad method"
        );
        assert_eq!(
            client.send(url.as_bytes(), &get("GET")).await.unwrap_err(),
            "reading body: connection closed mid-body"
        );
        let e = client.send(url.as_bytes(), &get("GET")).await.unwrap_err();
        assert!(e.starts_with("bad response:"), "{e}");
    });
}

#[test]
fn bodies_over_the_limit_are_errors_whatever_the_server_claims() {
    let server = Server::start(vec![
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999\r\n\r\nx".to_owned() + CLOSE,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nx".to_owned()
            + CLOSE,
        "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\nshort".to_owned() + CLOSE,
    ]);
    let client = Client::default();
    let url = server.url("/");
    block_on(async {
        for _ in 0..2 {
            assert_eq!(
                client.send(url.as_bytes(), &get("GET")).await.unwrap_err(),
                "reading body: larger than 256 MiB"
            );
        }
        assert_eq!(
            client.send(url.as_bytes(), &get("GET")).await.unwrap_err(),
            "reading body: connection closed mid-body"
        );
    });
}

#[test]
fn a_silent_server_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let client = Client::default();
    // The client reuses its timer: each request's timeout holds, shorter or longer than the
    // one before.
    block_on(async {
        for ms in [200u64, 60, 300] {
            let req = Request {
                timeout: Duration::from_millis(ms),
                ..get("GET")
            };
            let t0 = std::time::Instant::now();
            let e = client.send(url.as_bytes(), &req).await.unwrap_err();
            let took = t0.elapsed();
            assert_eq!(e, format!("timed out after {ms}ms"));
            assert!(
                took >= Duration::from_millis(ms) && took < Duration::from_millis(ms + 150),
                "{ms} ms timeout took {took:?}"
            );
        }
    });
    drop(listener);
}
