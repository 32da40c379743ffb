//! `slipway lsp` spoken to over its standard input and output, as an editor
//! does: JSON-RPC messages with `Content-Length` headers. Every wait has a
//! timeout, so a server that hangs fails the test instead of stalling it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A language client: the server process and the messages it sends.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    messages: Receiver<Value>,
    /// Notifications received while waiting for something else.
    pending: Vec<Value>,
    next_id: i64,
}

impl Client {
    /// Starts `slipway lsp` in `dir` and completes the handshake.
    fn start(dir: &Path) -> Client {
        Client::start_logged(dir, None)
    }

    /// [`Client::start`], with the server's timing log (`SLIPWAY_LSP_TIMING`)
    /// written to `log`.
    fn start_logged(dir: &Path, log: Option<&Path>) -> Client {
        let mut client = Client::spawn_logged(dir, log);
        let root = uri(dir);
        let init = client.request(
            "initialize",
            json!({ "processId": null, "rootUri": root, "capabilities": {} }),
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "slipway", "{init}");
        let caps = &init["result"]["capabilities"];
        for cap in [
            "completionProvider",
            "hoverProvider",
            "definitionProvider",
            "referencesProvider",
            "documentSymbolProvider",
            "documentFormattingProvider",
            "renameProvider",
        ] {
            assert!(!caps[cap].is_null(), "no `{cap}` in {caps}");
        }
        client.notify("initialized", json!({}));
        client
    }

    fn spawn_logged(dir: &Path, log: Option<&Path>) -> Client {
        let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
        command
            .arg("lsp")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(log) = log {
            command
                .env("SLIPWAY_LSP_TIMING", "1")
                .stderr(std::fs::File::create(log).expect("log file"));
        }
        let mut child = command.spawn().expect("start slipway lsp");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            while let Some(msg) = read_message(&mut r) {
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        Client {
            stdin: child.stdin.take(),
            child,
            messages: rx,
            pending: Vec::new(),
            next_id: 0,
        }
    }

    fn send(&mut self, msg: &Value) {
        let body = msg.to_string();
        let stdin = self.stdin.as_mut().expect("stdin open");
        write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write to the server");
        stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and returns the whole response (`result` or `error`).
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = self.next(deadline, method);
            if msg["id"] == id {
                return msg;
            }
            self.pending.push(msg);
        }
    }

    /// A request whose answer must be a result.
    fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params);
        assert!(response["error"].is_null(), "`{method}` failed: {response}");
        response["result"].clone()
    }

    fn next(&mut self, deadline: Instant, waiting_for: &str) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(left) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => panic!("no answer to `{waiting_for}` in {TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the server closed its output while `{waiting_for}` was awaited")
            }
        }
    }

    /// The next diagnostics published for `uri` that satisfy `ok`.
    fn diagnostics_where(&mut self, uri: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let matches = |m: &Value| {
            m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = match self.pending.iter().position(matches) {
                Some(i) => self.pending.remove(i),
                None => self.next(deadline, "publishDiagnostics"),
            };
            if !matches(&msg) {
                self.pending.push(msg);
                continue;
            }
            let list = msg["params"]["diagnostics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if ok(&list) {
                return list;
            }
        }
    }

    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        self.diagnostics_where(uri, |_| true)
    }

    fn open(&mut self, path: &Path, text: &str) -> String {
        let uri = uri(path);
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": {
                "uri": uri, "languageId": "pipeline", "version": 1, "text": text
            }}),
        );
        uri
    }

    fn change(&mut self, uri: &str, version: i64, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri, "version": version },
                "contentChanges": [{ "text": text }]
            }),
        );
    }

    /// Shuts down and exits; returns the exit status.
    fn shutdown(mut self) -> Option<i32> {
        let response = self.request("shutdown", Value::Null);
        assert!(response["error"].is_null(), "{response}");
        self.notify("exit", Value::Null);
        self.wait()
    }

    fn wait(&mut self) -> Option<i32> {
        self.stdin.take();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_message(r: &mut impl BufRead) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length:") {
            length = v.trim().parse().ok();
        }
    }
    let mut body = vec![0; length?];
    r.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The 0-based line and UTF-16 column of the `nth` byte of `text`.
fn pos(text: &str, byte: usize) -> Value {
    let line = text[..byte].matches('\n').count();
    let start = text[..byte].rfind('\n').map_or(0, |i| i + 1);
    let character = text[start..byte].encode_utf16().count();
    json!({ "line": line, "character": character })
}

/// The position `offset` bytes into the first `needle` in `text`.
fn at(text: &str, needle: &str, offset: usize) -> Value {
    let i = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in the text"));
    pos(text, i + offset)
}

fn doc_pos(uri: &str, position: Value) -> Value {
    json!({ "textDocument": { "uri": uri }, "position": position })
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write");
    path
}

fn codes(diags: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = diags
        .iter()
        .map(|d| d["code"].as_str().unwrap_or("").to_string())
        .collect();
    out.sort();
    out
}

/// A pipeline with four problems: an unknown stage, a cycle, an unused
/// template, and an undefined variable after an emoji (where UTF-16
/// columns differ from characters).
const BROKEN: &str = r#"pipeline "broken"

