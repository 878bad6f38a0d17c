"""`python -m app script-deps FILE [--write PATH]`: the pip requirements of an Azure ML scoring script, for
requirements/script.txt, from the conda file Azure ML built its environment from (myenv.yml, conda.yaml,
conda_dependencies.yml: `dependencies` plus their `pip:` section) or from a requirements.txt.

What the images already have, or must not get, is dropped with a note on stderr: Python and pip themselves, the
pinned model stack (a WARNING when the file asks for another version: the model must be pickled with the images'
one), and the azureml-* server and SDK packages (this module is the server, with its own stand-in for
`azureml.core.model.Model` and `azureml.contrib.services`). inference-schema and everything else is kept.

Also the small PEP 440 subset the image's selftest uses to check that requirements/script.txt is installed: the
image has no `packaging` (pip and setuptools are removed from it), so `satisfies` implements the comparison
operators (==, !=, <=, >=, <, >, ~=, ===, and ==/!= with .*) itself. Standard library only at import time:
PyYAML (a development requirement, never in an image) is imported only to read a conda file.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Not app.settings.REPO_ROOT: importing this module must not need the module's own dependencies.
REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_REQUIREMENTS = REPO_ROOT / "requirements" / "model.txt"

# The pinned model stack (requirements/model.txt), by canonical name; sklearn is scikit-learn's import name, and a
# deprecated PyPI package that only pulls scikit-learn in.
MODEL_STACK_ALIASES = {"sklearn": "scikit-learn"}
# Installers, not packages a script imports; the image removes pip and setuptools after its build.
INSTALLERS = {"pip", "setuptools", "wheel"}
# Azure ML's scoring server and SDK: the module serves the script itself (app/model/azureml).
SERVED = {"azureml-defaults", "azureml-core", "azureml-sdk", "azureml-inference-server-http", "azureml-contrib-services"}
# The server stack azureml-defaults used to bring: kept (a script may import them), but named as likely unneeded.
OLD_SERVER_STACK = {"flask", "gunicorn"}
# Conda packages that are system libraries or tools, not pip packages; the image has Debian's where it needs them.
CONDA_ONLY = {
    "_libgcc_mutex", "_openmp_mutex", "blas", "ca-certificates", "cudatoolkit", "cudnn", "intel-openmp", "libblas",
    "libgcc-ng", "libgomp", "libstdcxx-ng", "mkl", "nomkl", "openssl", "readline", "sqlite", "tk", "xz", "zlib",
}  # fmt: skip
# Conda names of packages PyPI knows by another name.
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "py-xgboost": "xgboost",
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "msgpack-python": "msgpack",
}

HEADER = (
    "# The scoring script's own pip requirements, from {source} (python -m app script-deps).\n"
    "# Both images install them with requirements/model.txt as constraints; see README, Script dependencies.\n"
)


class ScriptDepsError(ValueError):
    """The file cannot be converted (unreadable, not a conda file, PyYAML missing); the message says why."""


# --- versions and specifiers (PEP 440 subset) ---------------------------------------------------------------

_VERSION_RE = re.compile(
    r"""^\s*v?
    (?:(?P<epoch>\d+)!)?
    (?P<release>\d+(?:\.\d+)*)
    (?:[-_.]?(?P<pre_l>alpha|beta|preview|pre|rc|a|b|c)[-_.]?(?P<pre_n>\d+)?)?
    (?:-(?P<post_n1>\d+)|[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>\d+)?)?
    (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>\d+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_PRE_ORDER = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
_CLAUSE_RE = re.compile(r"^\s*(~=|===|==|!=|<=|>=|<|>)\s*([^\s,;]+)\s*$")


@dataclass(frozen=True)
class Version:
    epoch: int
    release: tuple[int, ...]  # as written: `==1.0.*` matches on the written segments
    pre: tuple[int, int] | None = None  # (0 a, 1 b, 2 rc; number)
    post: int | None = None
    dev: int | None = None
    local: str | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        """PEP 440 ordering (local labels left out: ordered comparisons ignore them)."""
        release = list(self.release)
        while len(release) > 1 and release[-1] == 0:
            release.pop()
        if self.pre is None and self.post is None and self.dev is not None:
            pre: tuple[int, ...] = (-1,)  # 1.0.dev0 sorts before 1.0a0
        elif self.pre is None:
            pre = (2,)
        else:
            pre = (1, *self.pre)
        post = (-1,) if self.post is None else (0, self.post)
        dev = (1,) if self.dev is None else (0, self.dev)
        return (self.epoch, tuple(release), pre, post, dev)


def parse_version(text: str) -> Version:
    match = _VERSION_RE.match(text)
    if not match:
        raise ValueError(f"not a PEP 440 version: {text!r}")
    g = match.groupdict()
    post = g["post_n1"] or (g["post_n2"] or "0" if g["post_l"] else None)
    return Version(
        epoch=int(g["epoch"] or 0),
        release=tuple(int(x) for x in g["release"].split(".")),
        pre=(_PRE_ORDER[g["pre_l"].lower()], int(g["pre_n"] or 0)) if g["pre_l"] else None,
        post=int(post) if post is not None else None,
        dev=int(g["dev_n"] or 0) if g["dev_l"] else None,
        local=g["local"].lower() if g["local"] else None,
    )


def _prefix_match(version: Version, prefix: Version) -> bool:
    padded = version.release + (0,) * max(0, len(prefix.release) - len(version.release))
    return version.epoch == prefix.epoch and padded[: len(prefix.release)] == prefix.release


def _same_base(a: Version, b: Version) -> bool:
    return Version(a.epoch, a.release).key == Version(b.epoch, b.release).key


def _clause(version: Version, raw: str, op: str, target_text: str) -> bool:
    if op == "===":
        return raw.strip().lower() == target_text.lower()
    if target_text.endswith(".*"):
        if op not in ("==", "!="):
            raise ValueError(f"{op}{target_text}: .* goes with == and != only")
        hit = _prefix_match(version, parse_version(target_text[:-2]))
        return hit if op == "==" else not hit
    target = parse_version(target_text)
    if op in ("==", "!="):
        # A local label in the candidate is ignored unless the specifier names one.
        hit = version.key == target.key and (target.local is None or version.local == target.local)
        return hit if op == "==" else not hit
    if op == "~=":
        if len(target.release) < 2:
            raise ValueError(f"~={target_text}: needs at least two release segments")
        return version.key >= target.key and _prefix_match(version, Version(target.epoch, target.release[:-1]))
    if op == ">=":
        return version.key >= target.key
    if op == "<=":
        return version.key <= target.key
    if op == ">":
        # >1.7 admits no post-release of 1.7 itself (1.7.post1) unless it names one (PEP 440's exclusive comparison).
        of_target = (
            Version(version.epoch, version.release, version.pre).key
            == Version(target.epoch, target.release, target.pre, dev=target.dev).key
        )
        if target.post is None and version.post is not None and of_target:
            return False
        return version.key > target.key
    # op == "<": <1.7 admits no pre-release of 1.7 (1.7rc1; for <1.7.post1, 1.7.post1.dev0) unless it names one.
    pre = version.pre is not None or version.dev is not None
    of_target = target.post is None or (version.pre is None and version.post == target.post)
    if target.pre is None and target.dev is None and pre and _same_base(version, target) and of_target:
        return False
    return version.key < target.key


def satisfies(version: str, specifier: str) -> bool:
    """Whether an installed version meets a specifier such as `>=1.2,!=1.3.*` (an empty one: any version).
    Pre-releases count, as they do for pip deciding whether an installed package will do. ValueError if either
    cannot be read."""
    parsed = parse_version(version) if specifier.strip() else None
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        match = _CLAUSE_RE.match(clause)
        if not match:
            raise ValueError(f"not a version specifier: {clause!r}")
        assert parsed is not None
        if not _clause(parsed, version, match.group(1), match.group(2)):
            return False
    return True


# --- requirements (the PEP 508 subset requirement files use) --------------------------------------------------

_REQUIREMENT_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?P<rest>.*?)\s*$"
)


