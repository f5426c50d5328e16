#!/usr/bin/env python3
"""No import cycles inside any crate: print each cycle among a crate's modules and exit 1.

    python3 scripts/import-cycles.py           # every workspace member (Cargo.toml's members)
    python3 scripts/import-cycles.py serve     # some of them
    python3 scripts/import-cycles.py --graph   # also print each crate's module graph
    python3 scripts/import-cycles.py --root DIR   # another workspace (the test's broken one)

ARCHITECTURE.md's rule, as a check a reader can run (the test suite runs it:
tests/tests/workflows.rs). The nodes are a crate's top-level modules, the `mod NAME;` of its
src/lib.rs (or src/main.rs); a folder module's files (src/rwkv/*.rs) count as that module, and
the crate root's own items as the node `(root)`. An edge A -> B is any path into B written in
A: `crate::B::...`, `crate::{B::..., ...}`, `super::B` from a top-level module, a name the root
re-exports from B (`crate::Frame` with `pub use roll::Frame` in lib.rs), and in the root itself
`B::...`. Comments, strings and `#[cfg(test)]` items are left out: unit tests may reach up to
what they test against. Python 3 standard library only.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOT_NODE = "(root)"


def blank(match):
    """The matched text with everything but its newlines made spaces (line numbers stay)."""
    return re.sub(r"[^\n]", " ", match.group(0))


RAW_STRING = re.compile(r'b?r(#*)"')
CHAR = re.compile(r"b?'(?:\\.[^']*|[^\\'\n])'")  # not a lifetime: 'a' but not 'a
IDENTIFIER = re.compile(r"\w")


def code_only(text):
    """Rust source without comments, string and char literals, line for line."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
        elif (m := RAW_STRING.match(text, i)) and not (i and IDENTIFIER.match(text[i - 1])):
            end = '"' + m.group(1)
            j = text.find(end, m.end())
            j = n if j < 0 else j + len(end)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
        elif m := CHAR.match(text, i):
            j = m.end()
        else:
            out.append(c)
            i += 1
            continue
        out.append(re.sub(r"[^\n]", " ", text[i:j]))
        i = j
    return "".join(out)


def without_test_items(code):
    """`code` with each `#[cfg(test)]` item (a `mod tests { ... }`, a `use ...;`) blanked."""
    attribute = re.compile(r"#\[cfg\(test\)\]")
    while m := attribute.search(code):
        depth, j = 0, m.end()
        while j < len(code):
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            elif code[j] == ";" and depth == 0:
                break
            j += 1
        code = code[: m.start()] + re.sub(r"[^\n]", " ", code[m.start() : j + 1]) + code[j + 1 :]
    return code