template unused {
  image "local/busybox"
}

stage install {
  image "local/busybox"
  run "true"
}

stage lint after instal {
  image "local/busybox"
  run "true"
}

stage a after b {
  image "local/busybox"
  run "true"
}

stage b after a {
  image "local/busybox"
  run "true"
}

stage e {
  image "😀-${NOPE}"
  run "x"
}
"#;

#[test]
fn diagnostics_are_those_of_check_with_utf16_ranges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "broken.pipeline", BROKEN);
    let mut client = Client::start(dir.path());
    let uri = client.open(&path, BROKEN);
    let diags = client.diagnostics(&uri);

    // The same diagnostics as `slipway check`, in the same order.
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["check", "--diagnostics", "json", "broken.pipeline"])
        .current_dir(dir.path())
        .output()
        .expect("check runs");
    let expected: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(diags.len(), expected.len(), "{diags:#?}\n{expected:#?}");
    for (got, want) in diags.iter().zip(&expected) {
        assert_eq!(got["code"], want["code"]);
        let mut message = want["message"].as_str().unwrap_or("").to_string();
        if let Some(help) = want["help"].as_str() {
            message = format!("{message}\nhelp: {help}");
        }
        assert_eq!(got["message"], message.as_str());
        assert_eq!(
            got["range"]["start"]["line"],
            want["line"].as_u64().unwrap_or(0) - 1
        );
        assert_eq!(
            got["severity"],
            if want["severity"] == "error" { 1 } else { 2 }
        );
        assert_eq!(got["source"], "slipway");
        let href = got["codeDescription"]["href"].as_str().unwrap_or("");
        assert!(
            href.ends_with(&format!(
                "diagnostics.md#{}",
                want["code"].as_str().unwrap_or("").replace("::", "")
            )),
            "{href}"
        );
    }
    assert_eq!(
        codes(&diags),
        [
            "slipway::cycle",
            "slipway::undefined-variable",
            "slipway::unknown-stage",
            "slipway::unused-template"
        ]
    );
    let undefined = diags
        .iter()
        .find(|d| d["code"] == "slipway::undefined-variable")
        .expect("an undefined variable");
    let start = BROKEN.find("${NOPE}").expect("NOPE");
    assert_eq!(
        undefined["range"],
        json!({ "start": pos(BROKEN, start), "end": pos(BROKEN, start + 7) })
    );
    // The emoji is one character but two UTF-16 units.
    assert_eq!(undefined["range"]["start"]["character"], 12);

    let unknown = diags
        .iter()
        .find(|d| d["code"] == "slipway::unknown-stage")
        .expect("an unknown stage");
    let start = BROKEN.find("instal {").expect("instal");
    assert_eq!(
        unknown["range"],
        json!({ "start": pos(BROKEN, start), "end": pos(BROKEN, start + 6) })
    );
    assert!(
        unknown["message"]
            .as_str()
            .is_some_and(|m| m.contains("did you mean `install`?")),
        "{unknown}"
    );

    // The cycle points at both `after`s: one is the diagnostic's place, the
    // other its related information.
    let cycle = diags
        .iter()
        .find(|d| d["code"] == "slipway::cycle")
        .expect("a cycle");
    let related = cycle["relatedInformation"]
        .as_array()
        .expect("related places");
    assert_eq!(related.len(), 1, "{cycle}");
    assert_eq!(related[0]["location"]["uri"], uri.as_str());
    let a_after_b = pos(BROKEN, BROKEN.find("stage a after b").expect("a") + 14);
    let b_after_a = pos(BROKEN, BROKEN.find("stage b after a").expect("b") + 14);
    let mut places = [
        cycle["range"]["start"].clone(),
        related[0]["location"]["range"]["start"].clone(),
    ];
    places.sort_by_key(|p| p["line"].as_u64());
    assert_eq!(places, [a_after_b, b_after_a]);
    assert!(
        ["`a` runs after `b`", "`b` runs after `a`"]
            .contains(&related[0]["message"].as_str().unwrap_or("")),
        "{cycle}"
    );

    // Fixing the text in the buffer, unsaved, clears the diagnostics.
    let fixed = BROKEN
        .replace("after instal", "after install")
        .replace("stage a after b", "stage a")
        .replace("${NOPE}", "x")
        .replace("template unused {\n  image \"local/busybox\"\n}\n", "");
    client.change(&uri, 2, &fixed);
    let diags = client.diagnostics(&uri);
    assert!(diags.is_empty(), "{diags:#?}");
    assert_eq!(client.shutdown(), Some(0));
}

const MAIN: &str = r#"pipeline "main"

include "ci/common.pipeline"

stage test after build uses box {
  run "make test"
}

stage deploy after test when branch == "main" {
  manual "Deploy ${IMAGE} to ${environment}?"
}
"#;

const COMMON: &str = r#"env {
  IMAGE = "registry/app:${git.short_sha}"
}

template box {
  image "local/busybox"
}

stage build uses box {
  run "make"
}
"#;

/// A main file and the file it includes, in a temporary folder.
fn project() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = write(dir.path(), "main.pipeline", MAIN);
    let common = write(dir.path(), "ci/common.pipeline", COMMON);
    (dir, main, common)
}

