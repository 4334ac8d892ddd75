"""The model component from a compiled archive: safe unpacking, a REAL DLR model directory
(ggic.modelgen) checked and repacked, GDK's recipe schema, and the classifier loading it from
where the nucleus would unpack it."""

from __future__ import annotations

import io
import json
import platform
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from ggic.cloud.model_component import (
    ARTIFACT_STEM,
    CONFIG_FILE_NAME,
    ModelComponentError,
    build_model_component,
    classifier_instructions,
)
from ggic.cloud.neo import NeoTarget
from ggic.cloud.safe_tar import UnsafeArchiveError, safe_extract
from ggic.modelgen.testnets import write_neo_like

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO.parent / "shared" / "schemas" / "recipe_schema.json"
NAME = "com.example.VGG16Model"
X86 = NeoTarget(arch="X86_64").platform


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return write_neo_like(tmp_path_factory.mktemp("neo"), seed=11)


def neo_output(net, path: Path, folder: str = "") -> Path:
    """A compiled archive as Neo writes it: the model files at the top of a .tar.gz."""
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(net.model_dir.iterdir()):
            tar.add(file, arcname=f"{folder}{file.name}")
    return path


def tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if info.isfile():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "",
          mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = mode
    return info


def lower_keys(value):
    if isinstance(value, dict):
        return {k.lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


# --- the component --------------------------------------------------------------------------


def test_component_from_a_compiled_archive(net, tmp_path):
    out = tmp_path / "out"
    component = build_model_component(neo_output(net, tmp_path / "model-LINUX_X86_64.tar.gz"),
                                      out, name=NAME, version="1.2.0", platform=X86,
                                      labels=net.labels_path, source="job j")
    assert component.model_dir == out / "model"
    assert component.files.library.name == "compiled.so"
    assert component.files.graph.name == "compiled_model.json"
    build = out / "greengrass-build"
    assert component.recipe_path == build / "recipes" / f"{NAME}.yaml"
    assert component.artifact_path == build / "artifacts" / NAME / "1.2.0" / "neo-model.zip"
    with zipfile.ZipFile(component.artifact_path) as z:
        names = sorted(z.namelist())
    assert names == sorted([f"model/{p.name}" for p in net.model_dir.iterdir()]
                           + ["imagenet_class_index.json"])
    recipe = yaml.safe_load(component.recipe_path.read_text())
    assert recipe["ComponentName"] == NAME and recipe["ComponentVersion"] == "1.2.0"
    (manifest,) = recipe["Manifests"]
    assert manifest["Platform"] == {"os": "linux", "architecture": "amd64"}
    assert manifest["Artifacts"] == [{
        "URI": "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/neo-model.zip",
        "Unarchive": "ZIP", "Permission": {"Read": "ALL"}}]
    device = f"/greengrass/v2/packages/artifacts-unarchived/{NAME}/1.2.0/{ARTIFACT_STEM}"
    config = json.loads((out / CONFIG_FILE_NAME).read_text())
    assert config == {"com.custom.ImageClassifier": {"MERGE": {
        "ModelDir": f"{device}/model", "ModelProfile": "neo-vgg16",
        "LabelsPath": f"{device}/imagenet_class_index.json"}}}
    text = classifier_instructions(component, out)
    assert f"{{{NAME}:artifacts:decompressedPath}}/{ARTIFACT_STEM}/model" in text
    assert "DIRECT dependency" in text and "ModelProfile: neo-vgg16" in text
    assert f"{device}/model" in text and str(out / CONFIG_FILE_NAME) in text


def test_the_recipe_passes_gdks_schema(net, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.is_file():
        pytest.skip(f"GDK's schema is not at {SCHEMA}")
    schema = json.loads(SCHEMA.read_text())
    for target in (NeoTarget(arch="ARM_EABIHF"), NeoTarget(device="sitara_am57x")):
        out = tmp_path / target.label
        component = build_model_component(neo_output(net, tmp_path / "m.tar.gz"), out,
                                          name=NAME, platform=target.platform)
        recipe = yaml.safe_load(component.recipe_path.read_text())
        jsonschema.validate(lower_keys(recipe), schema)
    # and the schema does check: a wrong Unarchive value is refused
    recipe["Manifests"][0]["Artifacts"][0]["Unarchive"] = "TAR"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(lower_keys(recipe), schema)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the test model is compiled for "
                    "this machine and dlr==1.6.0 ships libdlr.so for x86_64 only")
def test_the_classifier_loads_the_artifact_where_the_nucleus_unpacks_it(net, tmp_path):
    from ggic.classifier.model import load_model
    from ggic.classifier.profiles import resolve_profile

    out, root = tmp_path / "out", tmp_path / "greengrass"
    component = build_model_component(neo_output(net, tmp_path / "m.tar.gz", "compiled/"), out,
                                      name=NAME, platform=X86, labels=net.labels_path,
                                      greengrass_root=str(root))
    unpacked = Path(component.device_dir(str(root)))
    with zipfile.ZipFile(component.artifact_path) as z:
        z.extractall(unpacked)
    merge = json.loads((out / CONFIG_FILE_NAME).read_text())["com.custom.ImageClassifier"][
        "MERGE"]
    model = load_model(merge["ModelDir"], resolve_profile(merge["ModelProfile"]),
                       merge["LabelsPath"])
    try:
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        np.testing.assert_allclose(model.run(x), net.reference(x), rtol=1e-4, atol=1e-4)
        assert model.profile.name == "neo-vgg16"
        assert model.labels[0] == net.labels[0]
    finally:
        model.close()


def test_an_archive_without_a_model_is_refused(tmp_path):
    archive = tar_with(tmp_path / "m.tar.gz", (entry("README"), b"nothing"))
    with pytest.raises(ModelComponentError, match="does not hold a DLR model"):
        build_model_component(archive, tmp_path / "out", name=NAME, platform=X86)
    assert not (tmp_path / "out" / "model").exists()


def test_labels_that_do_not_match_the_model_are_refused(net, tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({str(i): ["n0", f"c{i}"] for i in range(10)}))
    with pytest.raises(ModelComponentError, match="10 labels but the model outputs 1000"):
        build_model_component(neo_output(net, tmp_path / "m.tar.gz"), tmp_path / "out",
                              name=NAME, platform=X86, labels=labels)


def test_component_name_and_version_are_checked(net, tmp_path):
    archive = neo_output(net, tmp_path / "m.tar.gz")
    with pytest.raises(ModelComponentError, match="component name"):
        build_model_component(archive, tmp_path / "o", name="bad name", platform=X86)
    with pytest.raises(ModelComponentError, match="not semantic"):
        build_model_component(archive, tmp_path / "o", name=NAME, version="1.0", platform=X86)


def test_an_unsafe_compiled_archive_writes_nothing(net, tmp_path):
    archive = tar_with(tmp_path / "m.tar.gz", (entry("compiled.params"), b"p"),
                       (entry("../evil.so"), b"x"))
    with pytest.raises(UnsafeArchiveError):
        build_model_component(archive, tmp_path / "out", name=NAME, platform=X86)
    assert not (tmp_path / "evil.so").exists()
    assert not (tmp_path / "out" / "model").exists()


# --- safe unpacking -------------------------------------------------------------------------


@pytest.mark.parametrize(("members", "message"), [
    ([(entry("../evil"), b"x")], "'..'"),
    ([(entry("a/../../evil"), b"x")], "'..'"),
    ([(entry("/tmp/evil"), b"x")], "absolute"),
    ([(entry("link", tarfile.SYMTYPE, "../../outside"), b"")], "goes up"),
    ([(entry("link", tarfile.SYMTYPE, "/etc/passwd"), b"")], "absolute"),
    ([(entry("hard", tarfile.LNKTYPE, "../outside"), b"")], "'..'"),
    ([(entry("hard", tarfile.LNKTYPE, "later"), b""), (entry("later"), b"x")],
     "earlier regular file"),
    ([(entry("dev", tarfile.CHRTYPE), b"")], "device"),
    ([(entry("fifo", tarfile.FIFOTYPE), b"")], "device"),
])
def test_unsafe_members_are_refused_before_anything_is_written(tmp_path, members, message):
    archive = tar_with(tmp_path / "a.tar.gz", (entry("ok.txt"), b"fine"), *members)
    target = tmp_path / "deep" / "target"
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, target)
    assert list(target.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "deep"]


