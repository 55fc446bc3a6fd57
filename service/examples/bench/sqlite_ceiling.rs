//! SQLite's own ceiling for a durable write, measured with the SQLite that
//! rsvp embeds (the same bundled library, through its C API): single-row
//! inserts into a table with an index on (resource, start), WAL mode,
//! `synchronous = FULL` — one insert per transaction, and sixteen.

use std::{
    ffi::{CStr, CString, c_int},
    path::Path,
    ptr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use libsqlite3_sys as ffi;
use serde_json::{Value, json};

struct Db(*mut ffi::sqlite3);

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: the handle came from sqlite3_open_v2 and is closed once.
        unsafe {
            ffi::sqlite3_close(self.0);
        }
    }
}

impl Db {
    fn open(path: &Path) -> anyhow::Result<Db> {
        let name = CString::new(path.to_str().context("a UTF-8 path")?)?;
        let mut db = ptr::null_mut();
        // SAFETY: valid C string and out-pointer.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                name.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
                ptr::null(),
            )
        };
        let db = Db(db);
        if rc != ffi::SQLITE_OK {
            bail!("cannot open {}: {rc}", path.display());
        }
        Ok(db)
    }

    fn exec(&self, sql: &str) -> anyhow::Result<()> {
        let sql = CString::new(sql)?;
        // SAFETY: open handle, valid C string, no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(self.0, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut())
        };
        self.check(rc)
    }

    fn check(&self, rc: c_int) -> anyhow::Result<()> {
        if rc == ffi::SQLITE_OK || rc == ffi::SQLITE_DONE || rc == ffi::SQLITE_ROW {
            return Ok(());
        }
        // SAFETY: open handle; the message is owned by SQLite.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) };
        bail!("sqlite error {rc}: {}", message.to_string_lossy())
    }
}

/// Inserts for `seconds`, `per_transaction` rows per transaction; rows/s.
fn run(db: &Db, seconds: Duration, per_transaction: usize) -> anyhow::Result<f64> {
    let sql = CString::new(
        "INSERT INTO ceiling (resource_id, start_us, end_us) VALUES (?1, ?2, ?2 + 3600000000)",
    )?;
    let mut stmt = ptr::null_mut();
    // SAFETY: open handle, valid C string, out-pointer.
    db.check(unsafe {
        ffi::sqlite3_prepare_v2(db.0, sql.as_ptr(), -1, &mut stmt, ptr::null_mut())
    })?;
    let started = Instant::now();
    let mut rows: i64 = 0;
    let result = (|| {
        while started.elapsed() < seconds {
            db.exec("BEGIN IMMEDIATE")?;
            for _ in 0..per_transaction {
                rows += 1;
                let resource = CString::new(format!("bench-{}", rows % 100_000))?;
                // SAFETY: prepared statement; SQLITE_TRANSIENT copies the text.
                unsafe {
                    ffi::sqlite3_bind_text(stmt, 1, resource.as_ptr(), -1, ffi::SQLITE_TRANSIENT());
                    ffi::sqlite3_bind_int64(stmt, 2, rows * 3_600_000_000);
                    db.check(ffi::sqlite3_step(stmt))?;
                    ffi::sqlite3_reset(stmt);
                }
            }
            db.exec("COMMIT")?;
        }
        Ok::<_, anyhow::Error>(())
    })();
    // SAFETY: finalizing the statement prepared above, once.
    unsafe {
        ffi::sqlite3_finalize(stmt);
    }
    result?;
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// SQLite's ceiling in `dir`: one insert per transaction, and sixteen.
pub fn measure(dir: &Path, seconds: Duration) -> anyhow::Result<Value> {
    let path = dir.join("ceiling.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let db = Db::open(&path)?;
    db.exec("PRAGMA journal_mode = WAL")?;
    db.exec("PRAGMA synchronous = FULL")?;
    db.exec(
        "CREATE TABLE ceiling (id INTEGER PRIMARY KEY, resource_id TEXT NOT NULL, \
         start_us INTEGER NOT NULL, end_us INTEGER NOT NULL) STRICT",
    )?;
    db.exec("CREATE INDEX ceiling_resource ON ceiling (resource_id, start_us)")?;
    eprintln!("== SQLite ceiling: one insert per transaction, {seconds:?}");
    let one = run(&db, seconds, 1)?;
    eprintln!("   {one:.0} rows/s; sixteen per transaction");
    let sixteen = run(&db, seconds, 16)?;
    eprintln!("   {sixteen:.0} rows/s");
    Ok(json!({
        "one_per_transaction_per_s": one,
        "sixteen_per_transaction_per_s": sixteen,
    }))
}
