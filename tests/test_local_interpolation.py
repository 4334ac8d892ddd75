"""Recipe variables, table-driven, with the nucleus's rules for unknown variables."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ggic.local.interpolation import (
    ComponentPaths,
    ComponentVariables,
    InterpolationContext,
    InterpolationError,
    interpolate,
    interpolate_string,
    render_value,
)

ROOT = Path("/gg")
DEP = "variant.DLR.ImageClassification.ModelStore"
ME = ComponentVariables(
    "com.custom.ImageClassifier",
    ComponentPaths.under(ROOT, "com.custom.ImageClassifier", "1.0.0"),
    {"TopK": "5", "Port": 8080, "Ratio": 0.5, "On": True, "Nothing": None,
     "Dirs": ["/a", "/b"], "Obj": {"b": 1, "a": "x"}, "a/b": "slash", "m~n": "tilde",
     "": "empty key"},
)
DEP_VARS = ComponentVariables(DEP, ComponentPaths.under(ROOT, DEP, "2.1.9"),
                              {"ModelName": "resnet50"})
STRANGER = ComponentVariables("com.example.Stranger",
                              ComponentPaths.under(ROOT, "com.example.Stranger", "1.0.0"), {})
CTX = InterpolationContext(
    component=ME,
    kernel_root=ROOT,
    thing_name="MyThing",
    direct_dependencies=frozenset({DEP, "com.example.Missing"}),
    deployed={ME.name: ME, DEP: DEP_VARS, STRANGER.name: STRANGER},
)
A = "/gg/packages/artifacts/com.custom.ImageClassifier/1.0.0"
U = "/gg/packages/artifacts-unarchived/com.custom.ImageClassifier/1.0.0"


@pytest.mark.parametrize("text, expected", [
    ("{artifacts:path}/run.py", f"{A}/run.py"),
    ("{artifacts:decompressedPath}/ggic", f"{U}/ggic"),
    ("cd {work:path}", "cd /gg/work/com.custom.ImageClassifier"),
    ("{kernel:rootPath}", "/gg"),
    ("{iot:thingName}", "MyThing"),
    ("--top-k {configuration:/TopK}", "--top-k 5"),
    ("{configuration:/Port}", "8080"),
    ("{configuration:/Ratio}", "0.5"),
    ("{configuration:/On}", "true"),
    ("{configuration:/Nothing}", "null"),
    ("{configuration:/Dirs}", '["/a","/b"]'),
    ("{configuration:/Dirs/1}", "/b"),
    ("{configuration:/Obj}", '{"a":"x","b":1}'),
    ("{configuration:/a~1b} {configuration:/m~0n}", "slash tilde"),
    (f"{{{DEP}:artifacts:decompressedPath}}/m",
     f"/gg/packages/artifacts-unarchived/{DEP}/2.1.9/m"),
    (f"{{{DEP}:artifacts:path}}", f"/gg/packages/artifacts/{DEP}/2.1.9"),
    (f"{{{DEP}:work:path}}", f"/gg/work/{DEP}"),
    (f"{{{DEP}:configuration:/ModelName}}", "resnet50"),
    (f"{{{DEP}:kernel:rootPath}} {{{DEP}:iot:thingName}}", "/gg MyThing"),
    ("{artifacts:path} and {work:path}", f"{A} and /gg/work/com.custom.ImageClassifier"),
    # left as written: unknown namespaces, keys, and missing configuration
    ("{configuration:/Missing}", "{configuration:/Missing}"),
    ("{configuration:/Dirs/7}", "{configuration:/Dirs/7}"),
    ("{artifacts:size}", "{artifacts:size}"),
    ("{nosuch:thing}", "{nosuch:thing}"),
    (f"{{{DEP}:nosuch:thing}}", f"{{{DEP}:nosuch:thing}}"),
    ("${HOME:-/root} ${x:0:2}", "${HOME:-/root} ${x:0:2}"),  # shell syntax survives
    ("{ not a variable }", "{ not a variable }"),
])
def test_variables(text: str, expected: str) -> None:
    assert interpolate_string(text, CTX) == expected


def test_unknown_variables_are_logged(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ggic.local.interpolation"):
        interpolate_string("{configuration:/Missing} {artifacts:size} {nosuch:thing}", CTX)
    assert "/Missing" in caplog.text
    assert "{artifacts:size}" in caplog.text
    assert "nosuch" in caplog.text


@pytest.mark.parametrize("text, target, words", [
    ("{com.example.Stranger:artifacts:path}", "com.example.Stranger", "not a direct dependency"),
    ("{com.example.Stranger:configuration:/x}", "com.example.Stranger",
     "not a direct dependency"),
    ("{com.example.Missing:work:path}", "com.example.Missing", "not in the deployment"),
])
def test_bad_dependency_references_are_errors_naming_both_components(text, target, words):
    with pytest.raises(InterpolationError, match=words) as info:
        interpolate_string(text, CTX)
    assert info.value.component == "com.custom.ImageClassifier"
    assert info.value.target == target
    assert "com.custom.ImageClassifier" in str(info.value) and target in str(info.value)


def test_interpolate_walks_values_not_keys() -> None:
    lifecycle = {"Setenv": {"{work:path}": "{work:path}"},
                 "Run": {"Script": "{iot:thingName}", "Timeout": 5}}
    assert interpolate(lifecycle, CTX) == {
        "Setenv": {"{work:path}": "/gg/work/com.custom.ImageClassifier"},
        "Run": {"Script": "MyThing", "Timeout": 5},
    }


@pytest.mark.parametrize("value, text", [
    ("s", "s"), (None, "null"), (True, "true"), (False, "false"), (3, "3"), (1.0, "1.0"),
    (0.25, "0.25"), (1e20, "1.0E20"), (1.5e-5, "1.5E-5"), ([1, "a"], '[1,"a"]'),
    ({"k": [True]}, '{"k":[true]}'),
])
def test_values_render_like_the_nucleus(value, text) -> None:
    assert render_value(value) == text


def test_a_dependency_with_a_hyphenated_name_is_substituted() -> None:
    """The nucleus's pattern is [.\\w-]+ (KernelConfigResolver): public components such as
    aws-greengrass-labs-* have hyphens in their names."""
    dep = "com.example.my-model"
    dep_vars = ComponentVariables(dep, ComponentPaths.under(ROOT, dep, "1.0.0"),
                                  {"Model-Name": "resnet50"})
    ctx = InterpolationContext(component=ME, kernel_root=ROOT, thing_name="MyThing",
                               direct_dependencies=frozenset({dep}),
                               deployed={ME.name: ME, dep: dep_vars})
    text = f"{{{dep}:artifacts:decompressedPath}}/m {{{dep}:configuration:/Model-Name}}"
    assert interpolate_string(text, ctx) == \
        f"/gg/packages/artifacts-unarchived/{dep}/1.0.0/m resnet50"