def canonical_name(name: str) -> str:
    """PEP 503's normalised name: `Scikit_Learn` and `scikit-learn` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Requirement:
    name: str
    extras: tuple[str, ...] = ()
    specifier: str = ""  # comma-separated clauses without spaces, e.g. "==1.5.*" or ">=1.0,<2"
    marker: str = ""
    url: str = ""

    @property
    def key(self) -> str:
        return canonical_name(self.name)

    def __str__(self) -> str:
        text = self.name + (f"[{','.join(self.extras)}]" if self.extras else "")
        text += f" @ {self.url}" if self.url else self.specifier
        if self.marker:
            text += f" ; {self.marker}" if self.url else f"; {self.marker}"
        return text


def parse_requirement(line: str) -> Requirement | None:
    """A requirement line (`name[extras] specifier; marker` or `name @ url`), or None if the line is something else
    (an option, a path, a bare URL)."""
    match = _REQUIREMENT_RE.match(line)
    if not match or line.lstrip().startswith("-"):
        return None
    rest = match.group("rest")
    extras = tuple(e.strip() for e in (match.group("extras") or "").split(",") if e.strip())
    if rest.startswith("@"):
        url, _, marker = rest[1:].partition(" ;")
        return Requirement(match.group("name"), extras, url=url.strip(), marker=marker.strip())
    spec, _, marker = rest.partition(";")
    spec = spec.strip()
    if spec.startswith("(") and spec.endswith(")"):  # the old `name (>=1.0)` form of package metadata
        spec = spec[1:-1]
    clauses = [c.strip() for c in spec.split(",")] if spec else []
    if not all(_CLAUSE_RE.match(c) for c in clauses):
        return None
    return Requirement(match.group("name"), extras, ",".join(c.replace(" ", "") for c in clauses), marker.strip())


def requirement_lines(text: str) -> list[str]:
    """The lines of a requirements file that say something: comments and blank lines gone, continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line = (pending + line.lstrip()).strip()
        pending = ""
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def read_model_pins(path: Path = MODEL_REQUIREMENTS) -> dict[str, str]:
    """canonical name -> version of the pinned model stack."""
    pins = {}
    for line in requirement_lines(path.read_text()):
        requirement = parse_requirement(line)
        if requirement and requirement.specifier.startswith("==") and "," not in requirement.specifier:
            pins[requirement.key] = requirement.specifier[2:]
    return pins


