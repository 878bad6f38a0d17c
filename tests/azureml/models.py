"""The deployments of the corpus: for each slug, its scoring script and the model directory Azure ML would mount.

Azure ML lays a deployment out under its app root (`AML_APP_ROOT`, /var/azureml-app in its images):
the code directory's files (the entry script, a user swagger2.json) at the root, and each registered
model under `azureml-models/<name>/<version>/`, which is `AZUREML_MODEL_DIR`. SDK v1's
`Model.get_model_path(name)` (azureml-core) resolves `$AML_APP_ROOT/azureml-models/<name>/<latest>/`
and, when that folder holds a single entry, that entry. `deploy()` builds the same tree in a
temporary directory; `build()` writes the model part alone.

The models are small, deterministic scikit-learn models of the kind each sample trained (its notebook or
training script says which), fitted on data sklearn bundles (diabetes, iris) or that the sample ships
(the IoT Edge tutorial's temperature_data.csv): no network, well under a second each. They are written
with this interpreter's joblib/scikit-learn, whose versions the reference venv pins to the same values,
so the one pickle loads in both servers.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from tests.azureml import corpus


@dataclass(frozen=True)
class Sample:
    """One corpus entry as deployed: which file is the entry script, what sits beside it in the code
    directory, and the registered model (name, version, and the files `write_model` puts in its folder)."""

    slug: str
    entry_script: str
    code_files: tuple[str, ...]
    model_name: str
    model_version: int
    write_model: Callable[[Path], None]
    # Modules the 2018 images had and today's stack lacks, aliased by the reference launcher (see differences.py).
    legacy_aliases: tuple[str, ...] = ()

    @property
    def directory(self) -> Path:
        """The entry's installed files (tests/azureml/corpus.py); the calling test is skipped without them."""
        return corpus.directory(self.slug)

    @property
    def script(self) -> Path:
        return self.directory / self.entry_script


@dataclass(frozen=True)
class Deployment:
    """A deployed sample: the app root (cwd and AML_APP_ROOT of both servers), the entry script in it, and
    AZUREML_MODEL_DIR."""

    slug: str
    app_root: Path
    script: Path
    model_dir: Path


# --- the models ---------------------------------------------------------------------------------------


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)  # bundled with scikit-learn (scaled features, as the samples send)
    return X, y


def _linear_regression(path: Path) -> None:
    """azureml-examples' model-1/model/sklearn_regression_model.pkl is a LinearRegression on the 10 diabetes features."""
    from sklearn.linear_model import LinearRegression

    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(LinearRegression().fit(*_diabetes()), path)


def _ridge(path: Path, alpha: float) -> None:
    """The notebooks' and MLOpsPython's Ridge regression on the diabetes data."""
    from sklearn.linear_model import Ridge

    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(Ridge(alpha=alpha).fit(*_diabetes()), path)


