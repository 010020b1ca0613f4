//! memcached's text protocol: a command line, a data block after the storage commands (`set`,
//! `add`, `replace`, `append`, `prepend`, `cas`), and the reply each command gets — none with
//! `noreply`, `VALUE` blocks up to `END` for the retrievals, `STAT` lines up to `END` for `stats`,
//! one line otherwise.

use super::{Bad, Reply, Request, Step};

pub fn request(buf: &[u8]) -> Result<Option<Request>, Bad> {
    let Some((line, n)) = super::line(buf) else {
        return Ok(None);
    };
    let words: Vec<&[u8]> = line
        .split(|b| *b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    let Some(first) = words.first() else {
        return Err(Bad("an empty memcached command".into()));
    };
    let method = String::from_utf8_lossy(first).to_ascii_uppercase();
    let noreply = words.last().is_some_and(|w| *w == b"noreply");
    let (len, reply) = match method.as_str() {
        "SET" | "ADD" | "REPLACE" | "APPEND" | "PREPEND" | "CAS" => {
            let bytes = words
                .get(4)
                .ok_or_else(|| Bad(format!("{} without a byte count", method.to_lowercase())))?;
            let bytes = super::number(bytes, "byte count")?;
            let end = n + usize::try_from(bytes).map_err(|_| Bad("bad byte count".into()))? + 2;
            if buf.len() < end {
                return Ok(None);
            }
            (end, Reply::Line)
        }
        "GET" | "GETS" | "GAT" | "GATS" => (n, Reply::Values),
        "STATS" => (n, Reply::Stats),
        "QUIT" => (n, Reply::Nothing),
        _ => (n, Reply::Line),
    };
    Ok(Some(Request {
        len,
        reply: if noreply { Reply::Nothing } else { reply },
        last: method == "QUIT",
        method,
        path: String::new(),
    }))
}

fn is_error(line: &[u8]) -> bool {
    line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR")
}

pub fn reply(r: Reply, buf: &[u8]) -> Result<Step, Bad> {
    let mut at = 0;
    loop {
        let Some((line, n)) = super::line(&buf[at..]) else {
            return Ok(Step::More(0));
        };
        at += n;
        if r == Reply::Line || line == b"END" || is_error(line) {
            return Ok(Step::Done(at));
        }
        if r == Reply::Values {
            // VALUE <key> <flags> <bytes> [<cas>], then the data and its \r\n.
            let bytes = line
                .split(|b| *b == b' ')
                .nth(3)
                .filter(|_| line.starts_with(b"VALUE "))
                .ok_or_else(|| {
                    Bad(format!(
                        "not a VALUE line: {:?}",
                        String::from_utf8_lossy(line)
                    ))
                })?;
            at += usize::try_from(super::number(bytes, "byte count")?)
                .map_err(|_| Bad("bad byte count".into()))?
                + 2;
            if buf.len() < at {
                return Ok(Step::More(at));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_commands_carry_their_data_and_noreply_gets_nothing() {
        let set = b"set k 0 0 5\r\nhello\r\nget k\r\n";
        let r = request(set).unwrap().unwrap();
        assert_eq!(
            (r.len, r.reply, r.method.as_str()),
            (20, Reply::Line, "SET")
        );
        assert_eq!(request(&set[..15]), Ok(None));
        let r = request(b"cas k 0 0 1 77 noreply\r\nx\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((r.len, r.reply), (27, Reply::Nothing));
        let r = request(b"prepend k 0 0 2\r\nab\r\n").unwrap().unwrap();
        assert_eq!(r.len, 21);
        assert_eq!(
            request(b"gets a b\r\n").unwrap().unwrap().reply,
            Reply::Values
        );
        assert_eq!(request(b"stats\r\n").unwrap().unwrap().reply, Reply::Stats);
        assert_eq!(
            request(b"delete k noreply\r\n").unwrap().unwrap().reply,
            Reply::Nothing
        );
        assert!(request(b"quit\r\n").unwrap().unwrap().last);
        assert!(request(b"set k 0 0\r\n").is_err());
    }

    #[test]
    fn replies_values_stats_and_errors() {
        let v = b"VALUE a 0 3\r\nabc\r\nVALUE b 0 2 9\r\nxy\r\nEND\r\nSTORED\r\n";
        assert_eq!(reply(Reply::Values, v), Ok(Step::Done(v.len() - 8)));
        assert!(matches!(reply(Reply::Values, &v[..20]), Ok(Step::More(_))));
        assert_eq!(reply(Reply::Values, b"END\r\n"), Ok(Step::Done(5)));
        assert_eq!(
            reply(Reply::Values, b"SERVER_ERROR busy\r\n"),
            Ok(Step::Done(19))
        );
        assert_eq!(
            reply(Reply::Stats, b"STAT pid 1\r\nSTAT up 2\r\nEND\r\n"),
            Ok(Step::Done(28))
        );
        assert_eq!(reply(Reply::Line, b"STORED\r\nEND\r\n"), Ok(Step::Done(8)));
        assert!(reply(Reply::Values, b"WHAT\r\n").is_err());
    }
}
