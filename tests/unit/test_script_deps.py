"""requirements/script.txt end to end without a network or an image: `python -m app script-deps` on every conda file
of the Azure ML corpus and on requirements.txt input (what it keeps, drops and warns about), the version checks
the image's selftest makes without `packaging`, the selftest's scriptPackages, images/check_script_deps.py's
decisions with pip's answers faked at the subprocess boundary, and what the Dockerfiles do with the file."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from dockerfile_parse import DockerfileParser

from app import commands
from app.commands import script_deps, selftest
from app.commands.script_deps import (
    Requirement,
    ScriptDepsError,
    conda_requirement,
    convert_conda,
    convert_file,
    convert_requirements,
    parse_requirement,
    satisfies,
)
from app.settings import REPO_ROOT, Settings
from tests.azureml import corpus
from tests.helpers import load_images_script

pytestmark = pytest.mark.timeout(60)


def in_corpus(name: str) -> Path:
    """A file of the installed Azure ML corpus, "<slug>/<file>" (tests/azureml/corpus.py); skips without it."""
    slug, file = name.split("/", 1)
    return corpus.directory(slug) / file


PINS = {
    "numpy": "2.2.4",
    "scipy": "1.15.3",
    "scikit-learn": "1.4.2",
    "joblib": "1.4.2",
    "threadpoolctl": "3.1.0",
    "onnxruntime": "1.21.0",
}
SERVER = (
    "the module is the scoring server, with its own stand-in for what scoring scripts use of it "
    "(azureml.core.model.Model, azureml.contrib.services)"
)
INSTALLER = "an installer; the images' build has its own and removes it from the image"
PYTHON = "the images run Debian trixie's Python 3.13"


def _stack(name: str, version: str) -> str:
    return f"the images pin the model stack ({name} {version}, requirements/model.txt)"


def _warning(entry: str, name: str, wanted: str, pinned: str) -> str:
    return (
        f"WARNING: {entry} asks for {name} {wanted}, the images have {name} {pinned} (requirements/model.txt): dropped; "
        f"the model must be trained and pickled with {name} {pinned}, not {wanted}"
    )


# Every conda file of the corpus: the requirements it gives, and the notes (stderr), in order.
EXAMPLES_ENV = (
    ["pandas", "inference-schema"],
    [
        f"dropped python=3.10: {PYTHON}",
        _warning("scikit-learn=1.2.2", "scikit-learn", "1.2.2", PINS["scikit-learn"]),
        f"dropped numpy: {_stack('numpy', PINS['numpy'])}",
        f"dropped joblib: {_stack('joblib', PINS['joblib'])}",
        f"dropped azureml-inference-server-http: {SERVER}",
    ],
)
OPENAPI_ENV = (
    ["inference-schema"],
    [
        f"dropped python=3.10: {PYTHON}",
        f"dropped numpy: {_stack('numpy', PINS['numpy'])}",
        f"dropped pip: {INSTALLER}",
        f"dropped scikit-learn: {_stack('scikit-learn', PINS['scikit-learn'])}",
        f"dropped joblib: {_stack('joblib', PINS['joblib'])}",
        f"dropped azureml-inference-server-http: {SERVER}",
    ],
)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "examples_model1/conda.yaml": (
        ["inference-schema[numpy-support]"],
        [
            f"dropped python=3.12: {PYTHON}",
            _warning("numpy=2.3.1", "numpy", "2.3.1", PINS["numpy"]),
            f"dropped pip=25.1.1: {INSTALLER}",
            _warning("scikit-learn=1.7.0", "scikit-learn", "1.7.0", PINS["scikit-learn"]),
            _warning("scipy=1.16.0", "scipy", "1.16.0", PINS["scipy"]),
            f"dropped azureml-inference-server-http==1.4.1: {SERVER}",
            f"dropped joblib: {_stack('joblib', PINS['joblib'])}",
        ],
    ),
    "examples_numpy/env.yml": EXAMPLES_ENV,
    "examples_openapi_custom/env.yml": OPENAPI_ENV,
    "examples_openapi_decorated/env.yml": OPENAPI_ENV,
    "examples_pandas/env.yml": EXAMPLES_ENV,
    "examples_standard/env.yml": EXAMPLES_ENV,
    "iot_edge_anomaly/myenv.yml": (
        ["pandas"],
        [
            f"dropped python=3.6.2: {PYTHON}",
            f"dropped azureml-defaults==1.0.10: {SERVER}",
            f"dropped scikit-learn: {_stack('scikit-learn', PINS['scikit-learn'])}",
            f"dropped numpy: {_stack('numpy', PINS['numpy'])}",
        ],
    ),
    "mlops_diabetes/conda_dependencies.yml": (
        ["inference-schema[numpy-support]", "azure-storage-blob"],
        [
            f"dropped python=3.7.*: {PYTHON}",
            f"dropped pip: {INSTALLER}",
            f"dropped azureml-sdk==1.27.*: {SERVER}",
            f"dropped azureml-defaults==1.27.*: {SERVER}",
            f"dropped scikit-learn: {_stack('scikit-learn', PINS['scikit-learn'])}",
        ],
    ),
    "mlops_json_result/conda_dependencies.yml": (
        ["psutil==5.6.*", "pandas==0.25.3", "gunicorn==19.9.0", "flask==1.1.1"],
        [
            f"dropped python=3.7.5: {PYTHON}",
            f"dropped azureml-sdk==1.0.72: {SERVER}",
            _warning("scipy==1.3.1", "scipy", "1.3.1", PINS["scipy"]),
            _warning("scikit-learn==0.21.3", "scikit-learn", "0.21.3", PINS["scikit-learn"]),
            _warning("numpy==1.17.3", "numpy", "1.17.3", PINS["numpy"]),
            _warning("joblib==0.14.0", "joblib", "0.14.0", PINS["joblib"]),
            "kept gunicorn==19.9.0: part of Azure ML's old server stack; remove it if score.py does not import it",
            "kept flask==1.1.1: part of Azure ML's old server stack; remove it if score.py does not import it",
        ],
    ),
}


def _header(source: str) -> str:
    return (
        f"# The scoring script's own pip requirements, from {source} (python -m app script-deps).\n"
        "# Both images install them with requirements/model.txt as constraints; see README, Script dependencies.\n"
    )


def test_every_conda_file_of_the_corpus_has_its_expected_output() -> None:
    listed = {f"{slug}/{source.name}" for slug in corpus.slugs() for source in corpus.sources(slug)}
    found = {name for name in listed if name.endswith((".yml", ".yaml")) and not name.endswith("inference_config.yml")}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_conda_file(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    lines, notes = EXPECTED[name]
    source = str(in_corpus(name))
    assert script_deps.script_deps(source) == 0
    out, err = capsys.readouterr()
    assert out == _header(source) + "".join(f"{line}\n" for line in lines)
    assert err.splitlines() == notes
    assert convert_file(Path(source), PINS).render(source) == _header(source) + "".join(f"{x}\n" for x in lines)


def test_the_command_is_registered_and_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "script.txt"
    source = str(in_corpus("iot_edge_anomaly/myenv.yml"))
    assert commands.main(["script-deps", source, "--write", str(target)]) == 0
    assert target.read_text() == _header(source) + "pandas\n"
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == f"wrote 1 requirement to {target}"


def test_an_inference_config_is_refused_with_a_pointer_to_its_conda_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.main(["script-deps", str(in_corpus("mlops_diabetes/inference_config.yml"))]) == 2
    assert capsys.readouterr().err == (
        "error: no `dependencies` list: not a conda environment file (this looks like an inference config: "
        "its condaFile is ../conda_dependencies.yml)\n"
    )


def test_a_missing_pyyaml_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = script_deps.importlib.import_module

    def no_yaml(name: str) -> ModuleType:
        if name == "yaml":
            raise ModuleNotFoundError("No module named 'yaml'")
        return real(name)

    monkeypatch.setattr(script_deps.importlib, "import_module", no_yaml)
    with pytest.raises(ScriptDepsError) as caught:
        convert_file(in_corpus("iot_edge_anomaly/myenv.yml"), PINS)
    assert str(caught.value) == (
        f"reading a conda file needs PyYAML, which {sys.executable} does not have: "
        "install the development requirements (make venv, or pip install -r requirements/dev.txt)"
    )
    # a requirements file needs no YAML
    assert convert_file(REPO_ROOT / "requirements" / "script.txt", PINS).lines == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pandas", "pandas"),
        ("pandas=1.5", "pandas==1.5.*"),
        ("pandas=1.5.3", "pandas==1.5.3.*"),
        ("pandas==1.5.3", "pandas==1.5.3"),
        ("pandas 1.5.3", "pandas==1.5.3"),
        ("pandas 1.5.3 py39_0", "pandas==1.5.3"),
        ("pandas=1.5=py39_0", "pandas==1.5.*"),
        ("pandas 1.5.*", "pandas==1.5.*"),
        ("pandas 1.5*", "pandas==1.5.*"),
        ("pandas *", "pandas"),
        ("pandas >=1.5,<2", "pandas>=1.5,<2"),
        ("pandas>=1.5", "pandas>=1.5"),
        ("pandas >= 1.5", "pandas>=1.5"),
        ("pandas!=1.5.*", "pandas!=1.5.*"),
        ("conda-forge::pandas=1.5", "pandas==1.5.*"),
        ("pandas[version='>=1.5,<2']", "pandas>=1.5,<2"),
        ("python=3.7.*", "python==3.7.*"),
        ("pytorch=1.13", "torch==1.13.*"),
        ("py-xgboost", "xgboost"),
    ],
)
def test_conda_specs_become_pip_requirements(spec: str, expected: str) -> None:
    assert str(conda_requirement(spec)) == expected


def test_a_conda_or_has_no_pip_equivalent() -> None:
    with pytest.raises(ValueError, match=r"`\|` \(either of two versions\) has no pip equivalent"):
        conda_requirement("pandas >1|<0.5")
    conversion = convert_conda({"dependencies": ["pandas >1|<0.5"]}, PINS)
    assert [str(r) for r in conversion.lines] == ["pandas"]
    assert conversion.notes == [
        "WARNING: pandas >1|<0.5: `|` (either of two versions) has no pip equivalent; kept the name only, "
        "add a version by hand if it matters"
    ]


def test_drops_warnings_renames_and_merges() -> None:
    conversion = convert_conda(
        {
            "name": "x",
            "channels": ["conda-forge"],
            "dependencies": [
                "python=3.13",
                "setuptools",
                "openssl",
                "scikit-learn>=1.0",  # admits the pinned 1.4.2: no warning
                "numpy=2.2",  # 2.2.*: admits 2.2.4
                "threadpoolctl<3",
                "pytorch=1.13",
                "pandas=1.5",
                {"pip": ["sklearn", "azureml-core==1.48.0", "azureml-automl-runtime", "pandas>=1.0", "inference-schema"]},
                {"r-deps": ["r-base"]},
            ],
        },
        PINS,
    )
    assert [str(line) for line in conversion.lines] == ["torch==1.13.*", "pandas==1.5.*,>=1.0", "inference-schema"]
    assert conversion.notes == [
        f"dropped python=3.13: {PYTHON}",
        f"dropped setuptools: {INSTALLER}",
        "dropped openssl: a conda system package, not a pip one (the images have Debian's libraries)",
        f"dropped scikit-learn>=1.0: {_stack('scikit-learn', PINS['scikit-learn'])}",
        f"dropped numpy=2.2: {_stack('numpy', PINS['numpy'])}",
        _warning("threadpoolctl<3", "threadpoolctl", "<3", "3.1.0"),
        "pytorch=1.13: pytorch is conda's name, PyPI's is torch",
        f"dropped sklearn: {_stack('scikit-learn', PINS['scikit-learn'])}",
        f"dropped azureml-core==1.48.0: {SERVER}",
        "dropped azureml-automl-runtime: an Azure ML SDK package, not needed to serve; if score.py imports it, "
        "add it to requirements/script.txt by hand",
        "merged pandas>=1.0 into pandas==1.5.*,>=1.0: one line per package",
        "ignored the r-deps: section: only conda packages and pip: are read",
    ]


def test_a_requirements_txt_keeps_what_pip_reads_as_it_is() -> None:
    text = """# the script's packages
