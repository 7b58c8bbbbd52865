"""Schemathesis against the live /openapi.json of a real server: no request makes a 5xx.

Both generation modes: positive (requests the schema allows, which become real jobs on the
tiny model) and negative (requests it forbids: wrong types, missing fields, bad enums). The
run is bounded (a fixed number of examples per mode, a fixed seed), so it is repeatable, and
takes about 10 s a mode here. Every refusal must have the `{"error": {code, message}}` shape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import GenerationMode
from server_support import ServerProcess, assert_no_server_bugs

pytestmark = pytest.mark.slow

EXAMPLES = {GenerationMode.POSITIVE: 200, GenerationMode.NEGATIVE: 200}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    process = ServerProcess(root, "--queue-size", "2").wait_ready()
    yield process
    process.stop()
    assert_no_server_bugs(process)


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda mode: mode.value)
def test_no_generated_request_gets_a_5xx(server: ServerProcess, mode: GenerationMode) -> None:
    auth = {"Authorization": f"Bearer {server.token}"}
    spec = httpx.get(server.url + "/openapi.json", headers=auth, timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    session = requests.Session()

    @seed(8)
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=schema.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.url, session=session, headers=auth, timeout=30)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )
        elif response.status_code >= 400 and case.method.upper() != "HEAD":
            # every refusal has the protocol's shape (an answer to HEAD has no body)
            body = response.json()
            assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
            assert body["error"]["message"], body

    run()
    print(f"{mode.value}: {sum(statuses.values())} requests, statuses {dict(statuses)}")
    assert not failures, "\n".join(failures)
    assert server.client().live() == {"ok": True}
    assert server.client().health()["queue"]["max"] == 2
