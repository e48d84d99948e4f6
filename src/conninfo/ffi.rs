#![expect(
    unsafe_code,
    reason = "PQconninfoParse is libpq's own connection-string parser; \
              calling it is the only way to read a string exactly as libpq does"
)]

use super::{CStr, CString, c_char};

/// Copies a C string libpq owns.
///
/// # Safety
/// `ptr` is a valid NUL-terminated string that outlives the call.
unsafe fn owned(ptr: *const c_char) -> Result<String, String> {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    String::from_utf8(bytes.to_vec())
        .map_err(|_| "a value is not valid UTF-8 once percent-decoded".to_owned())
}

/// Every keyword libpq knows, in its own order.
pub(super) fn keywords() -> Vec<String> {
    let Ok(empty) = CString::new("") else {
        return Vec::new();
    };
    walk(&empty, |keyword, _| Some(keyword)).unwrap_or_default()
}

/// The `(keyword, value)` pairs libpq reads from `raw`, or libpq's error
/// message with every quoted fragment that is not a keyword left out
/// (a fragment may be part of a password).
pub(super) fn parse(raw: &str) -> Result<Vec<(String, String)>, String> {
    let c = CString::new(raw).map_err(|_| "the connection string holds a NUL byte".to_owned())?;
    walk(&c, |keyword, value| value.map(|v| (keyword, v)))
}

fn walk<T>(
    conninfo: &CString,
    mut pick: impl FnMut(String, Option<String>) -> Option<T>,
) -> Result<Vec<T>, String> {
    let mut errmsg: *mut c_char = std::ptr::null_mut();
    // SAFETY: `conninfo` is NUL-terminated and lives across the call;
    // `errmsg` is a valid out-pointer.
    let options = unsafe { pq_sys::PQconninfoParse(conninfo.as_ptr(), &mut errmsg) };
    if options.is_null() {
        let message = if errmsg.is_null() {
            "libpq could not parse it (out of memory)".to_owned()
        } else {
            // SAFETY: libpq returned a NUL-terminated message that we
            // own and free right after copying it.
            let text = unsafe { owned(errmsg) }.unwrap_or_default();
            unsafe { pq_sys::PQfreemem(errmsg.cast()) };
            text
        };
        return Err(sanitize(message.trim()));
    }
    let mut out = Vec::new();
    let mut failure = None;
    let mut option = options;
    loop {
        // SAFETY: libpq returns an array terminated by an entry whose
        // keyword is NULL; `option` never passes that entry.
        let entry = unsafe { &*option };
        if entry.keyword.is_null() {
            break;
        }
        // SAFETY: keyword and (when not NULL) val are NUL-terminated
        // strings owned by the array, alive until PQconninfoFree.
        let keyword = unsafe { owned(entry.keyword) };
        let value = (!entry.val.is_null()).then(|| unsafe { owned(entry.val) });
        match (keyword, value.transpose()) {
            (Ok(keyword), Ok(value)) => {
                if let Some(item) = pick(keyword, value) {
                    out.push(item);
                }
            }
            (Err(e), _) | (_, Err(e)) => failure = Some(e),
        }
        // SAFETY: the terminating entry has not been reached, so the
        // next entry is inside the array.
        option = unsafe { option.add(1) };
    }
    // SAFETY: `options` came from PQconninfoParse and is freed once.
    unsafe { pq_sys::PQconninfoFree(options) };
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// libpq's message with each double-quoted fragment replaced by `"…"`
/// unless it is a connection keyword or `=`.
fn sanitize(message: &str) -> String {
    let known = keywords();
    message
        .split('"')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 0 || part == "=" || known.iter().any(|k| k == part) {
                part.to_owned()
            } else {
                "…".to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\"")
}

/// The database name libpq would ask the server for with `raw`, after it
/// has filled in what the string leaves out (a service file, `PGDATABASE`,
/// the user name as the default). libpq has no call that resolves the
/// options without starting a connection, so this starts one
/// (`PQconnectStart`, which returns before the server is contacted, though
/// a host name may be looked up), reads `PQdb` and closes it at once.
/// `None` when libpq could not settle the options (a missing service).
pub(super) fn requested_database(raw: &str) -> Option<String> {
    let c = CString::new(raw).ok()?;
    // SAFETY: `c` is NUL-terminated and lives across the call.
    let conn = unsafe { pq_sys::PQconnectStart(c.as_ptr()) };
    if conn.is_null() {
        return None;
    }
    // SAFETY: `conn` is a live PGconn; PQdb returns NULL or a string the
    // PGconn owns, copied before PQfinish frees it.
    let name = unsafe {
        let db = pq_sys::PQdb(conn);
        (!db.is_null()).then(|| owned(db).ok()).flatten()
    };
    // SAFETY: `conn` came from PQconnectStart and is finished once.
    unsafe { pq_sys::PQfinish(conn) };
    name.filter(|n| !n.is_empty())
}
