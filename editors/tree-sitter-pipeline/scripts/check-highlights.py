#!/usr/bin/env python3
"""Checks that no two patterns of a highlights query capture the same node.

Editors disagree on which pattern wins when several capture one node (Helix
and the tree-sitter CLI take the first, Neovim the last), so the queries are
written to never do that; this runs the query on the given files and lists
the nodes that get more than one highlight.

    scripts/check-highlights.py TREE_SITTER QUERY FILE...
"""

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

CAPTURE = re.compile(r"capture: (?:\d+ - )?([\w.]+), start: \((\d+), (\d+)\), end: \((\d+), (\d+)\)")


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    tree_sitter = sys.argv[1]
    query = str(Path(sys.argv[2]).resolve())
    files = [str(Path(f).resolve()) for f in sys.argv[3:]]
    grammar = Path(__file__).resolve().parent.parent
    bad = 0
    for file in files:
        proc = subprocess.run([tree_sitter, "query", query, file], capture_output=True, text=True,
                              cwd=grammar, errors="replace")
        if proc.returncode != 0:
            print(f"{file}: tree-sitter query failed:\n{proc.stderr}", file=sys.stderr)
            return 1
        names = defaultdict(set)
        for found in CAPTURE.finditer(proc.stdout):
            name = found.group(1)
            if name.startswith("_") or name == "spell":
                continue
            names[tuple(int(g) for g in found.groups()[1:])].add(name)
        for (sr, sc, er, ec), captured in sorted(names.items()):
            if len(captured) > 1:
                bad += 1
                print(f"{file}:{sr + 1}:{sc + 1}-{er + 1}:{ec + 1}: captured as {', '.join(sorted(captured))}")
    if bad:
        print(f"{bad} nodes are captured by more than one highlight pattern in {query}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
