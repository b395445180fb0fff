#!/usr/bin/env python3
"""Writes Spec-Bench prompt sets, one JSONL file per category, beside this
script: `specbench-<category>.jsonl` for translation, summarization, qa,
math_reasoning and rag (single-turn: {"prompt": ...}), and
`specbench-mt-bench.jsonl`: MT-bench questions, both turns, each question
as its first turn ({"prompt": ...}) and then as a conversation ({"messages":
[user, assistant, user]}) whose assistant turn is the
target's own greedy answer to the first turn (from `edgespec generate`), so
the second turn is asked as Spec-Bench asks it, after the model's answer.
The MT-bench file depends on the target model: generated, not committed.

Questions are taken in file order, N of each category after the first S
(the questions are the development part of Spec-Bench; see README.md): one
slice to work on, e.g. the first 3 for replay traces, another to check on
(--skip 3), so nothing is judged on the prompts it was studied on.

Usage: make-sets.py EDGESPEC TARGET.gguf [--per-category N] [--skip S]
                    [--answer-tokens T] [--out DIR]"""
import argparse
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TASKS = ["translation", "summarization", "qa", "math_reasoning", "rag"]
MT_BENCH = ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem",
            "humanities"]


def load_answer():
    """`answer` of ../make-multi-turn.py: the target's greedy reply by `edgespec generate`."""
    path = os.path.join(HERE, "..", "make-multi-turn.py")
    spec = importlib.util.spec_from_file_location("make_multi_turn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.answer


def write(path, lines):
    tmp = path + ".partial"
    with open(tmp, "w") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    os.replace(tmp, path)
    print(f"wrote {len(lines)} prompts to {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("edgespec")
    ap.add_argument("target")
    ap.add_argument("--per-category", type=int, default=4)
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--answer-tokens", type=int, default=256)
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    chosen_slice = slice(args.skip, args.skip + args.per_category)
    by_category = {}
    with open(os.path.join(HERE, "question.jsonl")) as f:
        for line in f:
            if line.strip():
                q = json.loads(line)
                by_category.setdefault(q["category"], []).append(q)
    for task in TASKS:
        chosen = by_category.get(task, [])[chosen_slice]
        write(os.path.join(args.out, f"specbench-{task}.jsonl"),
              [{"prompt": q["turns"][0], "question_id": q["question_id"]} for q in chosen])
    # MT-bench: one question of each of its categories in turn, so a few
    # questions cover writing, roleplay, reasoning, math, coding, ...
    rounds = max((len(by_category.get(c, [])) for c in MT_BENCH), default=0)
    ordered = [by_category[c][i] for i in range(rounds) for c in MT_BENCH
               if i < len(by_category.get(c, []))]
    answer = load_answer()
    conversations = []
    for q in ordered[chosen_slice]:
        first, second = q["turns"][0], q["turns"][1]
        reply = answer(args.edgespec, args.target, first, args.answer_tokens)
        conversations.append({"prompt": first, "question_id": q["question_id"], "turn": 1})
        conversations.append({"messages": [{"role": "user", "content": first},
                                           {"role": "assistant", "content": reply},
                                           {"role": "user", "content": second}],
                              "question_id": q["question_id"], "turn": 2})
        print(f"mt-bench {len(conversations) // 2}/{args.per_category}", file=sys.stderr)
    write(os.path.join(args.out, "specbench-mt-bench.jsonl"), conversations)


if __name__ == "__main__":
    main()