--extra-index-url https://example.invalid/simple
azureml-defaults==1.48.0
numpy==2.2.4   # the model stack, as pinned: dropped quietly
scikit-learn>=1.5
pandas>=1.5,<2 ; python_version >= "3.8"
inference-schema[pandas-support]==1.8
mylib @ https://example.invalid/mylib-1.0-py3-none-any.whl
-r other.txt
scipy \\
  ==1.15.3
"""
    conversion = convert_requirements(text, PINS)
    assert [str(line) for line in conversion.lines] == [
        "--extra-index-url https://example.invalid/simple",
        'pandas>=1.5,<2 ; python_version >= "3.8"',
        "inference-schema[pandas-support]==1.8",
        "mylib @ https://example.invalid/mylib-1.0-py3-none-any.whl",
        "-r other.txt",
    ]
    kept = (
        "as it is: not a package name (in the image build, paths are relative to requirements/; "
        "images/check_script_deps.py cannot check it)"
    )
    assert conversion.notes == [
        f"kept --extra-index-url https://example.invalid/simple {kept}",
        f"dropped azureml-defaults==1.48.0: {SERVER}",
        f"dropped numpy==2.2.4: {_stack('numpy', PINS['numpy'])}",
        _warning("scikit-learn>=1.5", "scikit-learn", ">=1.5", PINS["scikit-learn"]),
        f"kept -r other.txt {kept}",
        f"dropped scipy ==1.15.3: {_stack('scipy', PINS['scipy'])}",
    ]


def test_the_committed_script_txt_lists_no_package_and_the_model_pins_are_read_from_model_txt() -> None:
    assert convert_requirements((REPO_ROOT / "requirements" / "script.txt").read_text(), PINS).lines == []
    assert script_deps.read_model_pins() == PINS


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("pandas", Requirement("pandas")),
        (
            "Inference_Schema[numpy-support, pandas-support] >= 1.5 , <2",
            Requirement("Inference_Schema", ("numpy-support", "pandas-support"), ">=1.5,<2"),
        ),
        ('pandas==1.5.*; python_version < "3.12"', Requirement("pandas", (), "==1.5.*", 'python_version < "3.12"')),
        ("wrapt (<=1.16.0,>=1.14.0)", Requirement("wrapt", (), "<=1.16.0,>=1.14.0")),
        (
            "mylib @ https://x.invalid/m.whl ; os_name == 'posix'",
            Requirement("mylib", (), "", "os_name == 'posix'", "https://x.invalid/m.whl"),
        ),
        ("-r other.txt", None),
        ("./local/path", None),
        ("pandas ~~ 1", None),
    ],
)
def test_requirement_lines_are_read(line: str, expected: Requirement | None) -> None:
    assert parse_requirement(line) == expected


@pytest.mark.parametrize(
    ("version", "specifier", "expected"),
    [
        ("2.0.3", "", True),
        ("2.0.3", "==2.0.3", True),
        ("2.0.3", "==2.0", False),
        ("2.0", "==2.0.0", True),
        ("2.0.3", "==2.0.*", True),
        ("2.1.0", "==2.0.*", False),
        ("2", "==2.0.*", True),
        ("2.0.3", "!=2.0.*", False),
        ("2.0.3", "!=2.0.4", True),
        ("2.0.3", ">=1.5,<2", False),
        ("1.5.3", ">=1.5,<2", True),
        ("1.5.3", "<=1.5.3", True),
        ("1.5.3", ">1.5.3", False),
        ("1.5.3.post1", ">1.5.3", False),
        ("1.5.4", ">1.5.3", True),
        ("2.0.0rc1", "<2.0.0", False),
        ("2.0.0rc1", "<2.0.0rc2", True),
        ("1.9", "<2.0.0", True),
        ("1.8", "~=1.5", True),
        ("2.0", "~=1.5", False),
        ("1.5.9", "~=1.5.3", True),
        ("1.6.0", "~=1.5.3", False),
        ("1.0.dev1", "<1.0a1", True),
        ("1.0a1", ">=1.0", False),
        ("1.0", ">=1.0rc1", True),
        ("1!0.5", ">=2.0", True),
        ("1.2.1+dfsg", "==1.2.1", True),
        ("1.2.1", "==1.2.1+dfsg", False),
        ("1.0", "===1.0", True),
        ("1.0.0", "===1.0", False),
        ("2022.7.1", ">=2017.2", True),
    ],
)
def test_satisfies_follows_pep_440(version: str, specifier: str, expected: bool) -> None:
    assert satisfies(version, specifier) is expected


GRID = ["1.0", "1.0.0", "1.0a1", "1.0rc1", "1.0.post1", "1.0.dev1", "1.0a1.post1", "1.0.post1.dev1", "1.1", "2.0",
        "0.9", "1!1.0", "1.0+local", "1.0.1"]  # fmt: skip


def test_satisfies_agrees_with_packaging_on_a_grid() -> None:
    """packaging (a test dependency here, absent in the image) is the reference for every operator and edge case."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    compared = 0
    for version in GRID:
        for op in ("==", "!=", ">=", "<=", ">", "<", "~="):
            for target in [*GRID, "1.*", "1.0.*", "1!1.*"]:
                try:
                    expected = SpecifierSet(op + target).contains(version, prereleases=True)
                except InvalidSpecifier:
                    continue
                assert satisfies(version, op + target) is expected, (version, op + target)
                compared += 1
    assert compared == 1386


