#!/usr/bin/env python3
"""One language, three grammars: pest, tree-sitter and TextMate on every file.

grammar/pipeline.pest (through the real `slipway` binary) is the authority.
For every file of the corpus this asserts:

- a file pest accepts (no `slipway::syntax` diagnostic for that file) parses
  with tree-sitter without an ERROR or MISSING node, and the TextMate grammar
  tokenizes it and ends with no rule left open (an unclosed string or stage
  header would colour the rest of the file wrongly);
- a file pest rejects with a syntax error has an ERROR or MISSING node in
  tree-sitter's tree (the TextMate grammar is a highlighter: it must only
  tokenize the file, and it is not asked to find the error);
- every corpus file has a committed TextMate snapshot, or a token listing
  for the few that cannot have one (`npm test` in editors/vscode compares
  them; editors/vscode/test/corpus.js says which and why).

The corpus: examples/**/*.pipeline and every file under tests/fixtures/
except Markdown (as editors/vscode/test/corpus.js), plus the tree-sitter
corpus examples (editors/tree-sitter-pipeline/test/corpus/*.txt: an `:error`
example must be a pest syntax error, any other must not), the VS Code
snippets expanded with their default values, the TextMate samples, and the
byte sequences in GENERATED, which no fixture has.

A file slipway refuses to read (not UTF-8) counts as rejected by pest.

Some differences cannot be compared, and are listed in EXCLUDED below with
the reason (docs/editors.md explains them); a listed file that no longer
shows the difference is reported too, so the list cannot go stale.

Usage: compare-grammars.py --slipway BIN --tree-sitter BIN [--verbose]
Exit status 1 when any file disagrees.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRAMMAR_DIR = ROOT / "editors" / "tree-sitter-pipeline"
VSCODE_DIR = ROOT / "editors" / "vscode"
SNAPSHOTS = VSCODE_DIR / "test" / "snapshots" / "corpus"
TOKEN_LISTINGS = VSCODE_DIR / "test" / "snapshots" / "tokens"

# slipway's parser rejects, before pest runs, input nested deeper than 64
# brackets or with more than 256 `&&`, `||` and `!` in one item (so that
# nothing recurses without bound). These are limits of the implementation,
# not of the grammar: tree-sitter has no such limit and parses these files
# by the grammar alone. Each listed file must get only such errors from
# slipway; tree-sitter's verdict on them is shown but not compared.
LIMIT_MESSAGES = ("too deeply nested", "condition too long")
EXCLUDED = {
    "tests/fixtures/malformed/deep_blocks.pipeline": "nesting limit (64 levels)",
    "tests/fixtures/malformed/deep_lists.pipeline": "nesting limit (64 levels)",
    "tests/fixtures/malformed/deep_lists_then_valid_stage.pipeline": "nesting limit (64 levels)",
    "tests/fixtures/malformed/deep_parens.pipeline": "nesting limit (64 levels)",
    "tests/fixtures/malformed/deep_unbalanced.pipeline": "nesting limit (64 levels)",
    "tests/fixtures/malformed/many_and.pipeline": "operator limit (256)",
    "tests/fixtures/malformed/many_not.pipeline": "operator limit (256)",
    "tests/fixtures/malformed/many_or.pipeline": "operator limit (256)",
}


@dataclass
class Case:
    name: str  # shown in the table
    path: Path  # the file given to the three grammars
    kind: str  # corpus | ts-corpus | snippet | sample
    expect_syntax_error: bool | None = None  # what the file itself says, if anything
    pest: str = ""  # "ok" | "syntax" | "limit" | "crash: ..."
    pest_detail: str = ""
    ts_ok: bool | None = None
    ts_detail: str = ""
    tm: str = ""  # "ok" | "open: ..." | "error: ..."
    snapshot: bool | None = None
    problems: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ the files


def corpus_files() -> list[Path]:
    examples = sorted((ROOT / "examples").rglob("*.pipeline"))
    fixtures = sorted(p for p in (ROOT / "tests" / "fixtures").rglob("*") if p.is_file() and p.suffix != ".md")
    return sorted(examples + fixtures, key=lambda p: p.relative_to(ROOT).as_posix())


def ts_corpus_examples(out: Path) -> list[Case]:
    """The examples of the tree-sitter corpus, written to files, as `tree-sitter test` reads them."""
    cases = []
    delimiter = re.compile(r"^(=+|-+)\s*$")
    for txt in sorted((GRAMMAR_DIR / "test" / "corpus").glob("*.txt")):
        lines = txt.read_bytes().decode("utf-8").splitlines(keepends=True)
        i = 0
        while i < len(lines):
            if not lines[i].startswith("===") or not delimiter.match(lines[i]):
                i += 1
                continue
            # Header: ===, the name, attributes (":error", ...), ===.
            j = i + 1
            name = lines[j].strip()
            attributes = []
            j += 1
            while j < len(lines) and not lines[j].startswith("==="):
                attributes.append(lines[j].strip())
                j += 1
            body_start = j + 1
            k = body_start
            while k < len(lines) and not (lines[k].startswith("---") and delimiter.match(lines[k])):
                k += 1
            data = "".join(lines[body_start:k]).encode("utf-8")
            if data.endswith(b"\n"):
                data = data[:-1]
            if data.endswith(b"\r"):
                data = data[:-1]
            slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
            path = out / "ts-corpus" / txt.stem / f"{slug}.pipeline"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            cases.append(Case(f"ts-corpus/{txt.stem}: {name}", path, "ts-corpus",
                              expect_syntax_error=":error" in attributes))
            i = k + 1
    return cases


def snippet_cases(out: Path) -> list[Case]:
    target = out / "snippets"
    subprocess.run(["node", str(VSCODE_DIR / "test" / "expand-snippets.js"), str(target)], check=True)
    return [Case(f"snippet: {p.stem}", p, "snippet", expect_syntax_error=False)
            for p in sorted(target.glob("*.pipeline"))]


# Bytes that no fixture has (the fixtures are UTF-8), written by this script.
# name: (bytes, whether pest rejects them)
GENERATED = {
    "invalid UTF-8 in a string": (b'pipeline "caf\xe9"\n', True),
    "invalid UTF-8 in a triple-quoted string": (b'env {\n  A = """\n    caf\xe9\n  """\n}\n', True),
    "invalid UTF-8 in a name": (b"stage caf\xc3 {\n  manual \"go?\"\n}\n", True),
    "invalid UTF-8 in a comment": (b'# caf\xe9\npipeline "x"\n', True),
    "a lone surrogate encoded as UTF-8": (b'pipeline "\xed\xa0\x80"\n', True),
    "a NUL byte in a comment": (b'# a\x00b\npipeline "x"\n', False),
    "a NUL byte in a triple-quoted string": (b'env {\n  A = """a\x00b"""\n}\n', False),
    "a NUL byte in a reference": (b'env {\n  A = "${B\x00}"\n}\n', False),
    "a NUL byte between settings": (b'env {\n  A = "1"\x00\n}\n', True),
    "U+FFFD written as UTF-8 in a string": (b'pipeline "\xef\xbf\xbd"\n', False),
}


def generated_cases(out: Path) -> list[Case]:
    cases = []
    for name, (data, rejected) in GENERATED.items():
        path = out / "generated" / (re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") + ".pipeline")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        cases.append(Case(f"generated: {name}", path, "generated", expect_syntax_error=rejected))
    return cases


def sample_cases() -> list[Case]:
    samples = sorted((VSCODE_DIR / "test" / "snapshots" / "samples").glob("*.pipeline"))
    return [Case(f"sample: {p.name}", p, "sample", expect_syntax_error=False) for p in samples]


# ------------------------------------------------------------------ the grammars


def run_pest(slipway: str, case: Case) -> None:
    """`slipway check` on the file; its syntax diagnostics for this very file."""
    try:
        proc = subprocess.run(
            [slipway, "check", "--color", "never", "--diagnostics", "json", str(case.path)],
            capture_output=True, timeout=120, cwd=ROOT,
            env={**os.environ, "NO_COLOR": "1"},
        )
    except subprocess.TimeoutExpired:
        case.pest = "crash: timed out"
        return
    if proc.returncode not in (0, 1, 2):
        case.pest = f"crash: exit {proc.returncode}"
        case.pest_detail = proc.stderr.decode("utf-8", "replace")[-300:]
        return
    wanted = case.path.resolve()
    syntax = []
    unreadable = None
    for line in proc.stderr.decode("utf-8", "replace").split("\n"):
        line = line.strip()
        if not line.startswith("{"):
            continue
        diag = json.loads(line)
        if not diag.get("file") or (ROOT / diag["file"]).resolve() != wanted:
            continue  # not about this file (an included one, or the command line)
        if diag.get("code") == "slipway::syntax":
            syntax.append(diag)
        elif diag.get("code") == "slipway::missing-include" and "cannot read" in diag.get("message", ""):
            # slipway refuses the bytes before parsing (not UTF-8): a rejection.
            unreadable = diag
    if unreadable is not None:
        case.pest = "unread"
        case.pest_detail = unreadable["message"]
    elif not syntax:
        case.pest = "ok"
    elif all(d["message"] in LIMIT_MESSAGES for d in syntax):
        case.pest = "limit"
    else:
        case.pest = "syntax"
    if syntax:
        first = syntax[0]
        case.pest_detail = f"{first.get('line')}:{first.get('column')} {first['message']}"


def run_tree_sitter(tree_sitter: str, cases: list[Case], work: Path) -> None:
    paths = work / "tree-sitter-paths.txt"
    paths.write_text("".join(f"{c.path}\n" for c in cases))
    proc = subprocess.run(
        [tree_sitter, "parse", "--grammar-path", str(GRAMMAR_DIR), "--json-summary", "--paths", str(paths)],
        capture_output=True, cwd=GRAMMAR_DIR,
    )
    out = proc.stdout.decode("utf-8", "replace")
    # One line per file with an error (`PATH<TAB>Parse: ...<TAB>(ERROR [r, c] - [r, c])`),
    # then the JSON summary.
    start = out.find("\n{")
    start = 0 if out.startswith("{") else start + 1
    try:
        summary = json.loads(out[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        summary = None
    if summary is None:
        sys.exit(f"tree-sitter parse gave no JSON summary (exit {proc.returncode}):\n"
                 f"{out[-2000:]}\n{proc.stderr.decode(errors='replace')[-2000:]}")
    first_errors = {}
    for line in out[:start].split("\n"):
        found = re.match(r"^(.*?)\s+Parse:.*\((ERROR|MISSING[^\[]*?)\s*\[(\d+), (\d+)\]", line)
        if found:
            where = f"{found.group(2)} at {int(found.group(3)) + 1}:{int(found.group(4)) + 1}"
            first_errors[str(Path(found.group(1).strip()).resolve())] = where
    by_path = {str(Path(s["file"]).resolve()): s for s in summary["parse_summaries"]}
    for case in cases:
        key = str(case.path.resolve())
        result = by_path.get(key)
        if result is None:
            case.ts_detail = "not parsed"
            continue
        case.ts_ok = bool(result["successful"])
        case.ts_detail = first_errors.get(key, "")


def run_textmate(cases: list[Case]) -> None:
    proc = subprocess.run(
        ["node", str(VSCODE_DIR / "test" / "tokenize.js"), "--json", *[str(c.path) for c in cases]],
        capture_output=True, check=True,
    )
    results = json.loads(proc.stdout)
    for case, result in zip(cases, results, strict=True):
        if not result["ok"]:
            case.tm = "error: " + result["error"].splitlines()[0]
        elif any(i["scope"].startswith("tokenizer stopped") for i in result["invalid"]):
            case.tm = "error: tokenizer gave up"
        elif result["open"]:
            case.tm = "open: " + "; ".join(result["open"])
        else:
            case.tm = "ok"


# ------------------------------------------------------------------ the verdict


def judge(case: Case) -> None:
    rel = case.path.relative_to(ROOT).as_posix() if case.path.is_relative_to(ROOT) else None
    if case.pest.startswith("crash"):
        case.problems.append(f"slipway check did not finish normally ({case.pest})")
        return
    if case.tm.startswith("error"):
        case.problems.append(f"TextMate: {case.tm}")
    if case.kind == "corpus" and not case.snapshot:
        case.problems.append("no TextMate snapshot (npm run snap:update in editors/vscode)")
    if rel in EXCLUDED:
        if case.pest != "limit":
            case.problems.append(
                f"listed in EXCLUDED ({EXCLUDED[rel]}) but slipway reports {case.pest!r}: update the list")
        return
    if case.pest == "limit":
        case.problems.append("only limit errors from slipway: add the file to EXCLUDED with the reason")
        return
    if case.expect_syntax_error is not None and case.expect_syntax_error != (case.pest in ("syntax", "unread")):
        case.problems.append("the example says " + ("a syntax error" if case.expect_syntax_error else "valid")
                             + f", pest says {case.pest}")
    if case.ts_ok is None:
        case.problems.append(f"tree-sitter: {case.ts_detail or 'no result'}")
    elif case.pest == "ok" and not case.ts_ok:
        case.problems.append("pest accepts, tree-sitter has an ERROR/MISSING node")
    elif case.pest in ("syntax", "unread") and case.ts_ok:
        case.problems.append("pest rejects, tree-sitter parses without an error")
    if case.pest == "ok" and case.tm.startswith("open"):
        case.problems.append(f"pest accepts, TextMate leaves a rule open ({case.tm[6:]})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slipway", required=True, help="the slipway binary")
    parser.add_argument("--tree-sitter", required=True, help="the tree-sitter CLI")
    parser.add_argument("--verbose", action="store_true", help="print every file, not only mismatches")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="slipway-grammars-") as tmp:
        work = Path(tmp)
        cases = []
        for path in corpus_files():
            rel = path.relative_to(ROOT).as_posix()
            name = rel if rel.endswith(".pipeline") else f"{rel}.pipeline"
            snapshot = (SNAPSHOTS / f"{name}.snap").is_file() or (TOKEN_LISTINGS / f"{rel}.tokens").is_file()
            cases.append(Case(rel, path, "corpus", snapshot=snapshot))
        cases += ts_corpus_examples(work)
        cases += snippet_cases(work)
        cases += sample_cases()
        cases += generated_cases(work)

        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(lambda c: run_pest(args.slipway, c), cases))
        run_tree_sitter(args.tree_sitter, cases, work)
        run_textmate(cases)
        for case in cases:
            judge(case)

    print_report(cases, args.verbose)
    return 1 if any(c.problems for c in cases) else 0


def ts_word(case: Case) -> str:
    if case.ts_ok is None:
        return "?"
    return "ok" if case.ts_ok else "ERROR"


def print_report(cases: list[Case], verbose: bool) -> None:
    bad = [c for c in cases if c.problems]
    shown = cases if verbose else bad
    if shown:
        width = min(max(len(c.name) for c in shown), 70)
        header = f"{'file':<{width}}  {'pest':<7} {'tree-sitter':<11} {'TextMate':<8}  problem"
        print(header)
        print("-" * len(header))
        for c in shown:
            name = c.name if len(c.name) <= width else "…" + c.name[-(width - 1):]
            tm = c.tm if len(c.tm) <= 8 else c.tm.split(":")[0]
            problem = "; ".join(c.problems) or ("excluded: " + EXCLUDED[c.name] if c.name in EXCLUDED else "")
            print(f"{name:<{width}}  {c.pest:<7} {ts_word(c):<11} {tm:<8}  {problem}")
            if c.problems:
                if c.pest_detail:
                    print(f"{'':<{width}}    pest: {c.pest_detail}")
                if c.ts_detail:
                    print(f"{'':<{width}}    tree-sitter: {c.ts_detail}")
                if c.tm not in ("ok", tm):
                    print(f"{'':<{width}}    TextMate: {c.tm}")
        print()
    counts = {}
    for c in cases:
        counts.setdefault(c.kind, [0, 0])
        counts[c.kind][0] += 1
        counts[c.kind][1] += bool(c.problems)
    accepted = sum(c.pest == "ok" for c in cases)
    rejected = sum(c.pest in ("syntax", "unread") for c in cases)
    excluded = sum(c.name in EXCLUDED for c in cases)
    parts = ", ".join(f"{kind} {n}" for kind, (n, _) in counts.items())
    print(f"grammars: {len(cases)} files ({parts}): pest accepts {accepted}, rejects {rejected}, "
          f"{excluded} excluded (limits); {len(bad)} mismatches")


if __name__ == "__main__":
    sys.exit(main())
