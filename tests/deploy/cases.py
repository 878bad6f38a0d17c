"""The side-by-side cases: each template, platform and .env, with what each tool does and why ours differs.

A difference listed here is a JSON path where our manifest is not iotedgedev's, with the reason; every other path
must be equal (key order aside). `ours="refused"` cases still compare the manifest we would have written.
"""

from __future__ import annotations

from dotenv import dotenv_values

from tests.deploy.harness import REPO_ROOT, Case

AGENT = '$.modulesContent.$edgeAgent["properties.desired"]'
HUB = '$.modulesContent.$edgeHub["properties.desired"]'
RUNTIME_16 = {"EDGE_RUNTIME_VERSION": "1.6", "EDGEAGENT_SCHEMA_VERSION": "1.1", "EDGEHUB_SCHEMA_VERSION": "1.2"}
EXAMPLE_ENV = {k: v or "" for k, v in dotenv_values(REPO_ROOT / ".env.example").items()}
MULTI_ENV = {
    "CONTAINER_REGISTRY_SERVER": "contoso.azurecr.io",
    "CONTAINER_REGISTRY_USERNAME": "contoso",
    "CONTAINER_REGISTRY_PASSWORD": "s3cret",
    "CONTAINER_REGISTRY_SERVER_PARTNER": "partner.example.com:5443",
    "CONTAINER_REGISTRY_USERNAME_PARTNER": "partner-user",
    "CONTAINER_REGISTRY_PASSWORD_PARTNER": "partner-secret",
    "SITE_NAME": "plant-7",
    "FILTER_THRESHOLD": "0.8",
    "FILTER_VERSION": "1.2.0",
    "STORE_TTL": "3600",
    "CONTAINER_TAG": "ci42",
    **RUNTIME_16,
}
SHARED_LIB_ENV = {"CONTAINER_REGISTRY_SERVER": "localhost:5000", "USERNAME": "edgeuser", "PASSWORD": "edgepass", **RUNTIME_16}
ML_ENV = {"CONTAINER_REGISTRY_SERVER": "turbofanacr.azurecr.io", **RUNTIME_16}
NO_PLATFORM = "iotedgedev leaves the platform out of the file name when $schema-template is missing (we always add it)"

CASES = [
    # --- this repository -------------------------------------------------------------------------------------------
    Case(
        "this-repo-amd64",
        "this-repo",
        "deployment.template.json",
        "amd64",
        EXAMPLE_ENV,
        "generated",
        warnings=("CONTAINER_REGISTRY_PASSWORD for registry myregistry.azurecr.io still holds the example's placeholder",),
    ),
    Case("this-repo-arm32v7", "this-repo", "deployment.template.json", "arm32v7", EXAMPLE_ENV, "generated"),
    # --- a multi-module solution written for these tests (tests/deploy/solutions/multi-module) -------------------------
    Case("multi-module-amd64", "multi-module", "deployment.template.json", "amd64", MULTI_ENV, "generated"),
    Case("multi-module-arm64v8", "multi-module", "deployment.template.json", "arm64v8", MULTI_ENV, "generated"),
    Case("multi-module-debug-amd64", "multi-module", "deployment.debug.template.json", "amd64", MULTI_ENV, "generated"),
    Case(
        "multi-module-layered-amd64",
        "multi-module",
        "layered.template.json",
        "amd64",
        MULTI_ENV,
        "generated",
        file_name="config/layered.json",
    ),
    Case(
        "multi-module-unset-variables",
        "multi-module",
        "deployment.template.json",
        "amd64",
        {k: v for k, v in MULTI_ENV.items() if k not in ("SITE_NAME", "CONTAINER_REGISTRY_PASSWORD")},
        "refused",
        problems=(
            f"{AGENT}.modules.filter.settings.createOptions.Env[0]: ${{SITE_NAME}}: SITE_NAME is not set",
            f"{AGENT}.runtime.settings.registryCredentials.main.password: $CONTAINER_REGISTRY_PASSWORD: "
            "CONTAINER_REGISTRY_PASSWORD is not set",
        ),
    ),
    Case(
        "multi-module-ttl-unset",
        "multi-module",
        "deployment.template.json",
        "amd64",
        {k: v for k, v in MULTI_ENV.items() if k != "STORE_TTL"},
        "refused",
        problems=("${STORE_TTL} is outside a JSON string and STORE_TTL is not set",),
        iotedgedev="failed",
    ),
]

SHARED_LIB_DIFFERENCES_WITHOUT_RUNTIME = {
    f"{AGENT}.schemaVersion": "EDGEAGENT_SCHEMA_VERSION unset: iotedgedev 3.3.7 leaves ${...}, we use 1.1 (IoT Edge 1.6)",
    f"{AGENT}.systemModules.edgeAgent.settings.image": "EDGE_RUNTIME_VERSION unset: iotedgedev leaves ${...}, we use 1.6",
    f"{AGENT}.systemModules.edgeHub.settings.image": "EDGE_RUNTIME_VERSION unset: iotedgedev leaves ${...}, we use 1.6",
    f"{HUB}.schemaVersion": "EDGEHUB_SCHEMA_VERSION unset: iotedgedev 3.3.7 leaves ${...}, we use 1.2 (IoT Edge 1.6)",
}