@pytest.mark.parametrize(("version", "specifier"), [("1.0", "~=1"), ("1.0", ">=1.*"), ("not a version", ">=1"), ("1.0", "=>1")])
def test_satisfies_refuses_what_it_cannot_read(version: str, specifier: str) -> None:
    with pytest.raises(ValueError):
        satisfies(version, specifier)


# --- the selftest's check (packages installed in .venv by requirements/dev.txt) --------------------------------


def test_the_selftest_names_installed_versions_and_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "script.txt"
    path.write_text(
        "# comment\n"
        "--extra-index-url https://example.invalid/simple\n"
        "pandas==2.2.3\n"
        "inference-schema[numpy-support]>=1.5,<2\n"
        "PyYAML~=6.0\n"
        "jsonschema<4\n"
        "no-such-package-here==1.0\n"
        'other-missing-one; python_version < "3"\n'
        "pytest===8.3.5\n"
    )
    packages, problems = selftest.check_script_packages(path)
    assert packages == {
        "pandas": "2.2.3",
        "inference-schema": "1.8",
        "PyYAML": "6.0.3",
        "jsonschema": "4.26.0",
        "no-such-package-here": None,
        "other-missing-one": None,
        "pytest": "8.3.5",
    }
    assert problems == [
        f"jsonschema 4.26.0 is installed, {path} asks for jsonschema<4",
        f"no-such-package-here is not installed ({path}: no-such-package-here==1.0)",
    ]
    assert selftest.check_script_packages(None) == ({}, [])


