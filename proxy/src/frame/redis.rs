//! RESP: commands as arrays of bulk strings or inline lines; replies as any RESP2 or RESP3 value,
//! arrays and maps nested to any depth (Vaurien could not relay a multi-bulk reply).

use super::{Bad, Reply, Request, Step};

/// The value starting at `at`: where it ends.
pub fn value(buf: &[u8], at: usize) -> Result<Step, Bad> {
    let mut at = at;
    // Values still to read at each open aggregate: a stack instead of recursion.
    let mut pending: Vec<i64> = Vec::new();
    loop {
        let Some((line, n)) = super::line(&buf[at..]) else {
            return Ok(Step::More(0));
        };
        let Some((&kind, rest)) = line.split_first() else {
            return Err(Bad("an empty RESP line".into()));
        };
        at += n;
        let mut children = 0i64;
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
            b'$' | b'!' | b'=' => {
                let len = super::number(rest, "RESP length")?;
                if len >= 0 {
                    at += len as usize + 2;
                    if buf.len() < at {
                        return Ok(Step::More(at));
                    }
                }
            }
            b'*' | b'~' | b'>' => children = super::number(rest, "RESP length")?.max(0),
            b'%' | b'|' => children = 2 * super::number(rest, "RESP length")?.max(0),
            other => {
                return Err(Bad(format!(
                    "not a RESP value: {:?}",
                    String::from_utf8_lossy(&[other])
                )))
            }
        }
        // An attribute (`|`) is followed by the value it annotates.
        if kind == b'|' {
            children += 1;
        }
        if children > 0 {
            pending.push(children);
            continue;
        }
        // One value done: it completes its parents as far as they go.
        loop {
            match pending.last_mut() {
                None => return Ok(Step::Done(at)),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    pending.pop();
                }
            }
        }
    }
}

pub fn request(buf: &[u8]) -> Result<Option<Request>, Bad> {
    if buf.is_empty() {
        return Ok(None);
    }
    let (len, method) = if buf[0] == b'*' {
        match value(buf, 0)? {
            Step::Done(len) => {
                // The command's name: the first bulk string.
                let first = super::line(buf).map_or(0, |(_, n)| n);
                let name = super::line(&buf[first..])
                    .and_then(|(_, n)| super::line(&buf[first + n..]))
                    .map(|(l, _)| l.to_ascii_uppercase())
                    .unwrap_or_default();
                (len, name)
            }
            _ => return Ok(None),
        }
    } else {
        // An inline command: one line, words split on spaces.
        let Some((line, n)) = super::line(buf) else {
            return Ok(None);
        };
        let word = line.split(|b| *b == b' ').next().unwrap_or(b"");
        (n, word.to_ascii_uppercase())
    };
    let method = String::from_utf8_lossy(&method).into_owned();
    Ok(Some(Request {
        len,
        last: method == "QUIT",
        method,
        path: String::new(),
        reply: Reply::Resp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_inline_and_as_arrays() {
        let set = b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$5\r\nhello\r\n*1\r\n";
        let r = request(set).unwrap().unwrap();
        assert_eq!((r.len, r.method.as_str()), (set.len() - 4, "SET"));
        assert_eq!(request(&set[..20]), Ok(None));
        let r = request(b"PING\r\nPING\r\n").unwrap().unwrap();
        assert_eq!((r.len, r.method.as_str()), (6, "PING"));
        assert_eq!(request(b"PIN"), Ok(None));
        assert!(request(b"QUIT\r\n").unwrap().unwrap().last);
    }

    #[test]
    fn replies_nested_null_and_resp3() {
        for (reply, len) in [
            (&b"+OK\r\n"[..], 5),
            (b"-ERR x\r\n", 8),
            (b":12\r\n", 5),
            (b"$-1\r\n", 5),
            (b"$5\r\nhello\r\n", 11),
            (b"*-1\r\n", 5),
            (b"*0\r\n", 4),
            (b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n", 24),
            (b"%1\r\n+k\r\n*1\r\n+v\r\n", 16),
            (b"|1\r\n+a\r\n:1\r\n+v\r\n", 16),
            (b"_\r\n", 3),
        ] {
            let mut m = reply.to_vec();
            m.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(
                value(&m, 0),
                Ok(Step::Done(len)),
                "{:?}",
                String::from_utf8_lossy(reply)
            );
            for cut in 1..len {
                assert!(
                    matches!(value(&m[..cut], 0), Ok(Step::More(_))),
                    "{cut} of {reply:?}"
                );
            }
        }
        assert!(value(b"?x\r\n", 0).is_err());
    }
}
