"""Schemathesis against the OpenAPI schema of a daemon of its own: whatever the schema allows, and much it
does not, the API answers without a 5xx, and every answer is one the schema describes: a status it lists,
its content type, a body its model allows (errors included). Runs with a supervisor's token, so every route
is reached."""
from __future__ import annotations

import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from sitekit import make_site
from test_e2e_gate import staffed_gate

pytestmark = pytest.mark.e2e

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, module_procs):
    site = make_site(tmp_path_factory.mktemp("site"), api=True, walkin=True)
    token = site.token("supervisor")
    g = staffed_gate(site, module_procs)
    site.wait_api()
    yield site.api_url, token
    g.io.close()



def test_no_request_makes_the_api_fail(fuzzed):
    url, token = fuzzed
    # the live feed never ends a response, so it has its own test (test_api.py)
    schema = schemathesis.openapi.from_url(url + "/openapi.json").exclude(path="/events/stream")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20
    sent = []
    # negative cases (what the schema forbids) only where there is something to get wrong
    cases = [(op, mode) for op in operations for mode in GenerationMode
             if mode is GenerationMode.POSITIVE or op.body or op.query or op.path_parameters]
    for op, mode in cases:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)  # the same cases every run: a failure here is reproducible
        def fuzz(case):
            sent.append(case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                               checks=CHECKS).status_code)
        fuzz()
    assert len(sent) > 5 * len(operations) and 200 in sent and 422 in sent  # it reached the routes, good and bad
