"""The documentation keeps up with the code: every command and option is in the command
reference, every HTTP route in docs/api.md, every relative link and #anchor resolves, the
architecture page's import rules hold, and CI runs the README's test command.

Each failure lists exactly what is missing, so that it can be filled in as listed."""

import ast
import re
from pathlib import Path

import click
from starlette.routing import Mount

from search.cli.app import cli
from tests.helpers import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
CLI_PAGE = DOCS / "cli.md"
API_PAGE = DOCS / "api.md"
ARCHITECTURE_PAGE = DOCS / "architecture.md"

# Routes FastAPI adds for its own OpenAPI docs: documented in prose on docs/api.md, not as rows.
OPENAPI_INTERNALS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static-docs"}


def strip_code(text: str) -> str:
    """The text outside fenced code blocks (``` lines), code lines blanked (line numbers kept)."""
    out, fence = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fence = not fence
            out.append("")
        else:
            out.append("" if fence else line)
    return "\n".join(out)


def headings(text: str) -> list[tuple[int, str, int]]:
    """(level, text, line number) of each Markdown heading outside code blocks."""
    found = []
    for number, line in enumerate(strip_code(text).split("\n")):
        if m := re.match(r"(#{1,6}) +(.*?) *#*$", line):
            found.append((len(m.group(1)), m.group(2), number))
    return found


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, heading, _ in headings(text):
        slug = anchor(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


# --- the command line ---------------------------------------------------------------------------


def command_sections(text: str) -> dict[str, str]:
    """Each '## `NAME`' section of docs/cli.md, up to the next heading of its level or above."""
    lines = text.split("\n")
    marks = headings(text)
    sections = {}
    for i, (level, heading, start) in enumerate(marks):
        if m := re.fullmatch(r"`(?:dinosearch )?([\w-]+)`", heading):
            end = next((n for lv, _, n in marks[i + 1 :] if lv <= level), len(lines))
            sections[m.group(1)] = "\n".join(lines[start:end])
    return sections


def mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_every_command_and_option_is_in_the_command_reference():
    everything = "\n".join(page.read_text() for page in PAGES)
    reference = CLI_PAGE.read_text()
    sections = command_sections(reference)
    missing = []
    for option in (o for p in cli.params for o in p.opts + p.secondary_opts):
        if not mentions(reference, option):
            missing.append(f"docs/cli.md: dinosearch {option}")
    for name, command in sorted(cli.commands.items()):
        if f"dinosearch {name}" not in everything:
            missing.append(f"README.md or docs/: the command 'dinosearch {name}'")
        section = sections.get(name)
        if section is None:
            missing.append(f"docs/cli.md: a section '## `{name}`' for dinosearch {name}")
            continue
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            for option in param.opts + param.secondary_opts:
                if not mentions(section, option):
                    missing.append(f"docs/cli.md, section `{name}`: dinosearch {name} {option}")
    assert not missing, "undocumented (add a row or a mention):\n" + "\n".join(missing)


def test_every_command_help_has_an_example():
    for name, command in cli.commands.items():
        assert "dinosearch" in (command.help or ""), f"{name} --help has no example"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    block = re.search(r"## Test it\n+```bash\n(.*?)```", README.read_text(), re.S).group(1)
    assert block.strip().splitlines() == ["pip install -e '.[dev]'", "pytest -q"]
    command = block.strip().splitlines()[-1]
    assert command in ci


# --- the HTTP API -------------------------------------------------------------------------------


def served_routes(routes, prefix=""):
    """(method, path) of every route the app serves; ("MOUNT", path) for mounted apps."""
    for route in routes:
        inner = getattr(route, "original_router", None)  # newer FastAPI keeps included routers
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from served_routes(inner.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(route, Mount):
            yield "MOUNT", prefix + route.path
        else:
            for method in sorted(set(route.methods or ()) - {"HEAD"}):
                yield method, prefix + route.path


def test_every_route_is_in_the_api_page(tmp_path):
    from search.collection import Collection
    from search.web.app import create_app

    app = create_app(Collection(tmp_path / "library"))
    routes = sorted(set(served_routes(app.routes)))
    operations = [r for r in routes if r[0] != "MOUNT" and r[1] not in OPENAPI_INTERNALS]
    assert len(operations) >= 28, f"the route walk found too few routes: {routes}"  # 27 + page
    page = API_PAGE.read_text()
    missing = []
    for method, path in routes:
        if path in OPENAPI_INTERNALS:
            continue
        if method == "MOUNT":
            if f"`{path}/`" not in page:
                missing.append(f"docs/api.md: the files served under `{path}/`")
        elif not re.search(rf"{method} {re.escape(path)}(?![\w/{{}}-])", page):
            missing.append(f"docs/api.md: `{method} {path}`")
    assert not missing, "routes missing from docs/api.md:\n" + "\n".join(missing)


# --- links --------------------------------------------------------------------------------------


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in PAGES:
        text = page.read_text()
        prose = re.sub(r"`[^`\n]*`", "", strip_code(text))
        for target in LINK.findall(prose):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not file.exists():
                broken.append(f"{where}: no file {path}")
            elif fragment and file.suffix == ".md" and fragment not in anchors(file.read_text()):
                broken.append(f"{where}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_anchor_matches_github():
    assert anchor("`serve`: the web page and HTTP API") == "serve-the-web-page-and-http-api"
    assert anchor("Watched folders: `index --watch`") == "watched-folders-index---watch"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


# --- the architecture page ----------------------------------------------------------------------


def room_of(module: str, rooms: list[str]) -> str | None:
    """The longest room (a dotted package) that holds module."""
    holding = [r for r in rooms if module == r or module.startswith(r + ".")]
    return max(holding, key=len, default=None)


def import_rules() -> dict[str, dict[str, set[str] | None]]:
    """The page's table: room -> {room it may import: only these modules, or None for any}."""
    rules: dict[str, dict[str, set[str] | None]] = {}
    for line in ARCHITECTURE_PAGE.read_text().split("\n"):
        if not (m := re.match(r"\| `([\w/]+)/` \| (.*) \|$", line)):
            continue
        allowed: dict[str, set[str] | None] = {}
        for target, only in re.findall(r"`([\w/]+)/`(?: \(([^)]*)\))?", m.group(2)):
            allowed[target.replace("/", ".")] = set(re.findall(r"`(\w+)`", only)) if only else None
        rules[m.group(1).replace("/", ".")] = allowed
    return rules


def imports_of(path: Path) -> list[str]:
    """The modules a file imports (from X import y: X.y when y is a module, else X)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = ROOT.joinpath(*node.module.split("."))
            for alias in node.names:
                is_module = (base / f"{alias.name}.py").exists() or (base / alias.name).is_dir()
                found.append(f"{node.module}.{alias.name}" if is_module else node.module)
    return found


def test_imports_follow_the_architecture_page():
    rules = import_rules()
    assert {"indexer", "indexer.library", "search", "search.web", "search.cli"} <= set(rules)
    rooms = list(rules)
    wrong = []
    for path in sorted([*ROOT.glob("indexer/**/*.py"), *ROOT.glob("search/**/*.py")]):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        here = room_of(module, rooms)
        for imported in imports_of(path):
            there = room_of(imported, rooms)
            if there is None or there == here:
                continue
            allowed = rules[here]
            name = imported[len(there) + 1 :].split(".")[0] or "__init__"
            if there not in allowed or (allowed[there] is not None and name not in allowed[there]):
                wrong.append(f"{path.relative_to(ROOT)} imports {imported} ({here} -> {there})")
    assert not wrong, "imports the architecture page does not allow:\n" + "\n".join(wrong)


def test_sql_is_written_only_in_the_library():
    outside = [
        str(path.relative_to(ROOT))
        for path in sorted([*ROOT.glob("indexer/**/*.py"), *ROOT.glob("search/**/*.py")])
        if "indexer/library/" not in path.as_posix()
        and re.search(r"\.execute(many|script)?\(", path.read_text())
    ]
    assert not outside, f"SQL outside indexer/library/: {outside}"
