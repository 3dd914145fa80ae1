"""Find a project's step files and import them into StepDefs.

A step file is any ``*.step.py`` or ``*_step.py`` under the project's step folders (``steps/`` and
``src/`` unless ``wayang.toml`` says otherwise), at any depth; ``__pycache__``, ``node_modules``,
virtual environments and hidden folders are skipped. A file declares steps with a Motia-style
``config`` dict and ``handler``, with Wayang's ``@step`` helpers, or both.

Each file is imported as its own module, named after its path relative to the project root
(``steps/orders/create.step.py`` → ``wayang_step_steps_orders_create_step_py_<hash>``), and the
project root is put on ``sys.path`` so step files can import the project's own modules. Files are
read once: the regular import machinery (with its bytecode cache) executes them, and the line of
``config`` is found with one regular-expression search of the text, not a parse.

Nothing a step file does at import time can produce a traceback here: an exception becomes an
error diagnostic at the line of the file where it happened. :class:`StepLoader` keeps what each
file gave, so ``wayang dev`` can re-import just the files that changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FunctionType, ModuleType, TracebackType
from typing import Any, Final

from wayang.errors import Diagnostic, Severity
from wayang.steps.config import MISSING, StepSource, step_from_config
from wayang.steps.helpers import StepDeclaration, declaration_of
from wayang.steps.model import StepDef

__all__ = [
    "DEFAULT_FOLDERS",
    "LoadedFile",
    "StepLoader",
    "discover_steps",
    "find_step_files",
    "is_step_file",
    "load_step_file",
    "module_name",
]

DEFAULT_FOLDERS: Final = ("steps", "src")
MODULE_PREFIX: Final = "wayang_step_"
_SKIPPED_DIRS: Final = frozenset({"__pycache__", "node_modules", "venv", "site-packages"})
_CONFIG_LINE = re.compile(rb"^config[ \t]*(?::[^=\n]*)?=(?!=)", re.MULTILINE)
_NOT_IDENTIFIER = re.compile(r"\W")
_DECLARABLE: Final = (FunctionType, StepDeclaration)


@dataclass(frozen=True, slots=True)
class LoadedFile:
    """What one step file gave: its steps, its diagnostics and the module it became."""

    path: Path  # absolute
    steps: tuple[StepDef, ...]
    diagnostics: tuple[Diagnostic, ...]
    module: str = ""  # empty when the import failed


def is_step_file(name: str) -> bool:
    """Whether a file name is a step file's (``*.step.py`` or ``*_step.py``)."""
    return name.endswith((".step.py", "_step.py"))


def find_step_files(root: Path, folders: Sequence[str] = DEFAULT_FOLDERS) -> list[Path]:
    """Every step file under ``root``'s ``folders``, absolute, sorted; a missing folder has none."""
    found: set[Path] = set()
    for folder in folders:
        top = (root / folder).resolve()
        for directory, subdirs, files in os.walk(top):
            subdirs[:] = [name for name in subdirs if _walkable(name)]
            found.update(Path(directory, name) for name in files if is_step_file(name))
    return sorted(found)


def _walkable(name: str) -> bool:
    return not name.startswith(".") and name not in _SKIPPED_DIRS


def discover_steps(
    root: Path, folders: Sequence[str] = DEFAULT_FOLDERS
) -> tuple[list[StepDef], list[Diagnostic]]:
    """Load every step file of the project at ``root``: all steps and all diagnostics."""
    return StepLoader(root, folders).load()


def load_step_file(path: Path, root: Path) -> LoadedFile:
    """Import one step file and read the steps it declares.

    Its module is registered in ``sys.modules``; ``root`` should already be on ``sys.path`` (as
    :class:`StepLoader` arranges) if the file imports the project's own modules.
    """
    return _load(path.resolve(), root.resolve())


def _load(path: Path, root: Path) -> LoadedFile:
    """:func:`load_step_file` for paths already resolved (resolving costs a system call each)."""
    shown = _relative(path, root)
    name = module_name(shown)
    try:
        module = _import(path, name)
    except (Exception, SystemExit) as exc:
        return LoadedFile(path, (), (_import_error(exc, path, shown, root),))
    steps, diagnostics = _module_steps(module, path, shown)
    return LoadedFile(path, tuple(steps), tuple(diagnostics), name)