def test_writing_through_a_link_is_refused(tmp_path):
    archive = tar_with(tmp_path / "a.tar.gz", (entry("sub", tarfile.DIRTYPE, mode=0o755), b""),
                       (entry("d", tarfile.SYMTYPE, "sub"), b""), (entry("d/x"), b"x"))
    with pytest.raises(UnsafeArchiveError, match="through the link"):
        safe_extract(archive, tmp_path / "t")


def test_links_inside_are_kept_and_modes_are_plain(tmp_path):
    archive = tar_with(tmp_path / "a.tar.gz",
                       (entry("lib/real.so", mode=0o4755), b"elf"),
                       (entry("libdlr.so", tarfile.SYMTYPE, "lib/real.so"), b""),
                       (entry("copy.so", tarfile.LNKTYPE, "lib/real.so"), b""))
    written = safe_extract(archive, tmp_path / "t")
    t = tmp_path / "t"
    assert sorted(p.relative_to(t).as_posix() for p in written) == ["copy.so", "lib/real.so"]
    assert (t / "libdlr.so").is_symlink() and (t / "libdlr.so").read_bytes() == b"elf"
    assert (t / "copy.so").read_bytes() == b"elf" and not (t / "copy.so").is_symlink()
    mode = stat.S_IMODE((t / "lib" / "real.so").stat().st_mode)
    assert mode == 0o755


def test_size_limit_and_unreadable_archives(tmp_path):
    archive = tar_with(tmp_path / "a.tar.gz", (entry("big"), b"x" * 100))
    with pytest.raises(UnsafeArchiveError, match="more than 10 bytes"):
        safe_extract(archive, tmp_path / "t", max_bytes=10)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(UnsafeArchiveError, match="not a readable tar"):
        safe_extract(junk, tmp_path / "t")
