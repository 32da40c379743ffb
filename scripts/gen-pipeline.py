#!/usr/bin/env python3
"""Writes a large, realistic .pipeline file for benchmarks.

Usage: scripts/gen-pipeline.py STAGES > big.pipeline

Every stage uses one of 20 templates, has its own env with interpolation,
depends on up to three earlier stages, and one in five has a `when`
condition. The output is deterministic (fixed seed) so runs compare.
"""
import random
import sys


def main() -> None:
    stages = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rng = random.Random(42)
    out = ['pipeline "big"', ""]
    out += ["secret TOKEN", ""]
    out += ["env {", '  REGISTRY = "localhost:5000"', '  IMAGE    = "${REGISTRY}/big:${git.branch}-${git.short_sha}"', '  LEVEL    = "info"', "}", ""]
    out += ['environment staging    { env { REPLICAS = "1" } }', 'environment production { env { REPLICAS = "3" } }', ""]
    for t in range(20):
        out += [
            f"template t{t} {{",
            f'  image "local/busybox:{t}"',
            f'  env {{ TEMPLATE = "t{t}" }}',
            f'  cache "/cache/t{t}"',
            "  retry 1",
            "  timeout 10m",
            "}",
            "",
        ]
    for i in range(stages):
        after = sorted({rng.randrange(i) for _ in range(3)}) if i >= 3 else list(range(i))
        header = f"stage s{i}"
        if after:
            header += " after " + ", ".join(f"s{a}" for a in after)
        header += f" uses t{i % 20}"
        if i % 5 == 4:
            header += ' when branch == "main" && !changed("docs/**")'
        out += [
            header + " {",
            "  env {",
            f'    STAGE_ID = "{i}"',
            f'    TARGET   = "${{IMAGE}}-s{i}"',
            "  }",
            f'  artifact "out/s{i}/"',
            f'  run "echo building s{i} at $LEVEL"',
            "}",
            "",
        ]
    out += ["finally notify {", '  image "local/busybox"', '  run "echo $SLIPWAY_PIPELINE_STATUS"', "}"]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