def module_name(shown: Path) -> str:
    """The module name of a step file, from its path relative to the project root."""
    text = shown.as_posix()
    digest = hashlib.blake2s(text.encode(), digest_size=4).hexdigest()
    return f"{MODULE_PREFIX}{_NOT_IDENTIFIER.sub('_', text)}_{digest}"


class StepLoader:
    """Loads a project's step files and re-imports the ones that change.

    It puts ``root`` on ``sys.path`` (first) and registers each step file's module in
    ``sys.modules``; :meth:`close` removes the modules again.
    """

    def __init__(self, root: Path, folders: Sequence[str] = DEFAULT_FOLDERS) -> None:
        self.root = root.resolve()
        self.folders = tuple(folders)
        self.files: dict[Path, LoadedFile] = {}
        self._folder_diagnostics: list[Diagnostic] = []

    def load(self) -> tuple[list[StepDef], list[Diagnostic]]:
        """(Re)load every step file."""
        return self.reload((), everything=True)

    def reload(
        self, changed: Iterable[Path], *, everything: bool = False
    ) -> tuple[list[StepDef], list[Diagnostic]]:
        """Re-import the changed step files, pick up new and deleted ones; give the whole set.

        A changed ``.py`` file that is not a step file (a module the steps import) is dropped
        from ``sys.modules`` and every step file is re-imported, since any of them may use it.
        """
        _put_on_path(self.root)
        self._folder_diagnostics = self._check_folders()
        paths = find_step_files(self.root, self.folders)
        stale = {path.resolve() for path in changed}
        for path in stale:
            _forget_bytecode(path)
        if _evict_modules(stale - set(paths) - set(self.files)):
            everything = True
        for gone in set(self.files) - set(paths):
            sys.modules.pop(self.files.pop(gone).module, None)
        for path in paths:
            if everything or path in stale or path not in self.files:
                self.files[path] = _load(path, self.root)
        return self.steps, self.diagnostics

    @property
    def steps(self) -> list[StepDef]:
        return [step for path in sorted(self.files) for step in self.files[path].steps]

    @property
    def diagnostics(self) -> list[Diagnostic]:
        found = [d for path in sorted(self.files) for d in self.files[path].diagnostics]
        return self._folder_diagnostics + found

    def close(self) -> None:
        """Forget every loaded file and drop its module from ``sys.modules``."""
        for loaded in self.files.values():
            sys.modules.pop(loaded.module, None)
        self.files.clear()

    def _check_folders(self) -> list[Diagnostic]:
        return [
            Diagnostic(
                str(self.root / folder),
                0,
                0,
                f"step folder '{folder}' does not exist under {self.root}; create it or fix "
                "[steps] folders in wayang.toml",
                Severity.WARNING,
                "step-folder",
            )
            for folder in self.folders
            if folder not in DEFAULT_FOLDERS and not (self.root / folder).is_dir()
        ]


# --- importing ---------------------------------------------------------------------------------


def _put_on_path(root: Path) -> None:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def _forget_bytecode(path: Path) -> None:
    """Delete the cached bytecode of a changed file. It is trusted while the file's size and
    modification time in whole seconds agree, so an edit that keeps the size within the same
    second (``201`` to ``202``) would run the old code on reload."""
    if path.suffix != ".py":
        return
    with contextlib.suppress(OSError, ValueError):
        Path(importlib.util.cache_from_source(str(path))).unlink(missing_ok=True)


def _evict_modules(paths: set[Path]) -> bool:
    """Drop the modules loaded from ``paths`` (project modules that changed); any dropped?"""
    sources = {str(path) for path in paths if path.suffix == ".py"}
    if not sources:
        return False
    names = [
        name
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None) in sources
    ]
    for name in names:
        del sys.modules[name]
    return bool(names)


