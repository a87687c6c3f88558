"""The scenarios are consistent: known processes, known pairs, the right Locust user."""

from __future__ import annotations

import ast
from pathlib import Path

from scenarios import GATEWAYS, SCENARIOS, LocustUser, Role
from schema import Kind
from servertiming import server_timing

LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfile.py"

# The call each Locust user makes, as the driver's kind.
USER_KIND = {
    LocustUser.GATEWAY_REST_JSON: Kind.REST_JSON,
    LocustUser.BASELINE_REST: Kind.REST_JSON,
    LocustUser.GATEWAY_REST_BINARY: Kind.REST_BINARY,
    LocustUser.GATEWAY_GRPC: Kind.GRPC,
    LocustUser.PYTHON_GRPC: Kind.GRPC,
}


def test_every_locust_user_is_a_class_in_the_locustfile() -> None:
    tree = ast.parse(LOCUSTFILE.read_text())
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    assert {u.value for u in LocustUser} <= classes


def test_each_scenario_has_the_user_that_makes_its_call() -> None:
    for s in SCENARIOS:
        if s.locust is None:
            continue
        assert USER_KIND[s.locust] == s.kind, s.name
        gateway_user = s.locust.value.startswith("Gateway")
        assert gateway_user == (s.role == Role.GATEWAY), s.name


def test_grpc_gateway_nats_gets_the_grpc_user() -> None:
    (s,) = [s for s in SCENARIOS if s.name == "grpc-gateway-nats"]
    assert s.locust == LocustUser.GATEWAY_GRPC


def test_names_pairs_and_processes_are_known() -> None:
    names = [s.name for s in SCENARIOS]
    assert len(names) == len(set(names))
    processes = {"baseline", "python"} | {g.name for g in GATEWAYS}
    for s in SCENARIOS:
        assert s.via in processes, s.name
        assert s.hop_of is None or s.hop_of in names, s.name
        assert (s.role == Role.GATEWAY) == s.via.startswith("gateway"), s.name
    assert any(g.shipped for g in GATEWAYS)


def test_server_timing_parts_are_parsed_as_the_gateway_writes_them() -> None:
    value = "edge;dur=0.210, hop;dur=0.180, python;dur=0.095, queue;dur=0.020, model;dur=0.041"
    assert server_timing(value) == [
        ("edge", 0.21),
        ("hop", 0.18),
        ("python", 0.095),
        ("queue", 0.02),
        ("model", 0.041),
    ]
    assert server_timing('edge;desc="x";dur="1.5"') == [("edge", 1.5)]
    assert server_timing(None) == []
    assert server_timing("junk, x;desc=1, y;dur=abc, ;dur=1") == []