# --- conda match specs ----------------------------------------------------------------------------------------


def _conda_version(version: str) -> str:
    """A conda version constraint as a pip specifier: `1.5` alone is exact, `=1.5` and `1.5*` are fuzzy (1.5.*),
    `>=1.5,<2` carries over; `|` (or) has no pip equivalent."""
    version = version.strip()
    if version in ("", "*"):
        return ""
    if "|" in version:
        raise ValueError("`|` (either of two versions) has no pip equivalent")
    clauses = []
    for clause in version.split(","):
        match = re.match(r"^(~=|===|==|!=|<=|>=|<|>|=)?\s*(\S+)$", clause.strip())
        if not match:
            raise ValueError(f"cannot read the version {clause!r}")
        op, ver = match.group(1) or "", match.group(2)
        fuzzy = op == "=" or ver.endswith("*")
        ver = ver.rstrip("*").rstrip(".")
        if fuzzy:
            if op not in ("", "=", "==", "!="):
                clauses.append(f"{op}{ver}")  # `>=1.5*` is just `>=1.5`
                continue
            clauses.append(f"{'!=' if op == '!=' else '=='}{ver}.*")
        else:
            clauses.append(f"{op if op else '=='}{ver}")
    return ",".join(clauses)


_CONDA_SPEC_RE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*(.*)$")


def conda_name(spec: str) -> str:
    """The package name of a conda spec, as conda calls it."""
    match = _CONDA_SPEC_RE.match(spec.strip().rpartition("::")[2])
    return match.group(1) if match else spec.strip()


