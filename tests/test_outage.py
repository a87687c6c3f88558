"""The Python service goes away and comes back: the gateway says 503, then recovers."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from tandem_stack.stack import TRANSPORTS, Stack

from conftest import infer_body, probabilities

ZEROS = np.zeros((1, 64), dtype=np.float32)
HOP_TIMEOUT_S = 2


@pytest.fixture(params=TRANSPORTS)
def own_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A stack of this test's own, since the test kills part of it."""
    s = Stack(transport=request.param, gateway_args=["--timeout", f"{HOP_TIMEOUT_S}s"])
    with s:
        yield s


def test_service_down_then_back(own_stack: Stack) -> None:
    # The client waits longer than the hop's timeout: a hang would fail here, not pass.
    with httpx.Client(base_url=own_stack.rest_url, timeout=HOP_TIMEOUT_S * 5) as c:
        assert c.post("/v2/models/digits/infer", json=infer_body(ZEROS)).status_code == 200

        (python,) = [p for p in own_stack.processes if p.name == "inference-py"]
        python.stop(signal.SIGKILL)

        r = c.post("/v2/models/digits/infer", json=infer_body(ZEROS))
        assert r.status_code == 503, r.text
        assert r.json()["error"]
        assert c.get("/v2/health/ready").status_code == 503
        assert c.get("/v2/health/live").status_code == 200

        # Under its old name: over gRPC it listens where the gateway looks for it.
        own_stack.start_python("inference-py")
        own_stack.wait_ready()
        assert probabilities(c.post("/v2/models/digits/infer", json=infer_body(ZEROS))).shape == (
            1,
            10,
        )