PUBLIC_CASES = [
    # --- iotedgedev's own test solution (Azure/iotedgedev v3.3.7, tests/assets/test_solution_shared_lib) --------------
    Case("shared-lib-amd64", "iotedgedev-shared-lib", "deployment.template.json", "amd64", SHARED_LIB_ENV, "generated"),
    Case(
        "shared-lib-debug-amd64", "iotedgedev-shared-lib", "deployment.debug.template.json", "amd64", SHARED_LIB_ENV, "generated"
    ),
    Case(
        "shared-lib-escapedpath-amd64",
        "iotedgedev-shared-lib",
        "deployment.escapedpath.template.json",
        "amd64",
        SHARED_LIB_ENV,
        "generated",  # its routes name sample_module, not deployed: warnings (edgeHub takes such routes)
        iotedgedev="failed",  # ${MODULEDIR<.\sample_module_2>} is no path on Linux (its own test runs on Windows only)
        iotedgedev_says=("No module.json file found",),
    ),
    Case(
        "shared-lib-layered-amd64",
        "iotedgedev-shared-lib",
        "layered_deployment.flattened_props.template.json",
        "amd64",
        SHARED_LIB_ENV,
        "generated",
        file_name="config/layered_deployment.flattened_props.json",
    ),
    Case(
        "shared-lib-runtime-unset",
        "iotedgedev-shared-lib",
        "deployment.template.json",
        "amd64",
        {k: v for k, v in SHARED_LIB_ENV.items() if k not in RUNTIME_16},
        "generated",
        differences=SHARED_LIB_DIFFERENCES_WITHOUT_RUNTIME,
    ),
    # --- iotedgedev's test templates (Azure/iotedgedev v3.3.7, tests/assets) ------------------------------------------
    Case(
        "assets-non-str-placeholder",
        "iotedgedev-assets",
        "deployment.template.non_str_placeholder.json",
        "amd64",
        {**RUNTIME_16, "TTL": "7200"},
        "generated",  # its route to filtermodule (not deployed) is a warning: edgeHub takes such routes
    ),
    Case(
        "assets-non-str-placeholder-unset",
        "iotedgedev-assets",
        "deployment.template.non_str_placeholder.json",
        "amd64",
        RUNTIME_16,
        "refused",
        problems=("line 74: ${TTL} is outside a JSON string and TTL is not set",),
        iotedgedev="failed",
        iotedgedev_says=("Expecting value: line 74 column 31",),
    ),
    Case(
        "assets-invalid-result",
        "iotedgedev-assets",
        "deployment.template_invalidresult.json",
        "amd64",
        {**RUNTIME_16, "CONTAINER_REGISTRY_PASSWORD": ""},
        "refused",
        problems=(
            "registryCredentials.test: schema: 'address' is a required property",
            "registryCredentials.test.username: schema: 1 is not of type 'string'",
            "registryCredentials.test2.address: schema: '' does not match",
            "${MODULES.none}: no module named 'none'",
        ),
        iotedgedev="written-invalid",
        iotedgedev_says=(
            "Warning: Deployment manifest schema error: 'address' is a required property",
            "Warning: createOptions of module edgeAgent should be an object",
        ),
        file_name="config/deployment.template_invalidresult.json",
    ),
    # --- Azure-Samples/IoTEdgeAndMlSample: turbofanRouter + avroFileWriter ---------------------------------------------
    Case(
        "ml-sample-amd64",
        "iotedge-and-ml-sample",
        "deployment.template.json",
        "amd64",
        ML_ENV,
        "refused",
        problems=(
            "${MODULES.turbofanRouter}: no module named 'turbofanRouter'",
            "set MODULES_PATH=. in .env",
            "'<registry_name>.azurecr.io/edgemlsample:2' is not an image reference the runtime can pull",
            "$CONTAINER_REGISTRY_USERNAME_: CONTAINER_REGISTRY_USERNAME_ is not set",
        ),
    ),
    Case(
        "ml-sample-modules-path-amd64",
        "iotedge-and-ml-sample",
        "deployment.template.json",
        "amd64",
        {**ML_ENV, "MODULES_PATH": "."},
        "refused",
        problems=(
            "'<registry_name>.azurecr.io/edgemlsample:2' is not an image reference the runtime can pull",
            "no registry credentials for turbofanacrguqalfee.azurecr.io",
        ),
    ),
    Case(
        "ml-sample-debug-amd64",
        "iotedge-and-ml-sample",
        "deployment.debug.template.json",
        "amd64",
        {**ML_ENV, "MODULES_PATH": "."},
        "refused",
        problems=("'<registry_name>.azurecr.io/edgemlsample:1' is not an image reference the runtime can pull",),
    ),
    # --- Azure/ai-toolkit-iot-edge: the anomaly-detection tutorial's template -----------------------------------------
    Case(
        "ai-toolkit-amd64",
        "ai-toolkit-iot-edge",
        "iot-workshop-deployment-template.json",
        "amd64",
        RUNTIME_16,
        "refused",
        problems=(
            "'__REGISTRY_IMAGE_LOCATION' is not an image reference the runtime can pull",
            "systemModules.edgeAgent.settings: schema: 'env' does not match any of the regexes",
        ),
        iotedgedev="written-invalid",
        iotedgedev_says=("Warning: createOptions of module tempSensor should be an object",),
        file_name="config/iot-workshop-deployment-template.json",
    ),
]