#[test]
fn diagnostics_of_an_included_file_go_to_its_uri_and_follow_its_buffer() {
    let (dir, main, common) = project();
    let mut client = Client::start(dir.path());
    let main_uri = client.open(&main, MAIN);
    let common_uri = uri(&common);
    assert_eq!(client.diagnostics(&main_uri), Vec::<Value>::new());
    assert_eq!(client.diagnostics(&common_uri), Vec::<Value>::new());

    // An error in the included file's unsaved buffer is reported there,
    // by the pipeline that includes it.
    client.open(&common, COMMON);
    let broken = COMMON.replace("template box", "template boxes");
    client.change(&common_uri, 2, &broken);
    let in_common = client.diagnostics_where(&common_uri, |d| !d.is_empty());
    // Its own stage `uses box` too.
    assert_eq!(
        codes(&in_common),
        ["slipway::unknown-template", "slipway::unused-template"]
    );
    let in_main = client.diagnostics_where(&main_uri, |d| !d.is_empty());
    assert_eq!(
        codes(&in_main),
        ["slipway::unknown-template"],
        "{in_main:#?}"
    );
    assert!(
        in_main[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did you mean `boxes`?")),
        "{in_main:#?}"
    );
    assert_eq!(client.shutdown(), Some(0));
}

#[test]
fn definition_and_references_cross_includes() {
    let (dir, main, common) = project();
    let mut client = Client::start(dir.path());
    let main_uri = client.open(&main, MAIN);
    let common_uri = uri(&common);

    // `after build` → `stage build` in the included file.
    let def = client.result(
        "textDocument/definition",
        doc_pos(&main_uri, at(MAIN, "after build", 8)),
    );
    let build = COMMON.find("stage build").expect("build") + 6;
    assert_eq!(
        def,
        json!([{ "uri": common_uri, "range": { "start": pos(COMMON, build), "end": pos(COMMON, build + 5) } }])
    );
    // `uses box` → the template.
    let def = client.result(
        "textDocument/definition",
        doc_pos(&main_uri, at(MAIN, "uses box", 5)),
    );
    assert_eq!(def[0]["uri"], common_uri.as_str());
    assert_eq!(def[0]["range"]["start"], at(COMMON, "box {", 0));
    // The include path → the included file.
    let def = client.result(
        "textDocument/definition",
        doc_pos(&main_uri, at(MAIN, "ci/common", 3)),
    );
    assert_eq!(def[0]["uri"], common_uri.as_str());

    // Opened on its own, the included file is still part of `main`: its
    // stage's references include the `after` in `main.pipeline`.
    let mut client = Client::start(dir.path());
    client.open(&common, COMMON);
    let refs = client.result(
        "textDocument/references",
        json!({
            "textDocument": { "uri": common_uri },
            "position": at(COMMON, "stage build", 7),
            "context": { "includeDeclaration": true }
        }),
    );
    let places: Vec<(String, Value)> = refs
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| {
            (
                l["uri"].as_str().unwrap_or("").to_string(),
                l["range"]["start"].clone(),
            )
        })
        .collect();
    assert_eq!(
        places,
        [
            (common_uri.clone(), at(COMMON, "build uses", 0)),
            (main_uri.clone(), at(MAIN, "build uses", 0)),
        ]
    );
    // No diagnostics for it: `main.pipeline` defines what it lacks.
    assert_eq!(client.diagnostics(&common_uri), Vec::<Value>::new());
    assert_eq!(client.shutdown(), Some(0));
}

#[test]
fn completion_offers_names_by_context() {
    let (dir, main, _) = project();
    let mut client = Client::start(dir.path());
    let text = format!("{MAIN}\nstage smoke after \n");
    let uri = client.open(&main, &text);
    let labels = |v: &Value| -> Vec<String> {
        v.as_array()
            .or_else(|| v["items"].as_array())
            .expect("completion items")
            .iter()
            .map(|i| i["label"].as_str().unwrap_or("").to_string())
            .collect()
    };
    // After `after `: every stage but the one being written.
    let after = client.result(
        "textDocument/completion",
        doc_pos(&uri, at(&text, "smoke after ", 12)),
    );
    // The included file's stages come where it is included.
    assert_eq!(labels(&after), ["build", "test", "deploy"]);
    // After `, `: the ones not listed yet.
    let text2 = text.replace("smoke after ", "smoke after test, ");
    client.change(&uri, 2, &text2);
    let next = client.result(
        "textDocument/completion",
        doc_pos(&uri, at(&text2, "smoke after test, ", 18)),
    );
    assert_eq!(labels(&next), ["build", "deploy"]);
    // After `uses`: templates.
    let uses = client.result(
        "textDocument/completion",
        doc_pos(&uri, at(&text2, "uses box", 5)),
    );
    assert_eq!(labels(&uses), ["box"]);
    // Inside `${`: env names, `environment`, git values.
    let interp = client.result(
        "textDocument/completion",
        doc_pos(&uri, at(&text2, "${IMAGE}", 2)),
    );
    let names = labels(&interp);
    for want in [
        "IMAGE",
        "environment",
        "git.sha",
        "git.short_sha",
        "git.branch",
        "git.tag",
    ] {
        assert!(names.iter().any(|n| n == want), "no `{want}` in {names:?}");
    }
    // At the start of a line in a stage: the stage's settings.
    let kw = client.result(
        "textDocument/completion",
        doc_pos(&uri, at(&text2, "  run \"make test\"", 2)),
    );
    let kw = labels(&kw);
    for want in ["image", "run", "matrix", "retry", "allow-failure"] {
        assert!(kw.iter().any(|n| n == want), "no `{want}` in {kw:?}");
    }
    assert!(!kw.iter().any(|n| n == "pipeline"), "{kw:?}");
    // At the top level: the top-level keywords.
    let top = client.result(
        "textDocument/completion",
        doc_pos(&uri, at(&text2, "stage test", 0)),
    );
    let top = labels(&top);
    for want in ["stage", "template", "env", "include", "finally"] {
        assert!(top.iter().any(|n| n == want), "no `{want}` in {top:?}");
    }
    assert_eq!(client.shutdown(), Some(0));
}

