//! A small static file server for the lab (`patchlab serve`): the page from
//! `www/`, and optionally a model directory at `/model/`.

use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

pub struct ServeOptions {
    pub www: PathBuf,
    pub model_dir: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    /// Make the page cross-origin isolated (COOP + COEP), so that its worker
    /// may use shared memory and run the threaded engine.
    pub isolate: bool,
}

/// Content type by file extension; wasm must be `application/wasm` for
/// streaming compilation, module scripts must be JavaScript.
pub fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "css" => "text/css; charset=utf-8",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "txt" | "md" => "text/plain; charset=utf-8",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Maps a URL path to a file under `root`, refusing anything that escapes it.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let path = url_path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    let mut out = root.to_path_buf();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.is_dir() {
        out.push("index.html");
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The headers that make a page cross-origin isolated (and so allowed
/// SharedArrayBuffer, which the threaded engine's memory is): the page opens
/// no cross-origin windows into its browsing context group, and loads only
/// resources that agree to it (CORS, as the Hub's files, or a
/// Cross-Origin-Resource-Policy header). A host must send both on the page,
/// its scripts and its worker for the lab to compute on several threads.
/// `patchlab serve` always sends the first; `--no-isolation` leaves out
/// the second.
pub const ISOLATION_HEADERS: [&str; 2] = [
    "Cross-Origin-Opener-Policy: same-origin",
    "Cross-Origin-Embedder-Policy: require-corp",
];

fn respond(
    mut s: &TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    head_only: bool,
    isolate: bool,
) -> std::io::Result<()> {
    // Access-Control-Allow-Origin and Cross-Origin-Resource-Policy: a blog
    // on another origin (isolated itself or not) may load the embed module,
    // reports and model files, as from GitHub Pages
    let [coop, coep] = ISOLATION_HEADERS;
    let coep = if isolate {
        format!("{coep}\r\n")
    } else {
        String::new()
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n{coop}\r\n{coep}Cross-Origin-Resource-Policy: cross-origin\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head_only {
        s.write_all(body)?;
    }
    s.flush()
}

fn handle(stream: TcpStream, opts: &ServeOptions) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    if method != "GET" && method != "HEAD" {
        return respond(
            &stream,
            "405 Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n",
            false,
            opts.isolate,
        );
    }
    let head = method == "HEAD";
    let file = match (target.strip_prefix("/model/"), &opts.model_dir) {
        (Some(rest), Some(dir)) => resolve(dir, rest),
        _ => resolve(&opts.www, target),
    };
    match file.and_then(|f| std::fs::read(&f).ok().map(|b| (f, b))) {
        Some((f, body)) => respond(&stream, "200 OK", mime(&f), &body, head, opts.isolate),
        None => respond(
            &stream,
            "404 Not Found",
            "text/plain",
            b"not found\n",
            head,
            opts.isolate,
        ),
    }
}

/// Serves until the process ends.
pub fn serve(opts: ServeOptions, on_ready: impl FnOnce(u16)) -> Result<()> {
    if !opts.www.join("index.html").exists() {
        return Err(Error::MissingFile {
            path: opts.www.join("index.html").display().to_string(),
            hint: "run patchlab serve from the repository root or pass --www DIR".into(),
        });
    }
    if let Some(d) = &opts.model_dir {
        if !d.join("config.json").exists() {
            return Err(Error::MissingFile {
                path: d.join("config.json").display().to_string(),
                hint: "--model-dir must hold a GPT-2 checkpoint (config.json, model.safetensors, tokenizer.json)".into(),
            });
        }
    }
    let listener = TcpListener::bind((opts.host.as_str(), opts.port)).map_err(|e| {
        Error::Io(format!(
            "cannot listen on {}:{}: {e} (try another --port)",
            opts.host, opts.port
        ))
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::Io(e.to_string()))?
        .port();
    on_ready(port);
    let opts = std::sync::Arc::new(opts);
    for stream in listener.incoming().flatten() {
        let opts = opts.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, &opts);
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_that_escape_the_root() {
        let root = Path::new("/srv/www");
        assert_eq!(resolve(root, "/a/b.js?x=1"), Some(root.join("a/b.js")));
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/%2e%2e/etc/passwd"), None);
        assert_eq!(mime(Path::new("x.wasm")), "application/wasm");
    }

    /// The response headers of `GET /` from a server with `isolate`.
    fn headers_of_served_page(isolate: bool) -> String {
        let www =
            std::env::temp_dir().join(format!("patchlab-serve-{}-{isolate}", std::process::id()));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "<!doctype html>").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let opts = ServeOptions {
            www: www.clone(),
            model_dir: None,
            host: "127.0.0.1".into(),
            port: 0,
            isolate,
        };
        std::thread::spawn(move || serve(opts, |port| tx.send(port).unwrap()));
        let port = rx.recv().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        let _ = std::fs::remove_dir_all(&www);
        answer.split("\r\n\r\n").next().unwrap().to_string()
    }

    #[test]
    fn isolates_the_page_unless_told_not_to() {
        let isolated = headers_of_served_page(true);
        assert!(isolated.starts_with("HTTP/1.1 200 OK"), "{isolated}");
        for h in ISOLATION_HEADERS {
            assert!(isolated.contains(h), "{h} missing from:\n{isolated}");
        }
        // other origins may still load the embed module and the model files
        assert!(isolated.contains("Cross-Origin-Resource-Policy: cross-origin"));
        let plain = headers_of_served_page(false);
        assert!(!plain.contains("Cross-Origin-Embedder-Policy"), "{plain}");
        assert!(plain.contains("Access-Control-Allow-Origin: *"), "{plain}");
    }
}
