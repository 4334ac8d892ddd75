"""The ggic command line: in-process classification, tensor conversion, help, errors."""

from __future__ import annotations

import json

import pytest

from ggic.cli import build_parser, main
from ggic.cli_options import flag_for
from ggic.config import ClassifierConfig, RequesterConfig, describe_settings
from ggic.modelgen.testnets import write_modelstore_like


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_modelstore_like(tmp_path_factory.mktemp("cli") / "model", seed=4)


def test_classify_prints_json_results(model, photos, capsys):
    code = main(["classify", "--model-dir", str(model.model_dir), "--top-k", "3",
                 "--score-threshold", "0", "--json", *map(str, photos[:2])])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(line["predictions"]) for line in lines] == [3, 3]
    assert all(line["status"] == "ok" for line in lines)


def test_classify_reports_bad_images_and_exits_1(model, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    assert main(["classify", "--model-dir", str(model.model_dir), str(bad)]) == 1
    assert "UNSUPPORTED_IMAGE" in capsys.readouterr().out


def test_classify_without_a_model_dir_explains(capsys):
    assert main(["classify", "x.jpg"]) == 2
    assert "--model-dir is required" in capsys.readouterr().err


def test_tensor_round_trip_gives_the_same_top1(model, photos, tmp_path, capsys):
    out = tmp_path / "x.npy"
    assert main(["tensor", str(photos[0]), "-o", str(out), "--model-dir",
                 str(model.model_dir), "--model-profile", "modelstore-resnet50"]) == 0
    capsys.readouterr()
    main(["classify", "--model-dir", str(model.model_dir), "--json", str(out), str(photos[0])])
    from_tensor, from_image = (json.loads(line)
                               for line in capsys.readouterr().out.splitlines())
    assert from_tensor["predictions"] == from_image["predictions"]


@pytest.mark.parametrize("command, config_cls", [
    ("classifier", ClassifierConfig), ("requester", RequesterConfig)])
def test_help_lists_every_configuration_flag(command, config_cls, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for key, _default, _doc in describe_settings(config_cls):
        assert flag_for(key) in text and f"[{key}]" in text


def test_components_outside_greengrass_say_why(monkeypatch, caplog):
    monkeypatch.delenv("SVCUID", raising=False)
    monkeypatch.delenv("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", raising=False)
    assert main(["classifier"]) == 2
    assert "SVCUID not set" in caplog.text and "ggic classify" in caplog.text