#[test]
fn hover_describes_a_stage() {
    let (dir, main, _) = project();
    let mut client = Client::start(dir.path());
    let uri = client.open(&main, MAIN);
    let hover = client.result(
        "textDocument/hover",
        doc_pos(&uri, at(MAIN, "stage test", 7)),
    );
    let text = hover["contents"]["value"].as_str().unwrap_or("");
    assert_eq!(hover["contents"]["kind"], "markdown");
    assert!(text.contains("**stage** `test`"), "{text}");
    assert!(
        text.contains("image: `local/busybox` (from template `box`)"),
        "{text}"
    );
    assert!(text.contains("after: `build`"), "{text}");
    assert!(text.contains("uses: template `box`"), "{text}");
    // On a reference, with the condition.
    let hover = client.result(
        "textDocument/hover",
        doc_pos(&uri, at(MAIN, "stage deploy", 8)),
    );
    let text = hover["contents"]["value"].as_str().unwrap_or("");
    assert!(text.contains("when: `branch == \"main\"`"), "{text}");
    assert!(text.contains("image: none"), "{text}");
    // Nothing to say elsewhere.
    let none = client.result(
        "textDocument/hover",
        doc_pos(&uri, at(MAIN, "make test", 0)),
    );
    assert!(none.is_null(), "{none}");
    assert_eq!(client.shutdown(), Some(0));
}

#[test]
fn document_symbols_list_stages_templates_and_environments() {
    let (dir, _, common) = project();
    let text = format!(
        "{COMMON}\nenvironment prod {{ env {{ X = \"1\" }} }}\n\nfinally notify {{\n  image \"a\"\n  run \"b\"\n}}\n"
    );
    write(dir.path(), "ci/common.pipeline", &text);
    let mut client = Client::start(dir.path());
    let uri = client.open(&common, &text);
    let symbols = client.result(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri } }),
    );
    let got: Vec<(String, u64)> = symbols
        .as_array()
        .expect("symbols")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["kind"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // Class, function, namespace, event.
    assert_eq!(
        got,
        [
            ("box".to_string(), 5),
            ("build".to_string(), 12),
            ("prod".to_string(), 3),
            ("notify".to_string(), 24)
        ]
    );
    assert_eq!(
        symbols[1]["selectionRange"]["start"],
        at(&text, "build uses", 0)
    );
    assert_eq!(symbols[1]["range"]["start"], at(&text, "stage build", 0));
    assert_eq!(client.shutdown(), Some(0));
}

#[test]
fn formatting_is_fmt_in_one_edit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let messy = "stage   a {\nimage \"x\"\n      run \"y\"\n}\n";
    let path = write(dir.path(), "a.pipeline", messy);
    let mut client = Client::start(dir.path());
    let uri = client.open(&path, messy);
    let params = json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } });
    let edits = client.result("textDocument/formatting", params.clone());
    let fmt = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["fmt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(messy.as_bytes())?;
            c.wait_with_output()
        })
        .expect("fmt runs");
    assert_eq!(
        edits,
        json!([{
            "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 4, "character": 0 } },
            "newText": String::from_utf8_lossy(&fmt.stdout)
        }])
    );
    // Formatted already: nothing to change. Broken: left alone.
    client.change(&uri, 2, &String::from_utf8_lossy(&fmt.stdout));
    assert_eq!(
        client.result("textDocument/formatting", params.clone()),
        json!([])
    );
    client.change(&uri, 3, "stage a {\n");
    assert!(client.result("textDocument/formatting", params).is_null());
    assert_eq!(client.shutdown(), Some(0));
}

