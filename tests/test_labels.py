from __future__ import annotations

import json

import pytest

from ggic.classifier.labels import LabelsError, find_labels, load_labels, parse_labels


def test_synset_dict_literal_as_in_the_modelstore():
    text = "{0: 'tench, Tinca tinca',\n 1: 'goldfish, Carassius auratus',\n 2: \"it's\"}"
    labels = parse_labels(text)
    assert labels[0] == "tench, Tinca tinca"
    assert labels[2] == "it's"
    assert len(labels) == 3


def test_class_index_json_as_torchvision_ships_it():
    text = json.dumps({"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]})
    labels = parse_labels(text)
    assert (labels[0], labels[1]) == ("tench", "goldfish")


def test_one_label_per_line():
    labels = parse_labels("tench\ngoldfish\n\n")
    assert (labels[0], labels[1], len(labels)) == ("tench", "goldfish", 2)


def test_unknown_ids_get_a_fallback_name():
    assert parse_labels("a\nb")[7] == "class 7"


def test_code_in_a_synset_file_is_not_executed():
    with pytest.raises(LabelsError):
        parse_labels("{0: __import__('os').system('echo pwned')}")


def test_errors_name_the_file(tmp_path):
    with pytest.raises(LabelsError, match="does not exist"):
        load_labels(tmp_path / "missing.txt")
    bad = tmp_path / "bad.json"
    bad.write_text("{'a': 'b'}")
    with pytest.raises(LabelsError, match="not a number"):
        load_labels(bad)


def test_default_file_in_model_dir(tmp_path):
    (tmp_path / "synset.txt").write_text("{0: 'zero'}")
    assert find_labels("", tmp_path)[0] == "zero"
    assert find_labels("", tmp_path / "nowhere")[3] == "class 3"