def _import(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise ImportError(f"no loader for {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before running, as a normal import does: dataclasses and pydantic look the
    # module up by name while the file executes.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:
        return path


def _import_error(exc: BaseException, path: Path, shown: Path, root: Path) -> Diagnostic:
    line, column, origin = _error_position(exc, str(path), root)
    where = f" (raised at {_relative(Path(origin[0]), root)}:{origin[1]})" if origin else ""
    message = f"cannot import this step file: {type(exc).__name__}: {exc}{where}; " + _advice(exc)
    return Diagnostic(str(shown), line, column, message, Severity.ERROR, "step-import")


def _advice(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError):
        return (
            "install the package in the project's environment, or fix the import "
            "(the project root is on sys.path)"
        )
    return "fix the error and load the steps again"


def _error_position(
    exc: BaseException, filename: str, root: Path
) -> tuple[int, int, tuple[str, int] | None]:
    """Where in ``filename`` ``exc`` arose (line, column), and the place in another file of the
    project that raised it, if one did (library internals are left out: they are noise)."""
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        return exc.lineno or 1, exc.offset or 1, None
    line, origin = 1, None
    for file, number in _frames(exc.__traceback__):
        if file == filename:
            line, origin = number, None
        elif _is_project_file(file, root):
            origin = (file, number)
    if isinstance(exc, SyntaxError) and exc.filename and _is_project_file(exc.filename, root):
        origin = (exc.filename, exc.lineno or 1)
    return line, 1, origin


def _is_project_file(file: str, root: Path) -> bool:
    return file.startswith(f"{root}{os.sep}") and "site-packages" not in file


def _frames(traceback: TracebackType | None) -> Iterable[tuple[str, int]]:
    while traceback is not None:
        yield traceback.tb_frame.f_code.co_filename, traceback.tb_lineno
        traceback = traceback.tb_next


# --- reading a module's steps ------------------------------------------------------------------


def _module_steps(
    module: ModuleType, path: Path, shown: Path
) -> tuple[list[StepDef], list[Diagnostic]]:
    namespace = vars(module)
    results = [_declared_step(value, decl, path, shown) for value, decl in _declarations(module)]
    if "config" in namespace:
        line = _config_line(path)
        handler = namespace.get("handler", MISSING)
        source = StepSource(shown, line, _handler_line(handler, str(path)) or line)
        results.insert(0, step_from_config(namespace["config"], handler, source))
    if not results:
        return [], [_empty_file(shown)]
    steps = [step for step, _ in results if step is not None]
    return steps, [d for _, diagnostics in results for d in diagnostics]


def _declarations(module: ModuleType) -> list[tuple[Any, StepDeclaration]]:
    """The steps declared with the helpers in this module (not imported from another), in order."""
    found: dict[int, tuple[Any, StepDeclaration]] = {}
    for value in vars(module).values():
        if isinstance(value, _DECLARABLE):
            decl = declaration_of(value)
            if decl is not None and decl.module == module.__name__:
                found.setdefault(id(decl), (value, decl))
    return sorted(found.values(), key=lambda pair: pair[1].line)


def _declared_step(
    value: Any, decl: StepDeclaration, path: Path, shown: Path
) -> tuple[StepDef | None, list[Diagnostic]]:
    handler = value if isinstance(value, FunctionType) else decl.handler
    source = StepSource(shown, decl.line, _handler_line(handler, str(path)) or decl.line)
    return step_from_config(decl.config, MISSING if handler is None else handler, source)


def _config_line(path: Path) -> int:
    try:
        text = path.read_bytes()
    except OSError:
        return 1
    match = _CONFIG_LINE.search(text)
    return text.count(b"\n", 0, match.start()) + 1 if match else 1


def _handler_line(handler: object, filename: str) -> int:
    code = getattr(handler, "__code__", None)
    if code is None or getattr(code, "co_filename", None) != filename:
        return 0
    line = code.co_firstlineno
    return line if isinstance(line, int) else 0


def _empty_file(shown: Path) -> Diagnostic:
    return Diagnostic(
        str(shown),
        1,
        1,
        "this step file declares no step: export 'config' (a dict) and 'handler', or decorate a "
        "handler with @step from wayang.steps — or rename the file so it does not end in "
        "'.step.py' or '_step.py'",
        Severity.ERROR,
        "step-empty",
    )
