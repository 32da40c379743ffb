//! A real editor as the language client: Debian's Neovim, headless, with
//! `slipway lsp` attached to a buffer of the chat example. A Lua script
//! drives it and writes what it saw to a file, which the test reads.
//!
//! With `CI` set the test fails when `nvim` is missing (`scripts/dev-env.sh`
//! installs it); elsewhere it says so and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::root;

/// The whole run, Neovim included, must end within this.
const TIMEOUT: Duration = Duration::from_secs(90);

fn nvim() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nvim"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Neovim (`nvim`) for the editor test: run scripts/dev-env.sh"
        );
        eprintln!("skipped: no `nvim` on PATH (scripts/dev-env.sh installs Debian's neovim)");
    }
    found
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Starts the server on the buffer (`vim.lsp.start` where Neovim has it,
/// `start_client` and `buf_attach_client` on older ones such as Debian
/// 12's 0.7), waits for its first diagnostics, writes how many there are,
/// changes `after install` to `after instal` in the `lint` stage's header
/// and writes the diagnostics that arrive then. Every wait has a timeout,
/// and any Lua error ends Neovim with a failure.
const INIT_LUA: &str = r#"
local bin, file, out = SLIPWAY_BIN, PIPELINE_FILE, RESULTS_FILE
local lines = {}
local function log(s) table.insert(lines, s) end
local function finish(code)
  local f = io.open(out, 'w')
  f:write(table.concat(lines, '\n') .. '\n')
  f:close()
  if code == 0 then vim.cmd('qall!') else vim.cmd('cquit! ' .. code) end
end

local ok, err = pcall(function()
  vim.cmd('edit ' .. vim.fn.fnameescape(file))
  local buf = vim.api.nvim_get_current_buf()
  local uri = vim.uri_from_bufnr(buf)
  local published = 0
  local default = vim.lsp.handlers['textDocument/publishDiagnostics']
  vim.lsp.handlers['textDocument/publishDiagnostics'] = function(e, result, ctx, config)
    if result and result.uri == uri then published = published + 1 end
    return default(e, result, ctx, config)
  end

  local config = {
    name = 'slipway',
    cmd = { bin, 'lsp' },
    root_dir = vim.fn.fnamemodify(file, ':h'),
  }
  local id
  if vim.lsp.start then
    id = vim.lsp.start(config)
  else
    id = vim.lsp.start_client(config)
    vim.lsp.buf_attach_client(buf, id)
  end
  log('client ' .. tostring(id))

  if not vim.wait(20000, function() return published > 0 end, 20) then
    log('FAIL: no diagnostics were published for the buffer')
    return finish(1)
  end
  log('initial ' .. #vim.diagnostic.get(buf))

  local lnum
  for i, l in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    if l:match('^stage lint after install') then lnum = i end
  end
  if not lnum then
    log('FAIL: no `stage lint after install` line')
    return finish(1)
  end
  local line = vim.api.nvim_buf_get_lines(buf, lnum - 1, lnum, false)[1]
  local edited = line:gsub('after install', 'after instal')
  vim.api.nvim_buf_set_lines(buf, lnum - 1, lnum, false, { edited })

  if not vim.wait(20000, function() return #vim.diagnostic.get(buf) > 0 end, 20) then
    log('FAIL: no diagnostic after the edit')
    return finish(1)
  end
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    local code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code)
    log(string.format('diagnostic %d:%d-%d:%d %s %s', d.lnum, d.col, d.end_lnum, d.end_col,
      tostring(code), (d.message:gsub('\n', ' | '))))
  end
  finish(0)
end)
if not ok then
  log('FAIL: ' .. tostring(err))
  finish(1)
end
"#;

fn lua_string(s: &str) -> String {
    format!("[==[{s}]==]")
}

#[test]
fn neovim_shows_the_unknown_stage_as_it_is_typed() {
    let Some(nvim) = nvim() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let chat = dir.path().join("chat");
    copy_dir(&root().join("examples/chat"), &chat);
    let file = chat.join("chat.pipeline");
    let results = dir.path().join("results.txt");
    let init = INIT_LUA
        .replace("SLIPWAY_BIN", &lua_string(env!("CARGO_BIN_EXE_slipway")))
        .replace("PIPELINE_FILE", &lua_string(&file.display().to_string()))
        .replace("RESULTS_FILE", &lua_string(&results.display().to_string()));
    let init_path = dir.path().join("init.lua");
    std::fs::write(&init_path, init).expect("write init.lua");

    let mut child = Command::new(nvim)
        .args(["--headless", "--clean", "-u"])
        .arg(&init_path)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nvim");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for nvim") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "nvim did not finish in {TIMEOUT:?}; it wrote:\n{}",
                std::fs::read_to_string(&results).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let written = std::fs::read_to_string(&results).unwrap_or_default();
    assert!(status.success(), "nvim failed ({status}):\n{written}");

    let lines: Vec<&str> = written.lines().collect();
    assert!(lines.contains(&"initial 0"), "{written}");
    let diagnostics: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("diagnostic "))
        .collect();
    assert_eq!(diagnostics.len(), 1, "{written}");
    // `stage lint after instal {` is line 46 (0-based 45); `instal` starts
    // at column 17.
    assert_eq!(
        *diagnostics[0],
        "diagnostic 45:17-45:23 slipway::unknown-stage unknown stage `instal` | help: did you mean `install`?",
        "{written}"
    );
}