def conda_requirement(spec: str) -> Requirement:
    """A conda `dependencies` entry (`pandas`, `pandas=1.5`, `pandas 1.5.3 py39_0`, `conda-forge::pandas>=1.5`,
    `pandas[version='>=1.5']`) as a pip requirement, conda names mapped to PyPI's. ValueError if it cannot be."""
    match = _CONDA_SPEC_RE.match(spec.strip().rpartition("::")[2])  # channel::name
    if not match:
        raise ValueError(f"not a conda package spec: {spec!r}")
    name, rest = match.group(1), match.group(2).strip()
    if rest.startswith("["):
        version = re.search(r"""version\s*=\s*['"]?([^'",\]]+(?:,[^'",\]]+)*)['"]?""", rest)
        rest = version.group(1) if version else ""
    elif rest.startswith("=") and not rest.startswith("=="):
        rest = "=" + rest[1:].split("=")[0]  # name=version=build: the build string goes
    else:
        rest = re.sub(r"(~=|===|==|!=|<=|>=|<|>)\s+", r"\1", rest)  # `pandas >= 1.5`
        rest = rest.split()[0] if rest else ""  # `pandas 1.5.3 py39_0`: the build string goes
    return Requirement(CONDA_TO_PYPI.get(name.lower(), name), specifier=_conda_version(rest))


# --- the conversion -------------------------------------------------------------------------------------------