def first_segments(tree):
    """The first path segment of each path in a use tree's braces: `a::X, b::{Y, Z}` -> a, b."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(tree + ","):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(tree[start:i])
            start = i + 1
    segments = []
    for item in items:
        item = item.strip()
        if item.startswith("{"):
            segments += first_segments(item[1:-1])
        elif m := re.match(r"\w+", item):
            segments.append(m.group(0))
    return segments


def braced(code, open_at):
    """The text inside the braces that open at `open_at`."""
    depth = 0
    for j in range(open_at, len(code)):
        depth += {"{": 1, "}": -1}.get(code[j], 0)
        if depth == 0:
            return code[open_at + 1 : j]
    return code[open_at + 1 :]


def references(code, prefix):
    """(offset, first segment) of each path after `prefix` (a regex ending in `::`)."""
    found = []
    for m in re.finditer(r"(?<![\w$])" + prefix + r"\s*(\{|\w+)", code):
        if m.group(1) == "{":
            found += [(m.start(), s) for s in first_segments(braced(code, m.start(1)))]
        else:
            found.append((m.start(), m.group(1)))
    return found


class Crate:
    def __init__(self, folder, root_file):
        self.folder = folder
        self.src = folder / "src"
        self.root_file = root_file
        root = without_test_items(code_only(root_file.read_text()))
        self.modules = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)", root, re.M))
        # What the root re-exports from its modules, by name: `pub use roll::{Frame, PianoRoll}`.
        self.reexports = {}
        for m in re.finditer(r"\bpub\s+use\s+(?:crate::|self::)?(\w+)::([^;]*);", root):
            names = re.findall(r"(\w+)\s*(?:[,}]|$)", m.group(2).replace("{", " { "))
            for name in names + re.findall(r"\bas\s+(\w+)", m.group(2)):
                self.reexports[name] = m.group(1)
        self.root_items = set(
            re.findall(
                r"\b(?:fn|struct|enum|const|static|type|trait|union|macro_rules!)\s+(\w+)", root
            )
        )

    def files(self):
        """(node, module path, file) of the root and every module file."""
        yield ROOT_NODE, [], self.root_file
        for module in sorted(self.modules):
            single = self.src / f"{module}.rs"
            if single.is_file():
                yield module, [module], single
            folder = self.src / module
            for file in sorted(folder.rglob("*.rs")) if folder.is_dir() else []:
                parts = list(file.relative_to(self.src).with_suffix("").parts)
                if parts[-1] == "mod":
                    parts.pop()
                yield module, parts, file

    def node(self, name):
        """The node a first segment at the crate root names, or None (an external crate, `*`)."""
        if name in self.modules:
            return name
        if name in self.reexports and self.reexports[name] in self.modules:
            return self.reexports[name]
        if name in self.root_items:
            return ROOT_NODE
        return None

    def graph(self):
        """{node: {other node: [where, ...]}} of the crate's modules."""
        edges = {}
        for node, path, file in self.files():
            edges.setdefault(node, {})
            code = without_test_items(code_only(file.read_text()))
            if node == ROOT_NODE:
                # Re-exports are the crate's face, not the root depending on its modules.
                code = re.sub(r"\bpub\s+use\s[^;]*;", blank, code)
                code = re.sub(r"\bmod\s+\w+\s*;", blank, code)
            found = [(at, self.node(s)) for at, s in references(code, r"crate::")]
            for m in re.finditer(r"(?<![\w$])((?:super\s*::\s*)+)(\{|\w+)", code):
                # Only a path that climbs to the crate root leaves this module's node.
                if len(path) <= m.group(1).count("super"):
                    tree = m.group(2)
                    names = first_segments(braced(code, m.start(2))) if tree == "{" else [tree]
                    found += [(m.start(), self.node(s)) for s in names]
            if node == ROOT_NODE:
                names = "|".join(sorted(self.modules)) or "(?!)"
                paths = re.finditer(rf"(?<![\w:$])({names})::", code)
                found += [(m.start(), m.group(1)) for m in paths]
            lines = file.read_text().splitlines()
            for at, target in found:
                if target and target != node:
                    line = code.count("\n", 0, at) + 1
                    text = lines[line - 1].strip()
                    where = f"{file.relative_to(ROOT)}:{line}: {text}"
                    edges[node].setdefault(target, []).append(where)
        return edges


def cycles(edges):
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def members():
    text = (ROOT / "Cargo.toml").read_text()
    block = re.search(r"^members\s*=\s*\[([^\]]*)\]", text, re.M)
    return re.findall(r'"([^"]+)"', block.group(1)) if block else []


def main(argv):
    global ROOT
    if "--root" in argv:
        at = argv.index("--root")
        ROOT = Path(argv[at + 1]).resolve()
        argv = argv[:at] + argv[at + 2 :]
    show_graph = "--graph" in argv
    wanted = [a for a in argv if not a.startswith("--")] or members()
    problems = 0
    for member in wanted:
        folder = ROOT / member
        roots = [folder / "src" / f for f in ("lib.rs", "main.rs")]
        roots = [root for root in roots if root.is_file()]
        if not roots:
            print(f"{member}: no src/lib.rs or src/main.rs", file=sys.stderr)
            problems += 1
            continue
        for root in roots:
            crate = Crate(folder, root)
            edges = crate.graph()
            name = f"{member} ({root.name})"
            if show_graph:
                for node in sorted(edges):
                    print(f"{name}: {node} -> {', '.join(sorted(edges[node])) or '-'}")
            for cycle in cycles(edges):
                problems += 1
                print(f"{name}: import cycle among {', '.join(cycle)}:")
                for a in cycle:
                    for b in cycle:
                        for where in edges[a].get(b, [])[:3]:
                            print(f"  {a} -> {b}  {where}")
    if problems:
        print(
            f"{problems} import cycle(s) or problem(s); ARCHITECTURE.md: modules import one way",
            file=sys.stderr,
        )
        return 1
    print(f"no import cycles in {', '.join(wanted)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
