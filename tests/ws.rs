//! WebSocket scripting (issue: scripting beyond GET): Lua's `ws.connect` against a real
//! WebSocket echo server (tungstenite on a thread per connection, in this test), each exchange
//! timed; and bad use as error results.

mod util;

use serde_json::json;
use util::*;

/// A WebSocket server on 127.0.0.1 echoing every text and binary message; `/close` closes
/// right after the handshake. Counts the messages it echoed.
struct Echo {
    port: u16,
    echoed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Echo {
    fn start() -> Echo {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let echoed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = echoed.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let count = count.clone();
                std::thread::spawn(move || {
                    let path = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
                    let seen = path.clone();
                    // The handshake callback's type is tungstenite's (an HTTP response as its error).
                    #[allow(clippy::result_large_err)]
                    let callback = move |req: &tungstenite::handshake::server::Request,
                                         resp: tungstenite::handshake::server::Response| {
                        *seen.lock().unwrap() = req.uri().path().to_owned();
                        Ok(resp)
                    };
                    let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else {
                        return;
                    };
                    if *path.lock().unwrap() == "/close" {
                        let _ = ws.close(None);
                        let _ = ws.flush();
                        return;
                    }
                    while let Ok(m) = ws.read() {
                        if m.is_text() || m.is_binary() {
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            if ws.send(m).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Echo { port, echoed }
    }
}

#[test]
fn a_lua_user_talks_to_a_real_websocket_server_and_times_each_exchange() {
    let echo = Echo::start();
    let p = Project::new(config(
        2.0,
        1,
        json!([{"name": "ws", "cannons": 3, "rampup": 0, "script": "w.lua"}]),
    ));
    p.write(
        "w.lua",
        &format!(
            r#"local conn
function run(t)
  if not conn then conn = ws.connect("ws://127.0.0.1:{}/echo", {{timeout = 5}}) end
  local sent = "hello " .. oct.canon
  local got = t:timer("echo", function() return conn:send(sent):receive() end)
  if got ~= sent then error("echoed " .. tostring(got)) end
  local bin = conn:send("\0\1\2", {{binary = true}}):receive()
  if bin ~= "\0\1\2" then error("binary echo differs") end
end"#,
            echo.port
        ),
    );
    let (status, out) = p.run_local();
    assert!(status.success(), "{out}");
    let rows = count_rows(&p.db(), "SELECT count(*) FROM result");
    assert!(rows > 50, "{rows}\n{out}");
    assert_eq!(
        count_rows(&p.db(), "SELECT count(*) FROM result WHERE error != ''"),
        0,
        "{out}"
    );
    assert_eq!(
        count_rows(
            &p.db(),
            "SELECT count(*) FROM result WHERE custom_timers LIKE '{\"echo\":%}'"
        ),
        rows
    );
    // Two messages echoed per stored iteration.
    assert_eq!(
        echo.echoed.load(std::sync::atomic::Ordering::SeqCst),
        2 * rows as u64
    );
}

#[test]
fn bad_use_of_a_websocket_is_an_error_result_naming_it() {
    let echo = Echo::start();
    let [closed] = free_ports::<1>();
    let url = format!("ws://127.0.0.1:{}", echo.port);
    let script = format!(
        r#"
local cases = {{
  [0] = function() local c = ws.connect("{url}/echo") c:close() c:receive() end,
  [1] = function() ws.connect("ws://127.0.0.1:{closed}/") end,
  [2] = function() ws.connect("http://127.0.0.1:{closed}/") end,
  [3] = function() local c = ws.connect("{url}/close") c:receive() end,
  [4] = function() local c = ws.connect("{url}/echo") c:send(42) end,
}}
function run(t) cases[oct.canon]() end
"#
    );
    let p = Project::new(config(
        30.0,
        1,
        json!([{"name": "bad", "cannons": 5, "rampup": 0, "iterations": 1, "script": "bad.lua"}]),
    ));
    p.write("bad.lua", &script);
    let (status, out) = p.run_local();
    assert!(status.success(), "{out}");
    let errors = texts(&p.db(), "SELECT error FROM result ORDER BY error");
    assert_eq!(errors.len(), 5, "{errors:?}\n{out}");
    let want = [
        format!("ws {url}/echo: receive on a closed connection"),
        format!("ws.connect ws://127.0.0.1:{closed}/: connecting to 127.0.0.1:{closed}: Connection refused"),
        format!("ws.connect http://127.0.0.1:{closed}/: "),
        format!("ws {url}/close: receive: closed by the server"),
        format!("ws {url}/echo: send: the data must be a string, not number"),
    ];
    for w in want {
        assert!(
            errors.iter().any(|e| e.contains(&w)),
            "no error containing {w:?} in {errors:?}"
        );
    }
}