#[test]
fn rename_changes_every_occurrence_across_files() {
    let (dir, main, common) = project();
    let mut client = Client::start(dir.path());
    let main_uri = client.open(&main, MAIN);
    let common_uri = uri(&common);
    let place = doc_pos(&main_uri, at(MAIN, "after build", 8));
    let range = client.result("textDocument/prepareRename", place.clone());
    assert_eq!(range["start"], at(MAIN, "build uses", 0));

    let mut params = place.clone();
    params["newName"] = json!("compile");
    let edit = client.result("textDocument/rename", params);
    let changes = &edit["changes"];
    let starts = |uri: &str| -> Vec<Value> {
        changes[uri]
            .as_array()
            .map(|edits| {
                edits
                    .iter()
                    .inspect(|e| assert_eq!(e["newText"], "compile"))
                    .map(|e| e["range"]["start"].clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(starts(&main_uri), [at(MAIN, "build uses", 0)]);
    assert_eq!(starts(&common_uri), [at(COMMON, "build uses", 0)]);

    // Not a name, not a valid name, a name taken: refused with a reason.
    let err = client.request(
        "textDocument/prepareRename",
        doc_pos(&main_uri, at(MAIN, "make test", 1)),
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stages and templates")),
        "{err}"
    );
    for (new, why) in [
        ("2fast", "not a stage name"),
        ("when", "keyword"),
        ("deploy", "already exists"),
    ] {
        let mut params = place.clone();
        params["newName"] = json!(new);
        let err = client.request("textDocument/rename", params);
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{new}: {err}"
        );
    }
    assert_eq!(client.shutdown(), Some(0));
}

#[test]
fn a_burst_of_edits_ends_with_the_latest_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "a.pipeline", "");
    let mut client = Client::start(dir.path());
    let uri = client.open(&path, "");
    client.diagnostics(&uri);
    let good = "stage a {\n  image \"x\"\n  run \"y\"\n}\n";
    for v in 2..60 {
        // Every edit but the last has an unknown stage.
        let text = if v == 59 {
            good.to_string()
        } else {
            format!("{good}stage b after zz{v} {{\n  image \"x\"\n  run \"y\"\n}}\n")
        };
        client.change(&uri, v, &text);
    }
    let last = client.diagnostics_where(&uri, <[Value]>::is_empty);
    assert!(last.is_empty());
    assert_eq!(client.shutdown(), Some(0));
}

/// Texts that have broken parsers and position conversions elsewhere.
const NASTY: [&str; 8] = [
    "",
    "\u{feff}stage 😀 after {",
    "stage a after b, , c uses when {\n  image \"${\"\n  run \"\"\"\n",
    "env {\n  A = \"${A}${B}${git.nope}${secret.}\"\n}\n\r\n\r\nstage a {",
    "stage a {\n  build \".\" {\n    tag \"x\"\n  }\n  release r { image \"c\" = \"${\n",
    "((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((",
    "include \"../../../../../../etc/passwd\"\ninclude \"/dev/zero\"\ninclude \"\"\n",
    "stage a after a {\n  image \"é\u{0301}\" run \"\t\"\n}\nfinally b {}\ntemplate {}\nenvironment {",
];

#[test]
fn any_text_and_any_position_gets_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "x.pipeline", "");
    let mut client = Client::start(dir.path());
    let uri = client.open(&path, "");
    for (v, text) in NASTY.iter().enumerate() {
        client.change(&uri, v as i64 + 2, text);
        let lines = text.split('\n').count() as u64;
        let mut positions = vec![
            json!({ "line": 0, "character": 0 }),
            json!({ "line": 9999, "character": 9999 }),
        ];
        for line in 0..=lines {
            for character in [0, 1, 2, 3, 5, 8, 13, 21, 40, 100] {
                positions.push(json!({ "line": line, "character": character }));
            }
        }
        for p in positions {
            let place = doc_pos(&uri, p);
            for method in [
                "textDocument/completion",
                "textDocument/hover",
                "textDocument/definition",
                "textDocument/prepareRename",
            ] {
                let r = client.request(method, place.clone());
                assert!(r["error"]["code"] != -32603, "{method} on {text:?}: {r}");
            }
            let mut rename = place.clone();
            rename["newName"] = json!("zz");
            let r = client.request("textDocument/rename", rename);
            assert!(r["error"]["code"] != -32603, "rename on {text:?}: {r}");
        }
        for method in ["textDocument/documentSymbol", "textDocument/formatting"] {
            let r = client.request(method, json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } }));
            assert!(r["error"].is_null(), "{method} on {text:?}: {r}");
        }
    }
    // Requests about documents that are not open, and bad parameters.
    let r = client.request(
        "textDocument/hover",
        doc_pos(
            "file:///nowhere.pipeline",
            json!({"line": 0, "character": 0}),
        ),
    );
    assert!(r["error"].is_null() && r["result"].is_null(), "{r}");
    let r = client.request("textDocument/hover", json!({ "nonsense": true }));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r = client.request("textDocument/unheardOf", json!({}));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    // A message that is not JSON is skipped.
    let stdin = client.stdin.as_mut().expect("stdin");
    write!(stdin, "Content-Length: 5\r\n\r\nhello").expect("write");
    assert_eq!(client.shutdown(), Some(0));
}

#[test]
fn exit_without_shutdown_is_status_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut client = Client::start(dir.path());
    client.notify("exit", Value::Null);
    assert_eq!(client.wait(), Some(1));
    // Closing the input ends the server too.
    let mut client = Client::start(dir.path());
    assert_eq!(client.wait(), Some(1));
}

