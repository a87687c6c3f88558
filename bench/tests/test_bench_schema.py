"""schema.py mirrors loadgen's Go structs: the JSON tags there are the source of truth."""

from __future__ import annotations

import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

import schema
from scenarios import FULL, QUICK
from schema import Kind, Plan, ScenarioSpec

LOADGEN = Path(__file__).resolve().parents[1] / "loadgen"


def go_tags() -> dict[str, list[tuple[str, bool]]]:
    """Every struct in loadgen's Go files: its JSON field names, in order, and omitempty."""
    source = "\n".join(p.read_text() for p in sorted(LOADGEN.glob("*.go")))
    out: dict[str, list[tuple[str, bool]]] = {}
    for name, body in re.findall(r"^type (\w+) struct \{\n(.*?)^\}", source, re.M | re.S):
        tags = re.findall(r'`json:"([^",]+)(,omitempty)?"`', body)
        out[name] = [(tag, bool(omit)) for tag, omit in tags]
    return out


GO = go_tags()


def test_the_go_structs_were_found() -> None:
    for name in ("Plan", "ScenarioSpec", "Stats", "Step", "Window", "Closed", "Report"):
        assert GO.get(name), f"no {name} struct with JSON tags in {LOADGEN}"
    assert GO.get("ScenarioReport")


@pytest.mark.parametrize("cls", [Plan, ScenarioSpec])
def test_the_plan_dataclasses_have_the_go_fields_in_order(cls: type) -> None:
    assert [f.name for f in fields(cls)] == [tag for tag, _ in GO[cls.__name__]]


@pytest.mark.parametrize(
    "typed",
    [schema.Stats, schema.Step, schema.Window, schema.Closed, schema.ScenarioReport, schema.Report],
)
def test_the_result_types_have_the_go_fields(typed: type) -> None:
    name = typed.__name__
    keys = typed.__required_keys__ | typed.__optional_keys__  # type: ignore[attr-defined]
    assert set(keys) == {tag for tag, _ in GO[name]}
    # The Go side leaves omitempty fields out: here they are NotRequired.
    omitted = {tag for tag, omit in GO[name] if omit}
    assert set(typed.__optional_keys__) == omitted  # type: ignore[attr-defined]
    assert set(schema.OMITEMPTY.get(name, ())) == omitted


def test_omitempty_of_the_spec_is_known() -> None:
    assert set(schema.OMITEMPTY["ScenarioSpec"]) == {t for t, o in GO["ScenarioSpec"] if o}


def test_kinds_are_the_drivers_transports() -> None:
    source = (LOADGEN / "targets.go").read_text()
    block = source.split("var transports = map", 1)[1].split("}", 1)[0]
    assert set(re.findall(r'"([a-z-]+)":', block)) == {k.value for k in Kind}


def test_a_plan_goes_to_json_and_back() -> None:
    spec = ScenarioSpec(name="a", kind=Kind.NATS, target="nats://x", closed=True, subject="s")
    plan = replace(QUICK, pixels=(1.0, 2.0), scenarios=(spec,))
    raw = plan.to_json()
    assert raw["scenarios"] == [
        {
            "name": "a",
            "kind": "nats",
            "target": "nats://x",
            "subject": "s",
            "sweep": False,
            "closed": True,
            "conns": 0,
        }
    ]
    assert Plan.from_json(raw) == plan
    assert set(raw) == {tag for tag, _ in GO["Plan"]}


def test_the_settings_are_plans_without_scenarios() -> None:
    for settings in (FULL, QUICK):
        assert isinstance(settings, Plan)
        assert settings.scenarios == ()
        assert "scenarios" not in settings.settings()
        assert "pixels" not in settings.settings()