def _iris_pipeline(path: Path) -> None:
    """azureml-examples' inference-schema models/iris.pkl: Pipeline(StandardScaler, RandomForestClassifier) on iris,
    classes 0/1/2 (the scripts map them to Setosa/Versicolor/Virginica by index)."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    model = Pipeline([("scaler", StandardScaler()), ("clf", RandomForestClassifier(n_estimators=20, random_state=0))])
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model.fit(X, y), path)


def _temperature_tree(path: Path) -> None:
    """The IoT Edge tutorial's model: DecisionTreeClassifier on temperature_data.csv (machine temperature and
    pressure, ambient temperature and humidity -> anomaly 0/1), split 65/35 with random_state=0 as its
    notebook does, pickled with pickle.dump as the notebook does (joblib.load reads plain pickles)."""
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    csv = corpus.directory("iot_edge_anomaly") / "temperature_data.csv"
    data = np.loadtxt(csv, delimiter=",", skiprows=1, encoding="utf-8-sig")
    X, y = data[:, :4], data[:, 4].astype(np.int64)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.35, random_state=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(DecisionTreeClassifier(random_state=0).fit(X_train, y_train), f)


SAMPLES: dict[str, Sample] = {
    s.slug: s
    for s in (
        # SDK v2 managed online endpoint: model asset `path: model` -> AZUREML_MODEL_DIR/model/sklearn_regression_model.pkl.
        Sample("examples_model1", "score.py", ("score.py",), "model-1", 1,
               lambda d: _linear_regression(d / "model" / "sklearn_regression_model.pkl")),
        # model.yml `path: models` -> AZUREML_MODEL_DIR/models/iris.pkl, for the three inference-schema scripts.
        Sample("examples_numpy", "score-numpy.py", ("score-numpy.py",), "azureml-infschema", 1,
               lambda d: _iris_pipeline(d / "models" / "iris.pkl")),
        Sample("examples_pandas", "score-pandas.py", ("score-pandas.py",), "azureml-infschema", 1,
               lambda d: _iris_pipeline(d / "models" / "iris.pkl")),
        Sample("examples_standard", "score-standard.py", ("score-standard.py",), "azureml-infschema", 1,
               lambda d: _iris_pipeline(d / "models" / "iris.pkl")),
        # The openapi deployment uses model-1's model folder (deployment.yml: `path: ../../model-1/model`).
        Sample("examples_openapi_decorated", "score.py", ("score.py",), "model-1", 1,
               lambda d: _linear_regression(d / "model" / "sklearn_regression_model.pkl")),
        # code-custom/ holds score.py and swagger2.json: the server serves the latter at /swagger.json.
        Sample("examples_openapi_custom", "score.py", ("score.py", "swagger2.json"), "model-1", 1,
               lambda d: _linear_regression(d / "model" / "sklearn_regression_model.pkl")),
        # SDK v1: Model.get_model_path(<name from AZUREML_MODEL_DIR>) -> the single file of the registered model.
        Sample("mlops_diabetes", "score.py", ("score.py",), "diabetes_regression_model.pkl", 1,
               lambda d: _ridge(d / "diabetes_regression_model.pkl", alpha=0.5)),
        # AZUREML_MODEL_DIR/model.pkl, registered as sklearn_regression_model.pkl (.env.example at that commit).
        Sample("mlops_json_result", "score.py", ("score.py",), "sklearn_regression_model.pkl", 1,
               lambda d: _ridge(d / "model.pkl", alpha=0.5)),
        # The notebook registers ./sklearn_regression_model.pkl as 'my-sklearn-model': AZUREML_MODEL_DIR/<file>.
        Sample("notebooks_deploy_cloud", "score.py", ("score.py",), "my-sklearn-model", 1,
               lambda d: _ridge(d / "sklearn_regression_model.pkl", alpha=0.5)),
        # The tutorial registers model.pkl as 'model.pkl' and calls Model.get_model_path('model.pkl').
        Sample("iot_edge_anomaly", "iot_score.py", ("iot_score.py",), "model.pkl", 1,
               lambda d: _temperature_tree(d / "model.pkl"), legacy_aliases=("sklearn.externals.joblib",)),
    )
}  # fmt: skip


def build(slug: str, dest: Path) -> Path:
    """Write `slug`'s registered model under `dest`/azureml-models/<name>/<version>/ and return that directory
    (AZUREML_MODEL_DIR); `dest` is the deployment's app root."""
    sample = SAMPLES[slug]
    model_dir = dest / "azureml-models" / sample.model_name / str(sample.model_version)
    model_dir.mkdir(parents=True, exist_ok=True)
    sample.write_model(model_dir)
    return model_dir


def deploy(slug: str, dest: Path) -> Deployment:
    """The whole deployment in `dest` (created): the code directory's files, copied unchanged, and the model."""
    sample = SAMPLES[slug]
    dest.mkdir(parents=True, exist_ok=True)
    for name in sample.code_files:
        shutil.copy2(sample.directory / name, dest / name)
    model_dir = build(slug, dest)
    return Deployment(slug=slug, app_root=dest, script=dest / sample.entry_script, model_dir=model_dir)