#[test]
fn completion_inside_interpolation_knows_the_stage_scope() {
    let (dir, main, _) = project();
    let text = format!(
        "{MAIN}\nstage m uses box {{\n  matrix {{ NODE = [\"18\", \"20\"] }}\n  env {{ LOCAL = \"x\" }}\n  run \"echo\"\n  artifact \"out/${{git.br\"\n}}\n"
    );
    let mut client = Client::start(dir.path());
    let uri = client.open(&main, &text);
    let items = client.result(
        "textDocument/completion",
        doc_pos(&uri, at(&text, "${git.br", 8)),
    );
    let items = items.as_array().expect("items");
    let find = |label: &str| {
        items
            .iter()
            .find(|i| i["label"] == label)
            .unwrap_or_else(|| panic!("no `{label}` in {items:#?}"))
    };
    // The stage's matrix and env, the pipeline's env.
    for label in ["NODE", "LOCAL", "IMAGE", "environment"] {
        find(label);
    }
    // Each replaces what is typed after `${`, `git.` included.
    let branch = find("git.branch");
    let start = text.find("git.br\"").expect("git.br");
    assert_eq!(
        branch["textEdit"],
        json!({ "range": { "start": pos(&text, start), "end": pos(&text, start + 6) }, "newText": "git.branch" })
    );
    assert_eq!(client.shutdown(), Some(0));
}

/// What a diagnostic says, the same way whether it comes from the server
/// or from `slipway check --diagnostics json`: code, severity, message with
/// its help, range (the texts are ASCII, so columns are UTF-16 units), and
/// the related places, by file name relative to `dir`.
fn said(d: &Value, dir: &Path) -> Value {
    let root = format!("{}/", uri(dir));
    let file_of = |uri: &Value| {
        uri.as_str()
            .and_then(|u| u.strip_prefix(root.as_str()))
            .unwrap_or("")
            .to_string()
    };
    let related: Vec<Value> = d["relatedInformation"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            json!([
                file_of(&r["location"]["uri"]),
                r["location"]["range"]["start"],
                r["message"]
            ])
        })
        .collect();
    json!([d["code"], d["severity"], d["message"], d["range"], related])
}

/// [`said`] for a line of `slipway check --diagnostics json`.
fn said_by_check(d: &Value) -> Value {
    let at = |line: &Value, column: &Value| {
        json!({
            "line": line.as_u64().unwrap_or(0) - 1,
            "character": column.as_u64().unwrap_or(0) - 1
        })
    };
    let mut message = d["message"].as_str().unwrap_or("").to_string();
    if let Some(help) = d["help"].as_str() {
        message = format!("{message}\nhelp: {help}");
    }
    let related: Vec<Value> = d["related"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| json!([r["file"], at(&r["line"], &r["column"]), r["message"]]))
        .collect();
    json!([
        d["code"],
        if d["severity"] == "error" { 1 } else { 2 },
        message,
        { "start": at(&d["line"], &d["column"]), "end": at(&d["end_line"], &d["end_column"]) },
        related
    ])
}

/// What `slipway check` says about each of `files` (names relative to
/// `dir`), checking `main` there.
fn check_says(dir: &Path, main: &str, files: &[&str]) -> Vec<Vec<Value>> {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["check", "--diagnostics", "json", main])
        .current_dir(dir)
        .output()
        .expect("check runs");
    let all: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    files
        .iter()
        .map(|f| {
            all.iter()
                .filter(|d| d["file"] == *f)
                .map(said_by_check)
                .collect()
        })
        .collect()
}

/// How the server went about each check, from its timing log: `full`
/// when it loaded the pipeline again, `unchanged` when nothing had, else
/// how many stages it checked again: `all` of them, `few` or `none`.
fn ways(log: &str) -> Vec<&'static str> {
    log.lines()
        .filter(|l| l.contains("checked `"))
        .map(|l| {
            if l.contains("(load ") {
                return "full";
            }
            if l.contains("nothing changed") {
                return "unchanged";
            }
            let counts: Vec<u64> = l
                .rsplit(": ")
                .next()
                .unwrap_or("")
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            // `N items parsed again, C of S stages checked, P planned`
            match counts.as_slice() {
                [_, 0, _, _] => "none",
                [_, c, s, _] if c == s => "all",
                [_, _, _, _] => "few",
                _ => "?",
            }
        })
        .collect()
}

const EDITED: &str = r#"pipeline "p"

include "ci/common.pipeline"

secret TOKEN

env {
  REGISTRY = "localhost:5000"
  LEVEL = "info"
}

environment prod {
  env {
    KEY = "${secret.TOKEN}"
  }
}

template box {
  image "local/busybox"
}

stage build uses box {
  env {
    STAGE_ID = "1"
  }
  run "make"
}

stage test after build uses box {
  matrix {
    NODE = ["18", "20"]
  }
  env {
    TARGET = "${REGISTRY}/app"
  }
  run "make test"
}

stage deploy after test {
  image "${REGISTRY}/deploy"
  run "deploy"
}

finally notify {
  image "local/busybox"
  run "notify"
}
"#;

const EDITED_COMMON: &str = r#"template tools {
  image "local/tools"
}

stage lint uses tools {
  run "lint"
}
"#;

