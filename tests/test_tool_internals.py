"""sharewheel's use of auditwheel, delocate and delvewheel, checked against the installed releases.

Each tool is reached through one module of sharewheel (TOOLS) that imports it, lists every name
of it sharewheel uses (``NAMES``, public and private alike: none of the three documents a stable
Python API), states the range it was checked against (``CHECKED_AGAINST``, the pin in
pyproject.toml) and calls it with keyword arguments. These tests say, when a new release of a tool
breaks sharewheel, which name it dropped and which parameter it changed — the scheduled workflow
.github/workflows/newest-tools.yml runs them against the newest releases — and keep every use of
a tool in its one module, and delocate's swap of its Apple-tool wrappers in its one place.

The source is read with ``ast``, so what is checked is what reading shows: names bound by
imports, attributes of a tool's modules and classes, attributes of an instance bound to a name
(``x = Class(...)``, or ``except Class as x``), getattr/hasattr/setattr with a literal name.
Attributes of what a tool's function returned are listed in NAMES by hand.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import importlib.util
import inspect
import pkgutil
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "sharewheel"

#: each tool and sharewheel's one module for it
TOOLS = {
    "auditwheel": "sharewheel.adapters.manylinux",
    "delocate": "sharewheel.adapters._delocate",
    "delvewheel": "sharewheel.adapters._delvewheel",
}


def tool_module(tool: str) -> ModuleType:
    return importlib.import_module(TOOLS[tool])


def source_file(module: str) -> Path:
    return ROOT / "src" / Path(*module.split(".")).with_suffix(".py")


def shown(path: Path) -> str:
    return path.relative_to(ROOT / "src").as_posix()


def dotted(name: str) -> str:
    return name.replace(":", ".")


def installed(tool: str) -> str:
    return f"{tool} {version(tool)}"


# --- resolving module:qualified.name ----------------------------------------------------------


class _Declared:
    """An attribute a class declares (a dataclass field, an annotation, one its __init__ sets)
    but holds no value for until an instance exists."""


def _declares(cls: type, attribute: str) -> bool:
    for klass in inspect.getmro(cls):
        if dataclasses.is_dataclass(klass) and attribute in {f.name for f in dataclasses.fields(klass)}:
            return True
        if attribute in getattr(klass, "__annotations__", {}):
            return True
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr == attribute \
                    and isinstance(node.value, ast.Name) and node.value.id == "self":
                return True
    return False


def resolve(name: str) -> Any:
    """The object `module:qualified.name` names (the module for a bare module name); LookupError
    when the installed tool has no such thing."""
    module_name, _, qualname = name.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise LookupError(name) from None
    for part in qualname.split(".") if qualname else ():
        if not isinstance(obj, _Declared) and hasattr(obj, part):
            obj = getattr(obj, part)
        elif isinstance(obj, ModuleType) and hasattr(obj, "__path__") \
                and importlib.util.find_spec(f"{obj.__name__}.{part}") is not None:
            obj = importlib.import_module(f"{obj.__name__}.{part}")
        elif isinstance(obj, type) and _declares(obj, part):
            obj = _Declared()
        else:
            raise LookupError(name)
    return obj


def undecorated(function: Any) -> Any:
    """The function under a pass-through decorator (``def modify(filename, *args, **kwargs)``,
    delocate's ensure_permissions, which keeps no __wrapped__)."""
    function = inspect.unwrap(function)
    if inspect.isfunction(function) and function.__closure__:
        inner = [c.cell_contents for c in function.__closure__ if inspect.isfunction(c.cell_contents)]
        kinds = {p.kind for p in inspect.signature(function).parameters.values()}
        if len(inner) == 1 and {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD} <= kinds:
            return undecorated(inner[0])
    return function


# --- reading sharewheel's source --------------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    """What a name is bound to: a tool's module (``delocate.tools``), a name in one
    (``delocate.tools:InstallNameError``), or an instance of a class in one."""

    name: str
    instance: bool = False


@dataclass(frozen=True)
class Use:
    """A tool's name where a file uses it; for a call, the call (method: called on an instance)."""

    name: str
    path: Path
    line: int
    call: ast.Call | None = None
    method: bool = False

    @property
    def where(self) -> str:
        return f"{shown(self.path)}:{self.line}"


class ToolUses(ast.NodeVisitor):
    """The names of the tools a source file uses, as far as reading it shows (see the module
    docstring), each call with its arguments, and each import of a tool."""

    def __init__(self, path: Path, tools: set[str]) -> None:
        self.path = path
        self.tools = tools
        self.scopes: list[dict[str, Binding | None]] = [{}]
        self.modules: set[str] = set()  # modules imported by `import a.b.c`
        self.uses: list[Use] = []
        self.imports: list[Use] = []
        self.setattrs: list[tuple[int, bool]] = []  # (line, whether on a tool's module or class) of setattr calls
        self.stores: list[int] = []  # lines assigning an attribute of a tool's module or class
        self.visit(ast.parse(path.read_text(), str(path)))

    def bind(self, name: str, binding: Binding | None) -> None:
        self.scopes[-1][name] = binding

    def lookup(self, name: str) -> Binding | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def attribute(self, base: Binding, attribute: str) -> Binding | None:
        """`base`.`attribute`: in a module, a module or a name; of a class or an instance, an
        attribute of the class; further down (a method of a field's value), not followed."""
        module, colon, qualname = base.name.partition(":")
        if not colon:
            dotted_name = f"{module}.{attribute}"
            if any(m == dotted_name or m.startswith(dotted_name + ".") for m in self.modules):
                return Binding(dotted_name)
            return Binding(f"{module}:{attribute}")
        class_like = qualname[:1].isupper() and not qualname.isupper()
        if "." in qualname or not (base.instance or class_like):
            return None
        return Binding(f"{base.name}.{attribute}")

    def ref(self, node: ast.AST) -> Binding | None:
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Attribute):
            base = self.ref(node.value)
            return None if base is None else self.attribute(base, node.attr)
        return None

    def store(self, node: ast.AST) -> None:
        """Names bound by assignment to anything but a tool's class's instance: no longer the tool's
        (`x.a = …` and `x[k] = …` leave `x` as it is)."""
        if isinstance(node, ast.Name):
            self.bind(node.id, None)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                self.store(element)
        elif isinstance(node, ast.Starred):
            self.store(node.value)

    def use(self, name: str, node: ast.AST, **call: Any) -> None:
        self.uses.append(Use(name, self.path, getattr(node, "lineno", 0), **call))

    def unbind_targets(self, target: ast.AST) -> None:
        self.store(target)
        for node in ast.walk(target):
            if isinstance(node, ast.Attribute):
                self.visit(node)

    # imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            root = alias.name.split(".")[0]
            if root not in self.tools:
                self.bind(alias.asname or root, None)
                continue
            self.modules.add(alias.name)
            self.imports.append(Use(alias.name, self.path, node.lineno))
            self.use(alias.name, node)
            self.bind(alias.asname or root, Binding(alias.name if alias.asname else root))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        tool = node.level == 0 and (node.module or "").split(".")[0] in self.tools
        for alias in node.names:
            if not tool:
                self.bind(alias.asname or alias.name, None)
                continue
            name = f"{node.module}:{alias.name}"
            self.imports.append(Use(name, self.path, node.lineno))
            self.use(name, node)
            self.bind(alias.asname or alias.name, Binding(name))

    # scopes
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for default in (*node.args.defaults, *node.args.kw_defaults):
            if default is not None:
                self.visit(default)
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self.visit(decorator)
            self.bind(node.name, None)
        self.scopes.append({})
        arguments = node.args
        for argument in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                         arguments.vararg, arguments.kwarg):
            if argument is not None:
                self.bind(argument.arg, None)
        for statement in node.body if isinstance(node.body, list) else [node.body]:
            self.visit(statement)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in (*node.bases, *node.decorator_list):
            self.visit(base)
        self.bind(node.name, None)
        self.scopes.append({})
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()

    # bindings
    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        instance = None
        if isinstance(node.value, ast.Call):
            made = self.ref(node.value.func)
            if made is not None and not made.instance and ":" in made.name \
                    and made.name.rpartition(".")[2].rpartition(":")[2][:1].isupper():
                instance = Binding(made.name, instance=True)  # a class's call: an instance of it
        for target in node.targets:
            self.unbind_targets(target)
            if instance is not None and isinstance(target, ast.Name):
                self.bind(target.id, instance)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.unbind_targets(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        self.unbind_targets(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.bind(node.target.id, None)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.unbind_targets(node.target)
        for statement in (*node.body, *node.orelse):
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_withitem(self, node: ast.withitem) -> None:
        self.visit(node.context_expr)
        if node.optional_vars is not None:
            self.unbind_targets(node.optional_vars)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        caught = None if node.type is None else self.ref(node.type)
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bind(node.name, None if caught is None else Binding(caught.name, instance=True))
        for statement in node.body:
            self.visit(statement)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.visit(node.iter)
        self.unbind_targets(node.target)
        for condition in node.ifs:
            self.visit(condition)

    # uses
    def visit_Attribute(self, node: ast.Attribute) -> None:
        found = self.ref(node)
        if found is not None:
            self.use(found.name, node)
            base = self.ref(node.value)
            if isinstance(node.ctx, ast.Store) and base is not None and not base.instance:
                self.stores.append(node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        found = self.ref(node.func)
        if found is not None and ":" in found.name:
            on = self.ref(node.func.value) if isinstance(node.func, ast.Attribute) else None
            self.use(found.name, node, call=node, method=on is not None and on.instance)
        if isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr") \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str):
            base = self.ref(node.args[0])
            found = None if base is None else self.attribute(base, node.args[1].value)
            if found is not None:
                self.use(found.name, node)
        if isinstance(node.func, ast.Name) and node.func.id == "setattr" and node.args:
            base = self.ref(node.args[0])
            self.setattrs.append((node.lineno, base is not None and not base.instance))
        if isinstance(node.func, (ast.Name, ast.Attribute)) \
                and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in ("import_module", "__import__") \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                and node.args[0].value.split(".")[0] in self.tools:
            self.imports.append(Use(node.args[0].value, self.path, node.lineno))
        self.generic_visit(node)


def sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def uses_in(tool: str) -> ToolUses:
    return ToolUses(source_file(TOOLS[tool]), {tool})


# --- (1) every listed name is in the installed tool, and every call fits its signature --------

LISTED = [(tool, name) for tool in TOOLS for name in tool_module(tool).NAMES]


@pytest.mark.parametrize("tool,name", LISTED, ids=[dotted(name) for _, name in LISTED])
def test_each_listed_name_is_in_the_installed_tool(tool: str, name: str) -> None:
    try:
        resolve(name)
        missing = ""
    except LookupError:
        missing = (f"{installed(tool)} has no {dotted(name)} ({TOOLS[tool]} uses it; it was checked against "
                   f"{tool_module(tool).CHECKED_AGAINST})")
    assert not missing, missing


def call_problems(use: Use, callee: Any) -> list[str]:
    """How a call of `callee` no longer fits its signature: arguments by position, keywords it
    does not take, parameters it now requires."""
    assert use.call is not None
    if isinstance(callee, type) and issubclass(callee, enum.Enum):
        return []  # Architecture("x86_64"): an enum member by value
    try:
        signature = inspect.signature(undecorated(callee))
    except (TypeError, ValueError):  # no signature (an exception class with BaseException's __init__)
        return [] if isinstance(callee, type) and issubclass(callee, BaseException) else ["has no signature"]
    parameters = list(signature.parameters.values())
    if use.method:
        parameters = parameters[1:]  # self
    kinds = inspect.Parameter
    problems = []
    passed: set[str | None] = set()
    for index, argument in enumerate(use.call.args):
        if isinstance(argument, ast.Starred) or index >= len(parameters) \
                or parameters[index].kind is kinds.VAR_POSITIONAL:
            break
        passed.add(parameters[index].name)
        if parameters[index].kind is not kinds.POSITIONAL_ONLY:
            problems.append(f"passes {parameters[index].name} by position (pass it by keyword)")
    names = {p.name for p in parameters}
    takes_any = any(p.kind is kinds.VAR_KEYWORD for p in parameters)
    for keyword in use.call.keywords:
        if keyword.arg is not None and keyword.arg not in names and not takes_any:
            problems.append(f"passes {keyword.arg}=, which it does not take (it takes {signature})")
        passed.add(keyword.arg)
    unpacked = None in passed or any(isinstance(a, ast.Starred) for a in use.call.args)
    for parameter in parameters:
        if not unpacked and parameter.default is kinds.empty and parameter.name not in passed \
                and parameter.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD):
            problems.append(f"does not pass {parameter.name}, which it requires")
    return problems


@pytest.mark.parametrize("tool", TOOLS)
def test_each_call_passes_keywords_the_installed_tool_takes(tool: str) -> None:
    calls = [use for use in uses_in(tool).uses if use.call is not None]
    problems = []
    for use in calls:
        try:
            callee = resolve(use.name)
        except LookupError:
            continue  # the test above names it
        problems += [f"{dotted(use.name)} (called at {use.where}) {problem}" for problem in call_problems(use, callee)]
    assert len(calls) >= 5, f"{TOOLS[tool]} calls {tool} only {len(calls)} times?"
    assert not problems, f"{installed(tool)}, checked against {tool_module(tool).CHECKED_AGAINST}:\n" + "\n".join(problems)


# --- (2) the list is complete, and every use of a tool is in its one module -------------------


@pytest.mark.parametrize("tool", TOOLS)
def test_names_lists_every_name_the_module_uses(tool: str) -> None:
    listed = set(tool_module(tool).NAMES)
    used: dict[str, Any] = {use.name: use for use in uses_in(tool).uses}
    # the swap looks its names up with getattr(module, name); test_swapped_functions_… checks them
    used |= {f"{module}:{name}": "the swap" for name, module in getattr(tool_module(tool), "SWAPPED", {}).items()}
    unlisted = sorted(f"{dotted(name)} (at {use.where})" for name, use in used.items()
                      if name not in listed and isinstance(use, Use))
    assert not unlisted, f"{TOOLS[tool]}.NAMES lacks what the module uses of {tool}: {', '.join(unlisted)}"
    # module-level names must still be used; attributes of classes may be used through objects
    # the tool returned, where reading cannot follow
    stale = sorted(dotted(name) for name in listed if "." not in name.partition(":")[2] and name not in used)
    assert not stale, f"{TOOLS[tool]}.NAMES lists what the module no longer uses: {', '.join(stale)}"


def test_each_tool_is_imported_by_its_one_module_only() -> None:
    stray = []
    importers: dict[str, set[str]] = {tool: set() for tool in TOOLS}
    for path in sources():
        for found in ToolUses(path, set(TOOLS)).imports:
            tool = found.name.split(".")[0].split(":")[0]
            importers[tool].add(shown(path))
            if path != source_file(TOOLS[tool]):
                stray.append(f"{found.where} imports {dotted(found.name)}: {tool}'s names belong in "
                             f"{shown(source_file(TOOLS[tool]))} (listed in its NAMES, called with keywords)")
    assert not stray, "\n".join(stray)
    assert importers == {tool: {shown(source_file(module))} for tool, module in TOOLS.items()}


class ToolObjects(ast.NodeVisitor):
    """Outside the tools' modules: private attributes (``_x``) read or set on what a tool's module
    returned (``patcher = manylinux.elf_patcher(...)``, then ``patcher._x``), as reading shows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.aliases: set[str] = set()
        self.scopes: list[set[str]] = [set()]
        self.checked = 0
        self.private: list[str] = []
        self.visit(ast.parse(path.read_text(), str(path)))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if f"{node.module}.{alias.name}" in TOOLS.values() or node.module in TOOLS.values():
                self.aliases.add(alias.asname or alias.name)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in TOOLS.values() and alias.asname:
                self.aliases.add(alias.asname)

    def is_tool(self, node: ast.AST) -> bool:
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and (node.id in self.aliases or any(node.id in s for s in self.scopes))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(set())
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        tool = self.is_tool(node.value) and not (isinstance(node.value, ast.Name) and node.value.id in self.aliases)
        for target in node.targets:
            names = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
            for name in (n for n in names if isinstance(n, ast.Name)):
                if tool:
                    self.scopes[-1].add(name.id)
                else:
                    self.scopes[-1].discard(name.id)

    def private_use(self, base: ast.AST, attribute: str, line: int) -> None:
        if not self.is_tool(base) or (isinstance(base, ast.Name) and base.id in self.aliases):
            return  # sharewheel's own module's names are sharewheel's
        self.checked += 1
        if attribute.startswith("_") and not attribute.startswith("__"):
            self.private.append(f"{shown(self.path)}:{line} .{attribute}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.private_use(node.value, node.attr, node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr") \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str):
            self.private_use(node.args[0], node.args[1].value, node.lineno)
        self.generic_visit(node)


def test_private_attributes_of_tool_objects_stay_in_the_tools_modules() -> None:
    checked = 0
    private = []
    for path in sources():
        if path in {source_file(module) for module in TOOLS.values()}:
            continue
        found = ToolObjects(path)
        checked += found.checked
        private += found.private
    assert not private, ("private attributes of what auditwheel, delocate or delvewheel returned, outside their "
                         "modules (move the access into the tool's module):\n" + "\n".join(private))
    assert checked >= 10, f"only {checked} attribute uses of tool objects seen: is the reading broken?"


@pytest.mark.parametrize("tool", TOOLS)
def test_checked_against_is_the_pin_in_pyproject(tool: str) -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    checked = tool_module(tool).CHECKED_AGAINST
    pinned = [d for d in dependencies if d.split(">")[0].split("<")[0].split("=")[0].strip() == tool]
    assert pinned == [checked], f"{TOOLS[tool]}.CHECKED_AGAINST is {checked}, pyproject.toml pins {pinned}"


# --- (3) delocate's swap: same signatures, every Apple-tool call covered, one place -----------


def test_swapped_functions_keep_delocates_signatures() -> None:
    from sharewheel.adapters import _delocate

    def parameters(function: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(undecorated(function)).parameters.values()]

    modules = [importlib.import_module(name) for name in _delocate.SWAPPED_IN]
    originals = {(m, name): getattr(m, name) for m in modules for name in _delocate.SWAPPED if hasattr(m, name)}
    missing = [f"{module}.{name}" for name, module in _delocate.SWAPPED.items()
               if not hasattr(importlib.import_module(module), name)]
    assert not missing, f"{installed('delocate')} has no {', '.join(missing)}, which sharewheel.adapters._delocate swaps"
    changed = []
    with _delocate.backend([]):
        for (module, name), original in originals.items():
            replacement = getattr(module, name)
            assert replacement is not original, f"{module.__name__}.{name} was not swapped"
            if parameters(original) != parameters(replacement):
                changed.append(f"{module.__name__}.{name}{inspect.signature(undecorated(original))}, "
                               f"sharewheel's replacement {inspect.signature(replacement)}")
    assert all(getattr(module, name) is original for (module, name), original in originals.items())
    assert not changed, (f"{installed('delocate')} changed what sharewheel swaps (same parameter names, kinds and "
                         "defaults needed):\n" + "\n".join(changed))
    assert len(originals) >= len(_delocate.SWAPPED)


def _runs_a_command(function: Any) -> bool:
    code = undecorated(function).__code__
    return bool({"_run", "back_tick", "subprocess"} & set(code.co_names))


def test_every_apple_tool_function_of_delocate_is_swapped() -> None:
    """A new delocate function that runs otool, install_name_tool, lipo or codesign, or a new
    module holding one, would run it during a repair: on Linux, a missing command."""
    import delocate
    import delocate.tools

    from sharewheel.adapters import _delocate

    commands = {id(f): name for name, f in vars(delocate.tools).items()
                if inspect.isfunction(f) and f.__module__ == "delocate.tools" and name not in ("_run", "back_tick")
                and _runs_a_command(f)}
    assert commands, "no delocate.tools function runs a command: is this still delocate?"
    uncovered = []
    for info in pkgutil.walk_packages(delocate.__path__, "delocate."):
        if ".tests" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if id(value) not in commands or commands[id(value)] in _delocate.NOT_SWAPPED:
                continue
            if info.name in _delocate.SWAPPED_IN and name not in _delocate.SWAPPED \
                    or info.name not in _delocate.SWAPPED_IN and info.name not in _delocate.NOT_SWAPPED_IN:
                uncovered.append(f"{info.name}.{name}")
    assert not uncovered, (f"{installed('delocate')}: these run an Apple tool and sharewheel.adapters._delocate does "
                           f"not swap them (SWAPPED, SWAPPED_IN, NOT_SWAPPED_IN): {', '.join(sorted(uncovered))}")
    assert set(_delocate.NOT_SWAPPED) <= set(commands.values()), "NOT_SWAPPED names what delocate no longer has"


def _swaps(path: Path) -> Iterator[tuple[str, int]]:
    """(enclosing function, line) of each replacement of a tool's functions in a file: a setattr
    call on a tool's module or class (any setattr call in a tool's module), or an assignment to
    an attribute of one."""
    tree = ast.parse(path.read_text(), str(path))
    uses = ToolUses(path, set(TOOLS))
    functions = [(n.lineno, n.end_lineno or n.lineno, n.name) for n in ast.walk(tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]

    def enclosing(line: int) -> str:
        inside = [(start, name) for start, end, name in functions if start <= line <= end]
        return max(inside)[1] if inside else "<module>"

    in_tool_module = path in {source_file(m) for m in TOOLS.values()}
    for line, on_tool in uses.setattrs:
        if on_tool or in_tool_module:
            yield enclosing(line), line
    for line in uses.stores:
        yield enclosing(line), line


def test_the_swap_is_one_small_documented_place() -> None:
    from sharewheel.adapters import _delocate, macho

    home = source_file(TOOLS["delocate"])
    swaps = [(path, function, line) for path in sources() for function, line in _swaps(path)]
    elsewhere = [f"{shown(path)}:{line} ({function})" for path, function, line in swaps
                 if (path, function) != (home, "backend")]
    assert not elsewhere, ("a pypa tool's functions are replaced outside sharewheel.adapters._delocate.backend, "
                           "the one place for it:\n" + "\n".join(elsewhere))
    assert swaps, "the swap was not found in sharewheel.adapters._delocate.backend"
    lines, _ = inspect.getsourcelines(inspect.unwrap(_delocate.backend))
    assert len(lines) <= 45, f"_delocate.backend has grown to {len(lines)} lines: keep the swap small"
    doc = inspect.getdoc(_delocate.backend) or ""
    assert "SWAPPED" in doc and "replaces" in doc, "_delocate.backend must say what it replaces, and where"
    assert "swap" in (_delocate.__doc__ or "")
    lacking = [name for name in _delocate.SWAPPED
               if name != "get_environment_variable_paths" and not callable(getattr(macho, name, None))]
    assert not lacking, f"sharewheel.adapters.macho lacks the replacements of {', '.join(lacking)}"
