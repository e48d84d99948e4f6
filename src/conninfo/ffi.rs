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
    pick: impl FnMut(String, Option<String>) -> Option<T>,
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
    // SAFETY: `options` came from PQconninfoParse; it is read and freed
    // once, by `collect`.
    unsafe { collect(options, pick) }
}

/// The `(keyword, value)` pairs `pick` takes from a libpq option array,
/// which it frees.
///
/// # Safety
/// `options` is a non-null array from libpq, terminated by an entry whose
/// keyword is NULL, that nothing else frees.
unsafe fn collect<T>(
    options: *mut pq_sys::PQconninfoOption,
    mut pick: impl FnMut(String, Option<String>) -> Option<T>,
) -> Result<Vec<T>, String> {
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
    // SAFETY: guaranteed by the caller: freed here, once.
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

/// Every option libpq would connect with for `raw`, once it has filled in
/// what the string leaves out (`PG*` variables, a service file, the user
/// name, the default socket directory): what `PQconninfo` reports of a
/// connection started with `PQconnectStart` and closed at once (libpq has
/// no call that settles them without starting one: it looks the host up
/// and begins to connect, but sends nothing). `None` when libpq could not
/// settle them.
pub(super) fn settled(raw: &str) -> Option<Vec<(String, String)>> {
    let c = CString::new(raw).ok()?;
    // SAFETY: `c` is NUL-terminated and lives across the call.
    let conn = unsafe { pq_sys::PQconnectStart(c.as_ptr()) };
    if conn.is_null() {
        return None;
    }
    // SAFETY: `conn` is a live PGconn; PQconninfo returns NULL or an
    // array the caller owns, which `collect` frees.
    let options = unsafe { pq_sys::PQconninfo(conn) };
    let mut settled = if options.is_null() {
        None
    } else {
        // SAFETY: a non-null array from PQconninfo, freed only by `collect`.
        unsafe { collect(options, |keyword, value| value.map(|v| (keyword, v))) }.ok()
    };
    // Without a host, libpq connects to its default socket directory, which
    // it keeps as the connection's host rather than as an option.
    // SAFETY: `conn` is live; PQhost returns NULL or a string the PGconn
    // owns, copied before PQfinish frees it.
    let host = unsafe {
        let host = pq_sys::PQhost(conn);
        (!host.is_null()).then(|| owned(host).ok()).flatten()
    };
    if let (Some(options), Some(host)) = (settled.as_mut(), host.filter(|h| !h.is_empty()))
        && !options.iter().any(|(k, v)| k == "host" && !v.is_empty())
    {
        options.retain(|(k, _)| k != "host");
        options.push(("host".to_owned(), host));
    }
    // SAFETY: `conn` came from PQconnectStart and is finished once.
    unsafe { pq_sys::PQfinish(conn) };
    settled
}
