//! Feeders: the rows of a turret's CSV test data, handed to its canons (`oct.data.NAME:next()`
//! in Lua) by the feeder's mode. A test gets fresh cursors; the tables are read once, when the
//! turret's config is.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use protocol::data::{DataSpec, Exhausted, Mode, Table};

/// One feeder of one test.
pub struct Feeder {
    spec: DataSpec,
    table: Arc<Table>,
    cursor: AtomicUsize,
    /// This turret's part of a `unique` feeder: rows `first`, `first + step`, …
    first: usize,
    step: usize,
    /// Set when a `stop` feeder ran out: every canon stops after its iteration.
    stop: Arc<AtomicBool>,
}

/// The feeders of a test, by name.
#[derive(Default)]
pub struct Feeders {
    list: Vec<Arc<Feeder>>,
    /// A `stop` feeder ran out.
    pub stop: Arc<AtomicBool>,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(
        0x9e37_79b9_7f4a_7c15 ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64))
    );
}

fn random_below(n: usize) -> usize {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        (x % n as u64) as usize
    })
}

impl std::fmt::Debug for Feeders {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|d| d.name()))
            .finish()
    }
}

impl Feeders {
    /// Fresh feeders over `tables` for turret `index` of `count`.
    pub fn new(tables: &[(DataSpec, Arc<Table>)], index: usize, count: usize) -> Feeders {
        let stop = Arc::new(AtomicBool::new(false));
        let list = tables
            .iter()
            .map(|(spec, table)| {
                let (first, step) = match spec.mode {
                    Mode::Unique => (index, count.max(1)),
                    _ => (0, 1),
                };
                Arc::new(Feeder {
                    spec: spec.clone(),
                    table: Arc::clone(table),
                    cursor: AtomicUsize::new(0),
                    first,
                    step,
                    stop: Arc::clone(&stop),
                })
            })
            .collect();
        Feeders { list, stop }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Feeder>> {
        self.list.iter()
    }
}

impl Feeder {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn fields(&self) -> &[String] {
        &self.table.fields
    }

    /// The next row for a canon, or `None` once a `stop` feeder has run out (then every canon
    /// stops after its iteration).
    pub fn next(&self) -> Option<&[String]> {
        let rows = &self.table.rows;
        if self.spec.mode == Mode::Random {
            return Some(&rows[random_below(rows.len())]);
        }
        // This turret's part: every `step`th row from `first`.
        let part = (rows.len().saturating_sub(self.first)).div_ceil(self.step);
        if part == 0 {
            self.stop
                .store(self.spec.on_exhausted == Exhausted::Stop, Ordering::Relaxed);
            return None;
        }
        let i = self.cursor.fetch_add(1, Ordering::Relaxed);
        let i = match self.spec.on_exhausted {
            Exhausted::Recycle => i % part,
            Exhausted::Stop if i < part => i,
            Exhausted::Stop => {
                self.stop.store(true, Ordering::Relaxed);
                return None;
            }
        };
        Some(&rows[self.first + i * self.step])
    }
}

/// `oct.data`: a table of the test's feeders by name, each with a `next()` method that returns
/// a row as a table of its fields (or nil once a `stop` feeder has run out).
pub fn lua_table(lua: &mlua::Lua, feeders: &Feeders) -> mlua::Result<mlua::Table> {
    let t = lua.create_table()?;
    for f in feeders.iter() {
        t.set(f.name(), lua.create_userdata(Handle(Arc::clone(f)))?)?;
    }
    Ok(t)
}

struct Handle(Arc<Feeder>);

impl mlua::UserData for Handle {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("next", |lua, this, ()| match this.0.next() {
            None => Ok(mlua::Value::Nil),
            Some(row) => {
                let t = lua.create_table_with_capacity(0, row.len())?;
                for (field, value) in this.0.fields().iter().zip(row) {
                    t.set(field.as_str(), value.as_str())?;
                }
                Ok(mlua::Value::Table(t))
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize) -> Arc<Table> {
        Arc::new(Table {
            fields: vec!["n".into()],
            rows: (0..n).map(|i| vec![i.to_string()]).collect(),
        })
    }

    fn spec(mode: Mode, on_exhausted: Exhausted) -> DataSpec {
        DataSpec {
            name: "d".into(),
            file: "d.csv".into(),
            mode,
            on_exhausted,
        }
    }

    fn take(f: &Feeders, n: usize) -> Vec<Option<String>> {
        let feeder = f.iter().next().unwrap();
        (0..n)
            .map(|_| feeder.next().map(|r| r[0].clone()))
            .collect()
    }

    #[test]
    fn unique_rows_are_split_between_turrets_and_stop_when_out() {
        let tables = [(spec(Mode::Unique, Exhausted::Stop), table(5))];
        let a = Feeders::new(&tables, 0, 2);
        let b = Feeders::new(&tables, 1, 2);
        let s = |v: &[&str]| {
            v.iter()
                .map(|x| Some(x.to_string()))
                .chain([None])
                .collect::<Vec<_>>()
        };
        assert_eq!(take(&a, 4), s(&["0", "2", "4"]));
        assert_eq!(take(&b, 3), s(&["1", "3"]));
        assert!(a.stop.load(Ordering::Relaxed) && b.stop.load(Ordering::Relaxed));
    }

    #[test]
    fn sequential_recycles_and_random_stays_in_range() {
        let f = Feeders::new(
            &[(spec(Mode::Sequential, Exhausted::Recycle), table(2))],
            0,
            3,
        );
        let got: Vec<Option<String>> = take(&f, 5);
        assert_eq!(got, ["0", "1", "0", "1", "0"].map(|x| Some(x.to_string())));
        let r = Feeders::new(&[(spec(Mode::Random, Exhausted::Stop), table(3))], 0, 1);
        assert!(take(&r, 50)
            .iter()
            .all(|x| x.as_deref().is_some_and(|v| v < "3")));
        assert!(!r.stop.load(Ordering::Relaxed));
    }
}
