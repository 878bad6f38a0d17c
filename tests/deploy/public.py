"""The public solutions compared with iotedgedev, by repository, commit and path.

Their files are not kept in this repository (this workplace keeps material taken from other repositories out of
the project's commits); the reference test reads them, unchanged, from the first of:
  - $DEPLOY_PUBLIC_SOLUTIONS/<name>/
  - ../shared/deploy-solutions/<name>/ (beside the repository, as developers and CI have shared/)
and skips their cases, saying so, when neither has them. To lay them out from clones of the repositories:

    python -m tests.deploy.public --out DIR --git Azure/iotedgedev=CLONE --git Azure-Samples/IoTEdgeAndMlSample=CLONE ...

which copies exactly the files listed here, at the commits listed here (`git show <commit>:<path>`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.harness import PUBLIC_DIRS


@dataclass(frozen=True)
class Public:
    repo: str
    commit: str
    folder: str  # the template's folder in the repository
    files: tuple[str, ...]  # relative to the folder
    note: str = ""


IOTEDGEDEV_TAG = "4e51ecdcddd4bdd565312dc72401701a202b4e3f"  # Azure/iotedgedev tag v3.3.7, the PyPI release's source

PUBLIC = {
    "iotedgedev-shared-lib": Public(
        "Azure/iotedgedev",
        IOTEDGEDEV_TAG,
        "tests/assets/test_solution_shared_lib",
        (
            "deployment.template.json",
            "deployment.debug.template.json",
            "deployment.escapedpath.template.json",
            "layered_deployment.flattened_props.template.json",
            "modules/sample_module/module.json",
            "sample_module_2/module.json",
        ),
        "iotedgedev's own test solution: modules/*, ${MODULEDIR<./sample_module_2>}, .debug, $USERNAME, layered",
    ),
    "iotedgedev-assets": Public(
        "Azure/iotedgedev",
        IOTEDGEDEV_TAG,
        "tests/assets",
        ("deployment.template.non_str_placeholder.json", "deployment.template_invalidresult.json"),
        "iotedgedev's test templates: a placeholder outside a string, and one its validation must fail",
    ),
    "iotedge-and-ml-sample": Public(
        "Azure-Samples/IoTEdgeAndMlSample",
        "08c3a87456e70b7f82161e459ee1037d9af1df6c",
        "EdgeModules/modules",
        (
            "deployment.template.json",
            "deployment.debug.template.json",
            "turbofanRouter/module.json",
            "avroFileWriter/module.json",
        ),
        "turbofanRouter + avroFileWriter next to the template, <registry_name> left for the reader to fill in",
    ),
    "ai-toolkit-iot-edge": Public(
        "Azure/ai-toolkit-iot-edge",
        "4ee16690563a7b98aea560dcef25a21eeb73538e",
        "IoT Edge anomaly detection tutorial",
        ("iot-workshop-deployment-template.json",),
        "the Azure ML anomaly-detection tutorial's template, __MODULE_NAME__-style blanks filled in by a notebook",
    ),
}


def public_dir(name: str) -> Path | None:
    """Where a public solution's files are, if anywhere."""
    for root in PUBLIC_DIRS:
        if root and all((Path(root) / name / f).is_file() for f in PUBLIC[name].files):
            return Path(root) / name
    return None


def lay_out(out: Path, clones: dict[str, Path]) -> list[Path]:
    written = []
    for name, public in PUBLIC.items():
        clone = clones.get(public.repo)
        if clone is None:
            continue
        for file in public.files:
            blob = subprocess.run(
                ["git", "-C", str(clone), "show", f"{public.commit}:{public.folder}/{file}"],
                capture_output=True,
                check=True,
                timeout=60,
            ).stdout
            target = out / name / file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
            written.append(target)
        (out / name / "SOURCE.md").write_text(
            f"# {name}\n\nFrom https://github.com/{public.repo} at commit {public.commit}, folder `{public.folder}`, "
            f"unchanged: {', '.join(public.files)}.\n\n{public.note}\n"
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.public", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--git", action="append", default=[], help="OWNER/REPO=PATH of a clone holding the commit")
    args = parser.parse_args(argv)
    clones = {}
    for item in args.git:
        repo, _, path = item.partition("=")
        clones[repo] = Path(path)
    for path in lay_out(args.out, clones):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