/// Edits outside scripts (env values, stage names, `after` lists, a syntax
/// error and its fix, matrices, secrets, the pipeline's env, a template, a
/// whole new stage, a stage removed, an included file changed on disk,
/// saves) are followed item by item: only what an edit touched is parsed again
/// and only the stages that depend on it checked again: its own, those
/// using a template it changed, every stage when it changed the names
/// declared at the top level. After each, the diagnostics of every file are exactly those of
/// `slipway check`, related places included, and the outline is that of a
/// server that just opened the text.
#[test]
fn edits_outside_scripts_keep_diagnostics_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "main.pipeline", EDITED);
    let common = write(dir.path(), "ci/common.pipeline", EDITED_COMMON);
    let log = dir.path().join("server.log");
    let common_uri = uri(&common);
    let mut client = Client::start_logged(dir.path(), Some(&log));
    let uri = client.open(&path, EDITED);
    let files = ["main.pipeline", "ci/common.pipeline"];
    let said_now = |client: &mut Client| -> Vec<Vec<Value>> {
        [&uri, &common_uri]
            .iter()
            .map(|u| {
                client
                    .diagnostics(u)
                    .iter()
                    .map(|d| said(d, dir.path()))
                    .collect()
            })
            .collect()
    };
    assert_eq!(
        said_now(&mut client),
        check_says(dir.path(), "main.pipeline", &files)
    );

    // (what to replace, with what, how the server should go about it)
    let edits: Vec<(&str, &str, &str)> = vec![
        // A stage's env value, broken and mended.
        ("STAGE_ID = \"1\"", "STAGE_ID = \"12\"", "few"),
        ("STAGE_ID = \"12\"", "STAGE_ID = \"${NOPE}\"", "few"),
        ("STAGE_ID = \"${NOPE}\"", "STAGE_ID = \"12\"", "few"),
        // A stage renamed, and back: its dependents' `after` go unknown.
        ("stage build uses", "stage built uses", "few"),
        ("stage built uses", "stage build uses", "few"),
        // A cycle through three stages, and an `after` into the include.
        ("stage build uses", "stage build after deploy uses", "few"),
        ("stage build after deploy uses", "stage build uses", "few"),
        (
            "stage deploy after test {",
            "stage deploy after test, lint {",
            "few",
        ),
        // A syntax error, and its fix: only the broken stage is parsed
        // again; it is missing while broken, and checked when mended.
        ("after test, lint {", "after test, lint", "none"),
        ("after test, lint\n", "after test, lint {\n", "few"),
        // A matrix value, and a matrix key hiding the pipeline's env.
        ("\"18\", \"20\"]", "\"18\", \"20\", \"22\"]", "few"),
        ("NODE = [", "REGISTRY = [\"a\"]\n    NODE = [", "few"),
        ("REGISTRY = [\"a\"]\n    NODE = [", "NODE = [", "few"),
        // Names declared at the top level: every stage is checked again.
        ("secret TOKEN", "secret TOKEN OTHER", "all"),
        (
            "LEVEL = \"info\"",
            "LEVEL = \"info\"\n  EXTRA = \"e\"",
            "all",
        ),
        ("\n  EXTRA = \"e\"", "", "all"),
        (
            "image \"${REGISTRY}/deploy\"",
            "image \"${LEVEL}/deploy\"",
            "few",
        ),
        // A value of the pipeline's env leaks a secret into an image: no
        // stage is checked again, the one that reads it is planned again.
        // What a stage's check and validation found moves with an edit
        // before it.
        ("LEVEL = \"info\"", "LEVEL = \"${secret.TOKEN}\"", "none"),
        ("STAGE_ID = \"12\"", "STAGE_ID = \"1\"", "few"),
        ("LEVEL = \"${secret.TOKEN}\"", "LEVEL = \"info\"", "none"),
        (
            "run \"deploy\"",
            "run \"deploy\"\n  artifact \"${MISSING}\"",
            "few",
        ),
        ("STAGE_ID = \"1\"", "STAGE_ID = \"12\"", "few"),
        ("\n  artifact \"${MISSING}\"", "", "few"),
        // A template: the stages that use it are checked again.
        (
            "image \"local/busybox\"\n}\n\nstage build",
            "image \"${BOX}\"\n}\n\nstage build",
            "few",
        ),
        ("image \"${BOX}\"", "image \"local/box\"", "few"),
        // A new stage at the end, then a stage removed.
        (
            "run \"notify\"\n}\n",
            "run \"notify\"\n}\n\nstage extra after deploy {\n  image \"x\"\n  run \"y\"\n}\n",
            "few",
        ),
        (
            "stage deploy after test, lint {\n  image \"${LEVEL}/deploy\"\n  run \"deploy\"\n}\n\n",
            "",
            "few",
        ),
    ];
    let mut text = EDITED.to_string();
    let mut version = 1;
    let mut expected = vec!["full"];
    for (from, to, way) in edits {
        assert!(text.contains(from), "`{from}` is not in\n{text}");
        text = text.replacen(from, to, 1);
        version += 1;
        client.change(&uri, version, &text);
        expected.push(way);
        let got = said_now(&mut client);
        write(dir.path(), "main.pipeline", &text);
        let want = check_says(dir.path(), "main.pipeline", &files);
        assert_eq!(got, want, "after `{from}` became `{to}`:\n{text}");
    }
    // A change on disk to the included file, not open: the next edit
    // loads the pipeline again, and the one after is followed again.
    write(
        dir.path(),
        "ci/common.pipeline",
        &EDITED_COMMON.replace("run \"lint\"", "run \"lint\"\n  retry many"),
    );
    for (from, to) in [("\"12\"", "\"123\""), ("\"123\"", "\"1234\"")] {
        text = text.replacen(from, to, 1);
        version += 1;
        client.change(&uri, version, &text);
        let got = said_now(&mut client);
        write(dir.path(), "main.pipeline", &text);
        assert_eq!(
            got,
            check_says(dir.path(), "main.pipeline", &files),
            "{text}"
        );
    }
    expected.extend(["full", "few"]);
    assert!(
        got_some(&check_says(dir.path(), "main.pipeline", &files)[1]),
        "the included file's problem is reported"
    );
    // A save: nothing changed, nothing is checked again. Then the included
    // file changes on disk alone, and the next save follows that edit.
    client.notify(
        "textDocument/didSave",
        json!({ "textDocument": { "uri": uri } }),
    );
    assert_eq!(
        said_now(&mut client),
        check_says(dir.path(), "main.pipeline", &files)
    );
    write(dir.path(), "ci/common.pipeline", EDITED_COMMON);
    client.notify(
        "textDocument/didSave",
        json!({ "textDocument": { "uri": uri } }),
    );
    let got = said_now(&mut client);
    assert_eq!(got, check_says(dir.path(), "main.pipeline", &files));
    assert!(!got_some(&got[1]), "{got:?}");
    expected.extend(["unchanged", "few"]);

    // The outline is that of the text opened afresh.
    let symbols = |client: &mut Client, uri: &str| {
        client.result(
            "textDocument/documentSymbol",
            json!({ "textDocument": { "uri": uri } }),
        )
    };
    let edited = symbols(&mut client, &uri);
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    write(fresh_dir.path(), "ci/common.pipeline", EDITED_COMMON);
    let fresh_path = write(fresh_dir.path(), "main.pipeline", &text);
    let mut fresh = Client::start(fresh_dir.path());
    let fresh_uri = fresh.open(&fresh_path, &text);
    assert_eq!(edited, symbols(&mut fresh, &fresh_uri));
    assert_eq!(fresh.shutdown(), Some(0));

    assert_eq!(client.shutdown(), Some(0));
    let log = std::fs::read_to_string(&log).expect("log");
    assert_eq!(ways(&log), expected, "{log}");
}

