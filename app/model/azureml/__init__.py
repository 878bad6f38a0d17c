"""Serving Azure ML entry scripts (score.py) the way Azure ML's inference server does.

A score.py written for Azure ML (azureml-inference-server-http 1.5.1, `azmlinfsrv`) gets, from this module, the same
calls and gives the same HTTP answers: init() once, run() with the body as text, with the JSON body's keys when it
is decorated with inference-schema, or with the request object under @rawhttp; request_headers when it asks for
them; its return value, AMLResponse or exception turned into the server's status, body and headers. The server is
not a dependency (it needs Flask and gunicorn); this is our own re-implementation, checked against it.

- entry.py: `EntryScript` (load, score, swagger, sample_input), `Answer`, `EntryScriptError`.
- answers.py: the server's answers and request-level rules (request ids, 431, health, 404/405, timeout).
- swagger.py: the /swagger.json documents.
- aml_request.py / aml_response.py: `rawhttp`, `AMLRequest`, `AMLResponse`, which scripts import from
  `azureml.contrib.services.*` (or `azureml_inference_server_http.api.*`); loading a script aliases those names.
- shim/: a minimal `azureml.core.model.Model.get_model_path`, on sys.path only when azureml-core is absent.
"""