def _use_script_txt(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setattr(selftest, "SCRIPT_REQUIREMENTS", path)
    monkeypatch.setattr(selftest, "REPO_SCRIPT_REQUIREMENTS", path.parent / "absent.txt")


async def test_selftest_header_carries_script_packages(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "script.txt"
    path.write_text("pandas==2.2.*\ninference-schema\n")
    _use_script_txt(monkeypatch, path)
    out = io.BytesIO()
    summary = await selftest.selftest(settings, out)
    lines = out.getvalue().splitlines()
    header = orjson.loads(lines[0])
    assert list(header) == ["model", "modelVersion", "sha256", "libraries", "scriptPackages"]
    assert header["scriptPackages"] == {"pandas": "2.2.3", "inference-schema": "1.8"}
    assert summary["lines"] == len(selftest.READINGS) == len(lines) - 1


async def test_selftest_fails_before_scoring_on_a_missing_package(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "script.txt"
    path.write_text("pandas<2\nno-such-package-here\n")
    _use_script_txt(monkeypatch, path)
    out = io.BytesIO()
    with pytest.raises(selftest.ScriptPackagesError) as caught:
        await selftest.selftest(settings, out)
    assert str(caught.value) == (
        f"requirements/script.txt is not satisfied: pandas 2.2.3 is installed, {path} asks for pandas<2; "
        f"no-such-package-here is not installed ({path}: no-such-package-here)"
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert orjson.loads(lines[0])["scriptPackages"] == {"pandas": "2.2.3", "no-such-package-here": None}


def test_selftest_reads_the_images_file_else_the_repositorys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Path("/app/requirements/script.txt") == selftest.SCRIPT_REQUIREMENTS
    image = tmp_path / "image.txt"
    monkeypatch.setattr(selftest, "SCRIPT_REQUIREMENTS", image)
    assert selftest.script_requirements_file() == REPO_ROOT / "requirements" / "script.txt"
    image.write_text("")
    assert selftest.script_requirements_file() == image
    monkeypatch.setattr(selftest, "REPO_SCRIPT_REQUIREMENTS", tmp_path / "absent.txt")
    image.unlink()
    assert selftest.script_requirements_file() is None


# --- images/check_script_deps.py, with pip's answers faked ------------------------------------------------------


checker = load_images_script("check_script_deps")

# What the fake index has for armv7: requirement name -> (wheel file name, Requires-Dist lines); absent: no wheel.
ARMV7_INDEX: dict[str, tuple[str, list[str]]] = {
    "prometheus-client": ("prometheus_client-0.22.1-py3-none-any.whl", []),
    "inference-schema": (
        "inference_schema-1.8-py3-none-any.whl",
        [
            "python-dateutil (>=2.5.3)",
            "wrapt (<=1.16.0,>=1.14.0)",
            "numpy (>=1.13.0) ; extra == 'numpy-support'",
            "pandas (>=0.20.2) ; extra == 'pandas-support'",
        ],
    ),
    "python-dateutil": ("python_dateutil-2.9.0-py2.py3-none-any.whl", ["six (>=1.5)"]),
    "six": ("six-1.17.0-py2.py3-none-any.whl", []),
    "wrapt": ("wrapt-1.16.0-py3-none-any.whl", []),
    "orjson": ("orjson-3.11.5-cp313-cp313-manylinux_2_17_armv7l.manylinux2014_armv7l.whl", ["numpy (>=2.3)"]),
}


class FakePip:
    """subprocess.run for `pip download`: answers from an index dict, records the commands."""

    def __init__(self, index: dict[str, tuple[str, list[str]]], stderr: str = "") -> None:
        self.index = index
        self.stderr = stderr
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        requirement = command[-1]
        dest = Path(command[command.index("--dest") + 1])
        name = requirement.split("[")[0].split(";")[0].strip()
        for op in "<>=!~ ":
            name = name.split(op)[0]
        if self.stderr or name not in self.index:
            error = self.stderr or (
                f"ERROR: Could not find a version that satisfies the requirement {requirement} (from versions: none)\n"
                f"ERROR: No matching distribution found for {name}\n"
            )
            return subprocess.CompletedProcess(command, 1, "", error)
        filename, requires = self.index[name]
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest / filename, "w") as wheel:
            dist_info = "-".join(filename.split("-")[:2]) + ".dist-info"
            metadata = f"Metadata-Version: 2.1\nName: {name}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
            wheel.writestr(f"{dist_info}/METADATA", metadata)
        return subprocess.CompletedProcess(command, 0, f"Saved {dest / filename}\n", "")


def _check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: str, pip: FakePip, dockerfile: str | None = None, amd64: bool = False
) -> tuple[int, str]:
    requirements = tmp_path / "script.txt"
    requirements.write_text(lines)
    path = REPO_ROOT / "Dockerfile.arm32v7"
    if dockerfile is not None:
        path = tmp_path / "Dockerfile.arm32v7"
        path.write_text(dockerfile)
    monkeypatch.setattr(checker.subprocess, "run", pip)
    out = io.StringIO()
    status = checker.run(requirements, path, [checker.ARMV7, checker.AMD64] if amd64 else [checker.ARMV7], out)
    return status, out.getvalue().replace(str(tmp_path), "TMP")


PANDAS_FIX = (
    "add Debian trixie's python3-pandas (2.2.3) to both apt-get install lines of the three Dockerfiles, as "
    "python3-pandas='2.2.3+dfsg-*', and pin pandas==2.2.3 in requirements/script.txt so that the dev virtualenv "
    "installs the same version; or drop pandas if score.py does not need it"
)
NO_PANDAS = "ERROR: No matching distribution found for pandas"


def test_a_package_without_an_armv7_wheel_stops_the_build_and_its_needs_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip = FakePip(ARMV7_INDEX)
    status, out = _check(tmp_path, monkeypatch, "# comment\npandas\ninference-schema[numpy-support]\n-r x.txt\n", pip)
    assert status == 1
    assert out.splitlines() == [
        "== TMP/script.txt: wheels for CPython 3.13 on linux armv7",
        "skip  -r x.txt: not a package name, not checked",
        f"FAIL  pandas: no wheel for CPython 3.13 on linux armv7 ({NO_PANDAS}). Fix: {PANDAS_FIX}",
        "ok    inference-schema[numpy-support]: inference_schema-1.8-py3-none-any.whl (pure Python)",
        "ok    python-dateutil>=2.5.3 (for inference-schema): python_dateutil-2.9.0-py2.py3-none-any.whl (pure Python)",
        "ok    wrapt<=1.16.0,>=1.14.0 (for inference-schema): wrapt-1.16.0-py3-none-any.whl (pure Python)",
        "ok    six>=1.5 (for python-dateutil, for inference-schema): six-1.17.0-py2.py3-none-any.whl (pure Python)",
        "1 cannot be installed for CPython 3.13 on linux armv7: pandas",
    ]
    # the probe first, then each package once; numpy (the model stack, via the extra) is never asked for
    asked = [command[-1] for command in pip.commands]
    assert asked == [
        "prometheus-client",
        "pandas",
        "inference-schema[numpy-support]",
        "python-dateutil>=2.5.3",
        "wrapt<=1.16.0,>=1.14.0",
        "six>=1.5",
    ]
    command = pip.commands[0]
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:"} <= set(command)
    assert " ".join(command).count("--platform ") == 27
    for option in (
        "--python-version 3.13",
        "--implementation cp",
        "--abi cp313",
        "--platform linux_armv7l",
        "--platform manylinux2014_armv7l",
        "--platform manylinux_2_17_armv7l",
        "--platform manylinux_2_31_armv7l",
        "--platform manylinux_2_41_armv7l",
    ):
        assert option in " ".join(command)


def test_an_unreachable_index_is_not_a_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pip = FakePip({})  # nothing answers, not even the probe
    status, out = _check(tmp_path, monkeypatch, "pandas\n", pip)
    assert status == 3
    assert out.splitlines() == [
        "== TMP/script.txt: wheels for CPython 3.13 on linux armv7",
        "COULD NOT CHECK: pip could not get prometheus-client, which every index the build uses has "
        "(ERROR: No matching distribution found for prometheus-client). Nothing was decided about TMP/script.txt.",
    ]
    assert len(pip.commands) == 1


def test_no_pip_is_not_a_verdict_either(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status, out = _check(
        tmp_path, monkeypatch, "pandas\n", FakePip(ARMV7_INDEX, stderr="/usr/bin/python3: No module named pip\n")
    )
    assert status == 3
    assert out.splitlines()[-1] == (
        f"COULD NOT CHECK: {sys.executable} has no pip; run this with .venv/bin/python (make venv). "
        "Nothing was decided about TMP/script.txt."
    )


def test_nothing_to_check_asks_pip_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pip = FakePip({})
    status, out = _check(tmp_path, monkeypatch, (REPO_ROOT / "requirements" / "script.txt").read_text(), pip)
    assert (status, out, pip.commands) == (0, "TMP/script.txt: no script requirements, nothing to check\n", [])


def _with_pandas(build: str, final: str) -> str:
    """Dockerfile.arm32v7 with python3-pandas added to each stage's apt-get line as given ('' leaves it out)."""
    text = (REPO_ROOT / "Dockerfile.arm32v7").read_text()
    first, second = text.split("FROM arm32v7/debian:trixie-slim\n")
    add = "python3-threadpoolctl='3.1.0-*' "
    return first.replace(add, add + build + " ") + "FROM arm32v7/debian:trixie-slim\n" + second.replace(add, add + final + " ")


def test_a_package_debian_provides_in_both_stages_needs_no_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin = "python3-pandas='2.2.3+dfsg-*'"
    pip = FakePip(ARMV7_INDEX)
    status, out = _check(tmp_path, monkeypatch, "pandas==2.2.3\nnumpy\n", pip, _with_pandas(pin, pin))
    assert status == 0
    assert out.splitlines()[1:] == [
        "ok    pandas==2.2.3: Debian's python3-pandas 2.2.3 (the Dockerfiles)",
        "ok    numpy: the images' model stack (2.2.4)",
    ]
    assert pip.commands == []
    status, out = _check(tmp_path, monkeypatch, "pandas\n", pip, _with_pandas(pin, pin))
    assert (status, out.splitlines()[1]) == (
        0,
        "ok    pandas: Debian's python3-pandas 2.2.3 (the Dockerfiles); pin pandas==2.2.3 in requirements/script.txt "
        "so that the dev virtualenv installs the same",
    )


def test_debians_package_must_be_in_both_stages_and_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin = "python3-pandas='2.2.3+dfsg-*'"
    status, out = _check(tmp_path, monkeypatch, "pandas\n", FakePip(ARMV7_INDEX), _with_pandas(pin, ""))
    assert (status, out.splitlines()[1]) == (
        1,
        "FAIL  pandas: the Dockerfiles install python3-pandas in one stage only: it must be in both apt-get install "
        "lines (the build stage, for pip to see it installed; the final one, to have it at run time)",
    )
    status, out = _check(tmp_path, monkeypatch, "pandas>=3\nnumpy>=2.3\n", FakePip(ARMV7_INDEX), _with_pandas(pin, pin))
    assert status == 1
    assert out.splitlines()[1:] == [
        "FAIL  pandas>=3: the Dockerfiles install Debian's python3-pandas 2.2.3, which this does not allow: "
        "pin pandas==2.2.3 in requirements/script.txt (or drop it)",
        "FAIL  numpy>=2.3: the images' model stack has numpy 2.2.4 (requirements/model.txt); drop this line",
        "2 cannot be installed for CPython 3.13 on linux armv7: numpy>=2.3, pandas>=3",
    ]


def test_amd64_misses_fail_too_and_model_stack_conflicts_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = {**ARMV7_INDEX, "pandas": ("pandas-3.1.1-cp313-cp313-manylinux_2_28_x86_64.whl", ["numpy>=2.3.0"])}
    status, out = _check(tmp_path, monkeypatch, "pandas\norjson\nodd-one\n", FakePip(index), amd64=True)
    assert status == 1
    amd64 = out.split("== TMP/script.txt: wheels for CPython 3.13 on manylinux x86_64\n")[1].splitlines()
    assert amd64 == [
        "ok    pandas: pandas-3.1.1-cp313-cp313-manylinux_2_28_x86_64.whl (amd64)",
        "note  pandas: pandas-3.1.1-cp313-cp313-manylinux_2_28_x86_64.whl needs numpy>=2.3.0, the images have numpy "
        "2.2.4: pip will pick an older pandas; pin one that fits in requirements/script.txt",
        "ok    orjson: orjson-3.11.5-cp313-cp313-manylinux_2_17_armv7l.manylinux2014_armv7l.whl (amd64)",
        "note  orjson: orjson-3.11.5-cp313-cp313-manylinux_2_17_armv7l.manylinux2014_armv7l.whl needs numpy>=2.3, the "
        "images have numpy 2.2.4: pip will pick an older orjson; pin one that fits in requirements/script.txt",
        "FAIL  odd-one: no wheel for CPython 3.13 on manylinux x86_64 (ERROR: No matching distribution found for "
        f"odd-one). Fix: {checker.fix_for('odd-one')}",
        "1 cannot be installed for CPython 3.13 on manylinux x86_64: odd-one",
    ]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.arm64v8", "Dockerfile.arm32v7"])
def test_each_dockerfile_is_read_for_debians_packages(dockerfile: str) -> None:
    found = checker.debian_packages(REPO_ROOT / dockerfile)
    assert {k: (v.package, v.version, sorted(v.stages)) for k, v in found.items()} == {
        "numpy": ("python3-numpy", "2.2.4", [0, 1]),
        "scipy": ("python3-scipy", "1.15.3", [0, 1]),
        "scikit-learn": ("python3-sklearn", "1.4.2", [0, 1]),
        "joblib": ("python3-joblib", "1.4.2", [0, 1]),
        "threadpoolctl": ("python3-threadpoolctl", "3.1.0", [0, 1]),
        "onnxruntime": ("python3-onnxruntime", "1.21.0", [0, 1]),
    }
    assert checker.fix_for("left-pad") == (
        "add Debian trixie's python3-left-pad, if there is one (`apt-cache policy python3-left-pad` against trixie "
        "shows its version), to both apt-get install lines of the three Dockerfiles and pin that version in "
        "requirements/script.txt; or drop left-pad if score.py does not need it"
    )


# --- the Dockerfiles -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "platform", "binary"),
    [
        ("Dockerfile", "amd64", "--only-binary=:all: "),
        ("Dockerfile.arm64v8", "arm64v8", "--only-binary=:all: "),
        ("Dockerfile.arm32v7", "arm32v7", "--only-binary=:all: "),
    ],
)
def test_every_image_installs_script_txt_from_its_lock_on_top_of_the_runtime_and_keeps_it(
    dockerfile: str, platform: str, binary: str
) -> None:
    """requirements/script.txt reaches the build as its lock (images/lock.py resolves it with the runtime lock, and so
    the model stack, installed and pinned), in a layer of its own after the runtime's."""
    parser = DockerfileParser(fileobj=io.BytesIO((REPO_ROOT / dockerfile).read_bytes()))
    structure = parser.structure
    last_from = max(i for i, ins in enumerate(structure) if ins["instruction"] == "FROM")
    build, final = structure[:last_from], structure[last_from:]
    lock = f"/tmp/lock/script-{platform}.txt"
    install = [ins["value"] for ins in build if ins["instruction"] == "RUN" and lock in ins["value"]]
    assert len(install) == 1
    assert (
        f"pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-build-isolation {binary}"
        f"-r /tmp/lock/runtime-{platform}.txt -r /tmp/lock/script-{platform}.txt"
    ) in " ".join(install[0].split())
    copies = [ins["value"] for ins in build if ins["instruction"] == "COPY"]
    assert copies == [
        f"requirements/lock/build.txt requirements/lock/runtime-{platform}.txt /tmp/lock/",
        f"requirements/lock/script-{platform}.txt /tmp/lock/",
    ]
    assert "requirements/script.txt /app/requirements/script.txt" in [
        ins["value"] for ins in final if ins["instruction"] == "COPY"
    ]


def test_build_sh_runs_the_check_before_building() -> None:
    text = (REPO_ROOT / "images" / "build.sh").read_text()
    assert '"$py" "$ROOT/images/check_script_deps.py"' in text
    assert text.index("\ncheck_script_deps\n") < text.index('for p in "${PLATFORMS[@]}"; do build "$p"; done')
    assert '\n    3) echo "warning: the armv7 check' in text  # could not check: warn, build anyway
    assert (checker.OK, checker.FAILED, checker.COULD_NOT_CHECK) == (0, 1, 3)
