#!/usr/bin/env python3
"""The runtime's layers, checked: no module of crates/edgespec/src imports
another in a loop, none imports a module on a higher floor than its own,
and the table's line counts are the files' own.

The floors are the first column of the table under "## The runtime, floor by
floor" in ARCHITECTURE.md, bottom floor first: each entry is a file or a
folder of crates/edgespec/src, and a file belongs to the longest entry that
holds it. Modules on one floor may use each other (a loop among them still
fails). Imports are read from the source as text: `use crate::…`,
`use super::…` and inline `crate::…` paths, outside `#[cfg(test)]` modules (inline or in files of their own).

The second column of the table is each entry's lines (its files that no
longer entry holds); `--write` puts the current counts there.

Usage: python3 scripts/check-layers.py [--write]   (exit 1 with what is wrong)
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "crates" / "edgespec" / "src"
DOC = ROOT / "ARCHITECTURE.md"
HEADING = "## The runtime, floor by floor"


def floors():
    """The floor entries, bottom first, from ARCHITECTURE.md's table."""
    text = DOC.read_text()
    if HEADING not in text:
        sys.exit(f"check-layers: {DOC.name} has no '{HEADING}' section")
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    entries = []
    for line in section.splitlines():
        m = re.match(r"\|\s*`([^`]+)`", line)
        if m:
            entries.append(m.group(1))
    if not entries:
        sys.exit(f"check-layers: no floor table under '{HEADING}'")
    for e in entries:
        if not (SRC / e).exists():
            sys.exit(f"check-layers: floor entry {e} is not in {SRC.relative_to(ROOT)}")
    return entries


def module_path(file):
    """A file's module path: draft/mod.rs -> [draft], draft/lookup.rs -> [draft, lookup]."""
    parts = list(file.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def resolve(segments):
    """The file of the longest module prefix of `segments` (a path below crate)."""
    for n in range(len(segments), 0, -1):
        base = SRC.joinpath(*segments[:n])
        for candidate in (base.with_suffix(".rs"), base / "mod.rs"):
            if candidate.is_file():
                return candidate
    return None


def without_tests_and_comments(text):
    """The source with comments, strings and `#[cfg(test)] mod … { }` removed."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]] (names only)."""
    tree = tree.strip()
    m = re.match(r"^([\w:]*?)(::)?\{(.*)\}$", tree, re.S)
    if not m:
        path = [p for p in tree.split(" as ")[0].strip().split("::") if p]
        return [path] if path else []
    prefix = [p for p in m.group(1).split("::") if p]
    body, parts, depth, cur = m.group(3), [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    paths = []
    for part in parts:
        if part.strip() in ("", "self"):
            if part.strip() == "self":
                paths.append(prefix)
            continue
        paths.extend(prefix + p for p in expand(part))
    return paths


def imports(file):
    """The files `file` imports from within the crate."""
    text = without_tests_and_comments(file.read_text())
    here = module_path(file)
    found = set()
    # A folder's mod.rs declaring and re-exporting its own files (`mod x;`,
    # `pub use x::…`) owns them; that is not an import, so it is not read.
    for m in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", text, re.S):
        for path in expand(m.group(1)):
            found.add(tuple(path))
    for m in re.finditer(r"\bcrate((?:::\w+)+)", text):
        found.add(tuple(["crate"] + m.group(1).strip(":").split("::")))
    targets = set()
    for path in found:
        path = list(path)
        if path[0] == "crate":
            segments = path[1:]
        else:
            base = list(here)
            while path and path[0] in ("super", "self"):
                if path[0] == "super":
                    base = base[:-1]
                path = path[1:]
            segments = base + path
        target = resolve(segments) if segments else None
        if target and target != file:
            targets.add(target)
    return targets


def check_line_counts(entries, floor_of, write):
    """Differences between the table's line counts and the files' (or, with
    `write`, none: the table is rewritten with the files' counts)."""
    counts = [0] * len(entries)
    for f in SRC.rglob("*.rs"):
        i = floor_of(f)
        if i is not None:
            counts[i] += len(f.read_text().splitlines())
    text = DOC.read_text()
    head, rest = text.split(HEADING, 1)
    section, tail = (rest.split("\n## ", 1) + [""])[:2]
    problems, lines = [], []
    for line in section.splitlines():
        m = re.match(r"(\|\s*`([^`]+)`\s*\|)\s*([\d ]+?)\s*\|(.*)", line)
        if m and m.group(2) in entries:
            actual = counts[entries.index(m.group(2))]
            shown = int(m.group(3).replace(" ", ""))
            if shown != actual and not write:
                problems.append(f"{DOC.name}: {m.group(2)} is listed with {shown} lines, has {actual}")
            number = f"{actual:,}".replace(",", " ")
            line = f"{m.group(1)} {number} |{m.group(4)}"
        lines.append(line)
    if write:
        DOC.write_text(head + HEADING + "\n".join(lines) + ("\n## " + tail if tail else ""))
    return problems


def main():
    entries = floors()

    def floor_of(file):
        rel = file.relative_to(SRC).as_posix()
        best = None
        for i, e in enumerate(entries):
            if rel == e or (e.endswith("/") and rel.startswith(e)):
                if best is None or len(e) > len(entries[best]):
                    best = i
        return best

    files = sorted(f for f in SRC.rglob("*.rs") if f.name != "lib.rs")
    # Files declared `#[cfg(test)] mod x;` are test support, not the runtime.
    test_only = set()
    for f in files:
        here = module_path(f)
        for name in re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", f.read_text()):
            target = resolve(here + [name])
            if target:
                test_only.add(target)
    files = [f for f in files if f not in test_only]
    graph = {f: imports(f) for f in files}
    problems = []
    for f in files:
        if floor_of(f) is None:
            problems.append(f"{f.relative_to(SRC)}: on no floor of the table in {DOC.name}")
    for f, targets in graph.items():
        ff = floor_of(f)
        for t in sorted(targets):
            ft = floor_of(t)
            if ff is not None and ft is not None and ft > ff:
                problems.append(
                    f"{f.relative_to(SRC)} ({entries[ff]}) imports {t.relative_to(SRC)} "
                    f"({entries[ft]}), a higher floor"
                )
    # Loops between files (Tarjan's strongly connected components).
    index, low, stack, on, loops = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    sys.setrecursionlimit(10000)
    for f in files:
        if f not in index:
            visit(f)
    for loop in loops:
        names = ", ".join(str(f.relative_to(SRC)) for f in loop)
        problems.append(f"import loop: {names}")
    problems.extend(check_line_counts(entries, floor_of, write="--write" in sys.argv[1:]))
    if problems:
        print("layers: the runtime's imports break ARCHITECTURE.md's floors:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(1)
    edges = sum(len(t) for t in graph.values())
    print(f"layers: {len(files)} modules, {edges} imports, {len(entries)} floors, no loop, none upward")


if __name__ == "__main__":
    main()