fn got_some(list: &[Value]) -> bool {
    !list.is_empty()
}

/// Typing inside a `run` script is followed like any edit: the stage is
/// parsed again and the stage checked again. The diagnostics
/// must still be exactly those of a full check of the new text, moved
/// along with the edit, including on the same line and in related
/// information, and also when the edit adds `$`, braces or quotes.
#[test]
fn edits_inside_a_script_keep_diagnostics_exact() {
    const TEXT: &str = "pipeline \"p\"\n\nstage a after c { image \"local/busybox\"\n  run \"echo one\" }\n\n\
                        stage b after a {\n  image \"local/busybox\"\n  run \"echo b\"\n}\n\n\
                        stage d {\n  image \"local/busybox\"\n  run \"\"\"\n    echo two\n  \"\"\"\n}\n\n\
                        stage c after b {\n  image \"${NOPE}\"\n  run \"echo three\"\n}\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "p.pipeline", TEXT);
    let log = dir.path().join("server.log");
    let mut client = Client::start_logged(dir.path(), Some(&log));
    let uri = client.open(&path, TEXT);
    let first = client.diagnostics(&uri);
    assert!(!first.is_empty());

    // (a place to find, how far into it, what to insert, how much to remove)
    let mut text = TEXT.to_string();
    let edits: Vec<(&str, usize, &str, usize)> = vec![
        (" one", 4, " again and again", 0),
        (" two", 0, "-x", 0),
        ("-x two", 0, "", 2),
        (" one", 4, "$HOME", 0),
        (" two", 0, " {x}", 0),
        (" one", 4, "", 5),
    ];
    for (version, (place, into, insert, remove)) in edits.into_iter().enumerate() {
        let at = text.find(place).expect("place") + into;
        text.replace_range(at..at + remove, insert);
        client.change(&uri, i64::try_from(version).expect("small") + 2, &text);
        let got = client.diagnostics(&uri);
        let path = write(dir.path(), "fresh.pipeline", &text);
        let mut fresh = Client::start(dir.path());
        let fresh_uri = fresh.open(&path, &text);
        let want = fresh.diagnostics(&fresh_uri);
        let strip = |list: &[Value]| -> Vec<Value> {
            list.iter()
                .map(|d| {
                    let mut d = d.clone();
                    // Related places name the file they are in.
                    if let Some(related) = d["relatedInformation"].as_array_mut() {
                        for r in related {
                            r["location"]["uri"] = Value::Null;
                        }
                    }
                    d
                })
                .collect()
        };
        assert_eq!(strip(&got), strip(&want), "after edit {version}:\n{text}");
    }
    assert_eq!(client.shutdown(), Some(0));
    // Every edit was followed, one stage checked again.
    let log = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        ways(&log),
        ["full", "few", "few", "few", "few", "few", "few"],
        "{log}"
    );
}