@dataclass
class Conversion:
    """What goes into requirements/script.txt (requirements, or lines kept as they are) and why things did not."""

    lines: list[Requirement | str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def requirements(self) -> list[Requirement]:
        return [line for line in self.lines if isinstance(line, Requirement)]

    def render(self, source: str) -> str:
        return HEADER.format(source=source) + "".join(f"{line}\n" for line in self.lines)


def _wanted(specifier: str) -> str:
    """A specifier as a person says it: `==1.7.0.*` and `==1.7.0` are "1.7.0"."""
    if "," not in specifier and specifier.startswith("=="):
        return specifier[2:].removesuffix(".*")
    return specifier


class _Converter:
    def __init__(self, pins: dict[str, str]) -> None:
        self.pins = pins
        self.result = Conversion()
        self._kept: dict[tuple[str, str], tuple[int, Requirement]] = {}  # (name, marker) -> (line, requirement)

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    def add(self, entry: str, requirement: Requirement, keep_text: bool = False) -> None:
        """One entry of the file (`entry`: as written there, for the notes): kept, merged or dropped."""
        key = MODEL_STACK_ALIASES.get(requirement.key, requirement.key)
        if key == "python":
            self.note(f"dropped {entry}: the images run Debian trixie's Python 3.13")
        elif key in INSTALLERS:
            self.note(f"dropped {entry}: an installer; the images' build has its own and removes it from the image")
        elif key in self.pins:
            self._model_stack(entry, requirement, key)
        elif key.startswith("azureml-"):
            if key in SERVED:
                self.note(
                    f"dropped {entry}: the module is the scoring server, with its own stand-in for what scoring "
                    "scripts use of it (azureml.core.model.Model, azureml.contrib.services)"
                )
            else:
                self.note(
                    f"dropped {entry}: an Azure ML SDK package, not needed to serve; if score.py imports it, "
                    "add it to requirements/script.txt by hand"
                )
        elif key in CONDA_ONLY:
            self.note(f"dropped {entry}: a conda system package, not a pip one (the images have Debian's libraries)")
        else:
            if key in OLD_SERVER_STACK:
                self.note(f"kept {entry}: part of Azure ML's old server stack; remove it if score.py does not import it")
            self._keep(entry, requirement, keep_text)

    def _model_stack(self, entry: str, requirement: Requirement, key: str) -> None:
        pinned = self.pins[key]
        try:
            fits = satisfies(pinned, requirement.specifier)
        except ValueError:
            fits = False
        if fits:
            self.note(f"dropped {entry}: the images pin the model stack ({key} {pinned}, requirements/model.txt)")
        else:
            self.note(
                f"WARNING: {entry} asks for {key} {_wanted(requirement.specifier)}, the images have {key} {pinned} "
                f"(requirements/model.txt): dropped; the model must be trained and pickled with {key} {pinned}, "
                f"not {_wanted(requirement.specifier)}"
            )

    def _keep(self, entry: str, requirement: Requirement, keep_text: bool) -> None:
        """Kept as written (a pip line) or as converted (a conda entry); a package met again is merged into its
        first line, as pip wants each package once."""
        slot = (requirement.key, requirement.marker)
        if slot not in self._kept or requirement.url:
            self._kept[slot] = (len(self.result.lines), requirement)
            self.result.lines.append(entry.strip() if keep_text else requirement)
            return
        position, first = self._kept[slot]
        extras = tuple(dict.fromkeys(first.extras + requirement.extras))
        clauses = dict.fromkeys([*first.specifier.split(","), *requirement.specifier.split(",")])
        merged = Requirement(first.name, extras, ",".join(c for c in clauses if c), first.marker, first.url)
        self._kept[slot] = (position, merged)
        self.result.lines[position] = merged
        self.note(f"merged {entry} into {merged}: one line per package")

    def pip_line(self, line: str) -> None:
        requirement = parse_requirement(line)
        if requirement is None:
            self.note(
                f"kept {line.strip()} as it is: not a package name (in the image build, paths are relative to "
                "requirements/; images/check_script_deps.py cannot check it)"
            )
            self.result.lines.append(line.strip())
        else:
            self.add(line.strip(), requirement, keep_text=True)


def convert_conda(data: Any, pins: dict[str, str]) -> Conversion:
    """A conda environment file's contents (as PyYAML reads it)."""
    if not isinstance(data, dict) or not isinstance(data.get("dependencies"), list):
        hint = ""
        if isinstance(data, dict) and data.get("condaFile"):
            hint = f" (this looks like an inference config: its condaFile is {data['condaFile']})"
        raise ScriptDepsError(f"no `dependencies` list: not a conda environment file{hint}")
    converter = _Converter(pins)
    for entry in data["dependencies"]:
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key == "pip" and isinstance(value, list):
                    for line in value:
                        converter.pip_line(str(line))
                elif key != "pip":
                    converter.note(f"ignored the {key}: section: only conda packages and pip: are read")
            continue
        spec = str(entry)
        try:
            requirement = conda_requirement(spec)
        except ValueError as exc:
            converter.note(f"WARNING: {spec}: {exc}; kept the name only, add a version by hand if it matters")
            requirement = Requirement(CONDA_TO_PYPI.get(conda_name(spec).lower(), conda_name(spec)))
        if canonical_name(conda_name(spec)) != requirement.key:
            converter.note(f"{spec}: {conda_name(spec)} is conda's name, PyPI's is {requirement.name}")
        converter.add(spec, requirement)
    return converter.result


def convert_requirements(text: str, pins: dict[str, str]) -> Conversion:
    """A requirements.txt's contents."""
    converter = _Converter(pins)
    for line in requirement_lines(text):
        converter.pip_line(line)
    return converter.result


def convert_file(path: Path, pins: dict[str, str] | None = None) -> Conversion:
    """Any input file: `*.yml` / `*.yaml` is a conda environment file, anything else a requirements file."""
    pins = read_model_pins() if pins is None else pins
    text = path.read_text()
    if path.suffix.lower() not in (".yml", ".yaml"):
        return convert_requirements(text, pins)
    try:
        # Imported here: the command runs on a developer's machine (requirements/dev.txt); the images never need it.
        yaml = importlib.import_module("yaml")
    except ModuleNotFoundError:
        raise ScriptDepsError(
            f"reading a conda file needs PyYAML, which {sys.executable} does not have: "
            "install the development requirements (make venv, or pip install -r requirements/dev.txt)"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScriptDepsError(f"{path}: not valid YAML: {exc}") from None
    return convert_conda(data, pins)


def script_deps(file: str, write: str | None = None) -> int:
    """The command: the requirements on stdout (or into `write`), a note per dropped entry on stderr."""
    conversion = convert_file(Path(file))
    for note in conversion.notes:
        print(note, file=sys.stderr)
    text = conversion.render(file)
    if write is None:
        sys.stdout.write(text)
    else:
        Path(write).write_text(text)
        count = len(conversion.lines)
        print(f"wrote {count} requirement{'s' if count != 1 else ''} to {write}", file=sys.stderr)
    return 0
